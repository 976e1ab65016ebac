"""
Guided-sampling quality against cost for each sampler on the trained digits models: for every
sampler and step count, classifier-guided samples at --classifier_scale, their FID against the
held-out digits (evaluations package), the judge's accuracy (the clean classifier of
scoring/judge.py) and seconds per sample; a markdown and JSON table and a PNG plot of FID
against the number of model evaluations.

    python benchmarks/bench_solvers.py --run_dir demo_out           # 4 samplers x 7 step counts
    python benchmarks/bench_solvers.py --run_dir demo_out --num_samples 16 --steps 10,20

--run_dir is a `make demo` output folder: diffusion/, guide/ and judge/ (each with its training
script's args.json; the latest EMA / model checkpoint is used) and reference_heldout_<size>px.npz.
Every point uses the same seed and balanced labels, so sample i starts from the same x_T and
asks for the same digit under every sampler. ancestral and ddim step over the original's evenly
spaced `--timestep_respacing N`, the DPM-Solver++ samplers over --dpm_grid (default logsnr:
uniform in log-SNR). Each step is one UNet call plus one classifier gradient, so the number of
model evaluations equals the step count. Finished points are kept in the JSON file and skipped
when the run is repeated with the same settings.
"""

import argparse
import glob
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch as th

from evaluations.batch_stats import BatchStats, batch_frechet_distance, load_batch
from evaluations.features import FeatureExtractor
from evaluations.fid import compute_statistics
from guided_diffusion.runtime import distributed as dist_util
from guided_diffusion.sampling.generate import generate_samples
from guided_diffusion.sampling.loading import load_for_inference
from guided_diffusion.scoring.judge import judge
from guided_diffusion.script_util import (
    classifier_defaults,
    create_classifier,
    create_model_and_diffusion,
    model_and_diffusion_defaults,
)

NUM_CLASSES = 10
SAMPLERS = ("ancestral", "ddim", "dpm++2m", "dpm++3m")
STEPS = (10, 15, 20, 25, 50, 100, 250)
COLOURS = {"ancestral": (31, 119, 180), "ddim": (255, 127, 14), "dpm++2m": (44, 160, 44),
           "dpm++3m": (214, 39, 40), "dpm++2m-sde": (148, 103, 189)}


def latest_checkpoint(folder, pattern):
    """The checkpoint in `folder` matching `pattern` (with one %06d step) with the largest step."""
    regex = re.compile(re.escape(pattern).replace("%06d", r"(\d{6})") + "$")
    found = [(int(m.group(1)), path) for path in glob.glob(os.path.join(folder, "*.pt"))
             for m in [regex.search(os.path.basename(path))] if m]
    if not found:
        raise ValueError(f"--run_dir: no {pattern.replace('%06d', 'NNNNNN')} in {folder}; "
                         f"train it first (make demo)")
    return max(found)[1]


def load_network(folder, kind):
    """
    Build the network of one training folder from its args.json and load its latest checkpoint.

    :param kind: "model" (diffusion, latest EMA) or "classifier" (latest model file).
    :return: (network in eval mode on this device, its flags dict).
    """
    args_path = os.path.join(folder, "args.json")
    if not os.path.exists(args_path):
        raise ValueError(f"--run_dir: {args_path} is missing (is this a `make demo` output folder?)")
    with open(args_path) as f:
        saved = json.load(f)
    if kind == "model":
        flags = {k: saved.get(k, v) for k, v in model_and_diffusion_defaults().items()}
        net, _ = create_model_and_diffusion(**flags)
        path = latest_checkpoint(folder, f"ema_{str(saved.get('ema_rate', '0.9999')).split(',')[0]}_%06d.pt")
        use_fp16 = flags["use_fp16"]
    else:
        flags = {k: saved.get(k, v) for k, v in classifier_defaults().items()}
        net, path = create_classifier(**flags), latest_checkpoint(folder, "model%06d.pt")
        use_fp16 = flags["classifier_use_fp16"]
    load_for_inference(net, path, flags, kind, "--run_dir", use_fp16)
    print(f"loaded {path}")
    return net, flags


def inception_stats(extractor, images):
    """FID statistics of uint8 images [N, H, W, 3] computed from their own features."""
    feats = extractor(images)
    return BatchStats(feats["pool"], compute_statistics(feats["pool"]), compute_statistics(feats["spatial"]),
                      spatial=feats["spatial"], stats_from_features=True)


def respacing_for(sampler, steps, dpm_grid):
    return f"{dpm_grid}{steps}" if sampler.startswith("dpm++") and dpm_grid != "uniform" else str(steps)


def run_point(nets, sampler, steps, args, extractor, ref_stats):
    """Sample, time and score one (sampler, steps) point; :return: its table row (a dict)."""
    respacing = respacing_for(sampler, steps, args.dpm_grid)
    _, diffusion = create_model_and_diffusion(**dict(nets["model_flags"], timestep_respacing=respacing))
    if dist_util.dev().type == "cuda":
        th.cuda.synchronize()
    start = time.perf_counter()
    images, labels = generate_samples(
        nets["model"], diffusion, num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed,
        sampler=sampler, classifier=nets["guide"], classifier_scale=args.classifier_scale, labels="balanced",
        num_classes=NUM_CLASSES, device=dist_util.dev(), progress=True,
    )
    if dist_util.dev().type == "cuda":
        th.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.num_samples
    fid = batch_frechet_distance(inception_stats(extractor, images), ref_stats, "pool", method="fast")
    accuracy, _ = judge(nets["judge"], images, labels, args.batch_size, NUM_CLASSES, dist_util.dev())
    return dict(sampler=sampler, steps=steps, grid=respacing, evaluations=diffusion.num_timesteps,
                fid=float(fid), accuracy=float(accuracy), seconds_per_sample=seconds)


def format_table(rows, baseline):
    """Markdown table; `baseline` (a row or None) gives the FID and time ratios."""
    lines = ["| sampler | grid | model evals | FID | judge accuracy | s / sample | FID / baseline | time / baseline |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratios = ("-", "-") if baseline is None else (
            f"{r['fid'] / baseline['fid']:.3f}", f"{r['seconds_per_sample'] / baseline['seconds_per_sample']:.3f}")
        lines.append(f"| {r['sampler']} | {r['grid']} | {r['evaluations']} | {r['fid']:.3f} | {r['accuracy']:.3f} | "
                     f"{r['seconds_per_sample']:.4f} | {ratios[0]} | {ratios[1]} |")
    return "\n".join(lines)


def plot_fid(rows, path, size=(840, 480), margin=60, legend_width=130):
    """PNG line plot of FID (linear) against model evaluations (log axis), one line per sampler."""
    from PIL import Image, ImageDraw

    xs = np.log([r["evaluations"] for r in rows])
    ys = np.array([r["fid"] for r in rows])
    x_lo, x_hi = xs.min() - 0.1, xs.max() + 0.1
    y_lo, y_hi = 0.0, max(ys.max() * 1.05, 1e-6)
    w, h = size

    def to_px(x, y):
        return (margin + (x - x_lo) / (x_hi - x_lo) * (w - 2 * margin - legend_width),
                h - margin - (y - y_lo) / (y_hi - y_lo) * (h - 2 * margin))

    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.rectangle([margin, margin, w - margin - legend_width, h - margin], outline=(0, 0, 0))
    for n in sorted({r["evaluations"] for r in rows}):
        px, _ = to_px(np.log(n), y_lo)
        draw.line([px, h - margin, px, h - margin + 4], fill=(0, 0, 0))
        draw.text((px - 8, h - margin + 6), str(n), fill=(0, 0, 0))
    for k in range(5):
        y = y_lo + k * (y_hi - y_lo) / 4
        _, py = to_px(x_lo, y)
        draw.text((4, py - 6), f"{y:.3g}", fill=(0, 0, 0))
    draw.text(((w - legend_width) // 2 - 70, h - 22), "model evaluations (log)", fill=(0, 0, 0))
    draw.text((margin, 20), "FID vs model evaluations", fill=(0, 0, 0))
    for i, sampler in enumerate(dict.fromkeys(r["sampler"] for r in rows)):
        colour = COLOURS.get(sampler, (0, 0, 0))
        points = [to_px(np.log(r["evaluations"]), r["fid"]) for r in rows if r["sampler"] == sampler]
        points.sort()
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((w - margin - legend_width + 12, margin + 8 + 14 * i), f"- {sampler}", fill=colour)
    img.save(path)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--run_dir", default="demo_out", help="a `make demo` output folder")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--steps", default=",".join(map(str, STEPS)))
    p.add_argument("--num_samples", type=int, default=1000)
    p.add_argument("--batch_size", type=int, default=250)
    p.add_argument("--classifier_scale", type=float, default=4.0)
    p.add_argument("--dpm_grid", default="logsnr", choices=["logsnr", "karras", "uniform"],
                   help="step grid of the dpm++ samplers (ancestral and ddim keep the original's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output_dir", default="", help="default: <run_dir>/bench_solvers")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: torch default)")
    args = p.parse_args()
    args.samplers = [s for s in args.samplers.split(",") if s]
    args.steps = [int(s) for s in args.steps.split(",") if s]
    if args.num_samples < 2 or args.batch_size < 1:
        p.error(f"--num_samples must be >= 2 (FID) and --batch_size >= 1, got {args.num_samples}, {args.batch_size}")
    return args


def main():
    args = parse_args()
    if args.threads:
        th.set_num_threads(args.threads)
    out_dir = args.output_dir or os.path.join(args.run_dir, "bench_solvers")
    os.makedirs(out_dir, exist_ok=True)
    model, model_flags = load_network(os.path.join(args.run_dir, "diffusion"), "model")
    nets = dict(model=model, model_flags=model_flags,
                guide=load_network(os.path.join(args.run_dir, "guide"), "classifier")[0],
                judge=load_network(os.path.join(args.run_dir, "judge"), "classifier")[0])
    extractor = FeatureExtractor(device=dist_util.dev())
    reference = os.path.join(args.run_dir, f"reference_heldout_{model_flags['image_size']}px.npz")
    if not os.path.exists(reference):
        raise ValueError(f"--run_dir: {reference} is missing (make demo writes it)")
    ref_stats = load_batch(reference, lambda: extractor, desc="reference features")
    settings = dict(run_dir=os.path.abspath(args.run_dir), num_samples=args.num_samples, seed=args.seed,
                    classifier_scale=args.classifier_scale, dpm_grid=args.dpm_grid)
    json_path = os.path.join(out_dir, "results.json")
    rows = []
    if os.path.exists(json_path):
        with open(json_path) as f:
            saved = json.load(f)
        rows = saved["rows"] if saved.get("settings") == settings else []
    print(f"device={dist_util.dev()} threads={th.get_num_threads()} {settings}")
    for sampler in args.samplers:
        for steps in args.steps:
            if any(r["sampler"] == sampler and r["steps"] == steps for r in rows):
                continue
            rows.append(run_point(nets, sampler, steps, args, extractor, ref_stats))
            print(format_table(rows[-1:], None).splitlines()[-1], flush=True)
            with open(json_path, "w") as f:
                json.dump(dict(settings=settings, rows=rows), f, indent=2)
    rows.sort(key=lambda r: (r["sampler"], r["evaluations"]))
    baseline = next((r for r in rows if r["sampler"] == "ancestral" and r["steps"] == max(args.steps)), None)
    table = format_table(rows, baseline)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(f"{table}\n\nbaseline: {baseline['grid'] + '-step ancestral' if baseline else 'none'}; "
                f"{settings}\n")
    plot_fid(rows, os.path.join(out_dir, "fid_vs_evaluations.png"))
    print(f"\n{table}\n\nwrote {out_dir}/results.md, results.json, fid_vs_evaluations.png")


if __name__ == "__main__":
    main()
