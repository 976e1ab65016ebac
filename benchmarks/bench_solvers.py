"""
Guided-sampling quality against cost for each sampler on the trained digits models: for every
sampler and step count, classifier-guided samples at --classifier_scale, their FID against the
held-out digits (evaluations package), the independent pixel judge's accuracy (k-NN on grey
pixels, fitted on the training digits only: scoring/pixel_judge.py) and seconds per sample; a
markdown and JSON table and a PNG plot of FID against the number of model evaluations.

    python benchmarks/bench_solvers.py --run_dir demo_out           # 4 samplers x 7 step counts
    python benchmarks/bench_solvers.py --run_dir demo_out --num_samples 16 --steps 10,20

--run_dir is a `make demo` output folder: diffusion/ (the class-conditional base model trained
with label dropout) and guide/ (the noisy classifier), each with its training script's args.json
(the latest EMA / model checkpoint is used), and reference_heldout_<size>px.npz. The networks
are built from the flags in those args.json files, so the base model gets its null-label row and
classifier guidance runs on its null-label branch, as in classifier_sample.py.

Every point uses the same seed and balanced labels, so sample i starts from the same x_T and asks
for the same digit under every sampler. ancestral and ddim step over the original's evenly spaced
`--timestep_respacing N`, the DPM-Solver++ samplers over each grid of --dpm_grid (default logsnr:
uniform in log-SNR; a comma list such as logsnr,karras runs both, against the same baseline). Each
step is one UNet call plus one classifier gradient, so the number of model evaluations equals the
step count. The table's first line is the floor: FID of --num_samples real training digits against
the held-out ones (what FID reads when nothing is wrong at this sample size), with the judge's
accuracy on the held-out digits (on training digits it is 1 by construction). The baseline is the
ancestral point with the most steps in the results. FID and FID / baseline carry bootstrap standard
errors (--bootstrap draws; paired, since every point shares seeds and labels, with the held-out
reference resampled too: evaluations/bootstrap.py). Finished points are kept in results.json, their
pool features in features/, and skipped when the run is repeated with the same settings and
checkpoints. One process; torch uses --threads (default: every core), with OpenMP's waiting threads
asleep (OMP_WAIT_POLICY=PASSIVE unless set).
"""

import argparse
import glob
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# OpenMP threads that spin while waiting made a 2-thread run 2.4-5x slower than 1 thread on the shared
# 2-core machine, and sleeping ones 2.2x faster (benchmarks/README.md); set before torch loads OpenMP
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch as th
from _timing import add_device_flags, start, sync

from evaluations.batch_stats import BatchStats, batch_frechet_distance
from evaluations.bootstrap import bootstrap_fids, ratio_stderr
from evaluations.features import FeatureExtractor
from evaluations.fid import compute_statistics
from guided_diffusion.config.defaults import classifier_defaults, model_and_diffusion_defaults
from guided_diffusion.config.factory import create_classifier, create_model_and_diffusion, diffusion_from_flags
from guided_diffusion.data.digits import NUM_DIGIT_CLASSES, digits_images
from guided_diffusion.demo.recipe import Recipe
from guided_diffusion.runtime.precision import PRECISIONS, describe_cpu
from guided_diffusion.sampling.generate import generate_samples, respace
from guided_diffusion.sampling.loading import load_for_inference
from guided_diffusion.scoring.judge import read_labelled_batch
from guided_diffusion.scoring.pixel_judge import digits_judge

SAMPLERS = ("ancestral", "ddim", "dpm++2m", "dpm++3m")
DPM_GRIDS = ("logsnr", "karras", "uniform")
STEPS = (10, 15, 20, 25, 50, 100, 250)
# generate_samples' guidance_scale for each branch: None samples the null label under a classifier,
# 1 the plain conditional model
BRANCHES = {"null": None, "conditional": 1.0}
JUDGE_LABEL = "independent judge (pixel k-NN)"
# a sampler's colour on its first, second and third grid: (blend target, blend amount)
GRID_SHADES = ((0, 0.0), (255, 0.45), (0, 0.45))
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


def read_flags(folder, defaults):
    """
    The flags a training run recorded in `folder`/args.json, restricted to the keys of
    `defaults` (a dict) and completed by them.

    :return: (flags dict, the whole args.json dict).
    """
    args_path = os.path.join(folder, "args.json")
    if not os.path.exists(args_path):
        raise ValueError(f"--run_dir: {args_path} is missing (is this a `make demo` output folder?)")
    with open(args_path) as f:
        saved = json.load(f)
    return {k: saved.get(k, v) for k, v in defaults.items()}, saved


def load_network(folder, kind, device):
    """
    Build the network of one training folder from its args.json and load its latest checkpoint.

    :param kind: "model" (the diffusion model, latest EMA of the first rate) or "classifier"
                 (latest model file).
    :return: (network in eval mode on `device`, its flags dict, checkpoint path).
    """
    if kind == "model":
        flags, saved = read_flags(folder, model_and_diffusion_defaults())
        net, _ = create_model_and_diffusion(**dict(flags, timestep_respacing=""))
        rate = str(saved.get("ema_rate", "0.9999")).split(",")[0]
        path, use_fp16 = latest_checkpoint(folder, f"ema_{rate}_%06d.pt"), flags["use_fp16"]
    else:
        flags, _ = read_flags(folder, classifier_defaults())
        net, path = create_classifier(**flags), latest_checkpoint(folder, "model%06d.pt")
        use_fp16 = flags["classifier_use_fp16"]
    load_for_inference(net, path, flags, kind, "--run_dir", use_fp16).to(device)
    print(f"loaded {path}")
    return net, flags, path


def inception_stats(extractor, images):
    """FID statistics of uint8 images [N, H, W, 3] computed from their own features."""
    feats = extractor(images)
    return BatchStats(feats["pool"], compute_statistics(feats["pool"]), compute_statistics(feats["spatial"]),
                      spatial=feats["spatial"], stats_from_features=True)


def respacing_for(sampler, steps, dpm_grid):
    """The --timestep_respacing string of `steps` steps for `sampler`."""
    return f"{dpm_grid}{steps}" if sampler.startswith("dpm++") and dpm_grid != "uniform" else str(steps)


def judge_columns(report):
    """The table's judge columns from a pixel_judge.JudgeReport."""
    return dict(accuracy=report.accuracy, accuracy_se=report.accuracy_stderr, on_manifold=report.on_manifold)


def floor_batch(image_size, num_samples, seed):
    """
    `num_samples` distinct training digits, drawn without replacement by `seed` (the demo's
    floor batch for the same seed).

    :return: (uint8 [N, image_size, image_size, 3], int64 [N] labels).
    """
    images, labels, _ = digits_images("train", image_size)
    if num_samples > len(labels):
        raise ValueError(f"--num_samples {num_samples}: the real-vs-real floor needs that many training "
                         f"digits and there are {len(labels)}; use --num_samples <= {len(labels)}")
    pick = np.random.RandomState(seed).permutation(len(labels))[:num_samples]
    return images[pick], labels[pick]


def real_floor(ctx, args):
    """The floor line: FID of --num_samples training digits against the held-out ones."""
    images, _ = floor_batch(ctx["image_size"], args.num_samples, args.seed)
    fid = batch_frechet_distance(inception_stats(ctx["extractor"], images), ctx["ref_stats"], "pool", method="fast")
    held_out, held_out_labels = ctx["reference"]
    return dict(sampler=f"real vs real ({args.num_samples} train vs {len(held_out)} held-out)", grid="-",
                evaluations=0, fid=float(fid), **judge_columns(ctx["judge"].score(held_out, held_out_labels)))


def grid_kind(respacing):
    """The spacing of a --timestep_respacing string without its count: "karras20" -> "karras", "250" -> ""."""
    return re.sub(r"\d+$", "", respacing)


def planned_points(samplers, steps, dpm_grids):
    """:return: [(sampler, steps, grid)]: every DPM-Solver++ sampler on each of `dpm_grids`, the others evenly."""
    return [(sampler, n, grid) for sampler in samplers
            for grid in (dpm_grids if sampler.startswith("dpm++") else ["uniform"]) for n in steps]


def run_point(ctx, sampler, steps, grid, args):
    """
    Sample, time and score one (sampler, steps) point on `grid` (one of DPM_GRIDS).

    :return: (its table row, a dict; the samples' Inception pool features, float32 [N, 2048]).
    """
    respacing = respacing_for(sampler, steps, grid)
    diffusion = respace(ctx["diffusion"], respacing)
    sync(ctx["device"])
    began = time.perf_counter()
    images, labels = generate_samples(
        ctx["model"], diffusion, num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed,
        sampler=sampler, classifier=ctx["guide"], classifier_scale=args.classifier_scale,
        guidance_scale=BRANCHES[args.branch], labels="balanced",
        num_classes=NUM_DIGIT_CLASSES, device=ctx["device"], progress=True, precision=args.precision,
    )
    sync(ctx["device"])
    seconds = (time.perf_counter() - began) / args.num_samples
    stats = inception_stats(ctx["extractor"], images)
    fid = batch_frechet_distance(stats, ctx["ref_stats"], "pool", method="fast")
    row = dict(sampler=sampler, steps=steps, grid=respacing, evaluations=diffusion.num_timesteps, fid=float(fid),
               seconds_per_sample=seconds, **judge_columns(ctx["judge"].score(images, labels)))
    return row, stats.pool


def features_path(out_dir, row):
    """Where a point's pool features are kept for the bootstrap."""
    return os.path.join(out_dir, "features", f"{row['sampler']}_{row['grid']}.npy")


def add_bootstrap_errors(rows, baseline, ref_pool, out_dir, num_draws, seed=0):
    """
    Put bootstrap standard errors into the rows whose features were kept: "fid_se" (of the FID)
    and, when the baseline row has features, "fid_ratio_se" (of FID / the baseline's FID). Every
    point shares the seeds and labels, so the draws are paired (`evaluations.bootstrap`); the
    held-out reference is resampled too.

    :param rows: table rows (dicts), changed in place; others keep no error.
    :param num_draws: bootstrap draws; < 2 adds nothing.
    """
    kept = [r for r in rows if os.path.exists(features_path(out_dir, r))]
    for r in rows:
        for key in ("fid_se", "fid_ratio_se"):
            r.pop(key, None)
    if num_draws < 2 or not kept:
        return
    draws = bootstrap_fids(ref_pool, [np.load(features_path(out_dir, r)) for r in kept], num_draws, seed)
    ratio = ratio_stderr(draws, kept.index(baseline)) if baseline in kept else None
    for j, (r, se) in enumerate(zip(kept, draws.std(axis=0, ddof=1))):
        r["fid_se"] = float(se)
        if ratio is not None:
            r["fid_ratio_se"] = float(ratio[j])


def format_row(r, baseline):
    """
    One markdown line; `baseline` (a row or None) gives the FID and time ratios. Bootstrap
    errors ("fid_se", "fid_ratio_se"; `add_bootstrap_errors`) follow their figures when present.
    """
    seconds = r.get("seconds_per_sample")
    error = lambda key: f" ± {r[key]:.3f}" if key in r else ""  # noqa: E731
    fid_ratio = "-" if baseline is None else f"{r['fid'] / baseline['fid']:.3f}{error('fid_ratio_se')}"
    time_ratio = "-" if baseline is None or seconds is None else f"{seconds / baseline['seconds_per_sample']:.3f}"
    return (f"| {r['sampler']} | {r['grid']} | {r['evaluations'] or '-'} | {r['fid']:.3f}{error('fid_se')} | "
            f"{r['accuracy']:.3f} ± {r['accuracy_se']:.3f} | {r['on_manifold']:.3f} | "
            f"{'-' if seconds is None else f'{seconds:.4f}'} | {fid_ratio} | {time_ratio} |")


def format_table(rows, baseline, floor=None):
    """Markdown table, the floor line (a row without timing, or None) first."""
    lines = [f"| sampler | grid | model evals | FID | {JUDGE_LABEL} | on manifold | s / sample | FID / baseline "
             f"| time / baseline |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [format_row(r, baseline) for r in ([floor] if floor else []) + list(rows)]
    return "\n".join(lines)


def plot_series(rows):
    """
    The plot's lines: one per sampler, or per sampler and grid when a sampler ran on several
    grids (its colour as is on the first grid, paler on the second, darker on the third).

    :return: [(legend label, RGB colour, the rows of the line)], in first-appearance order.
    """
    series = {}
    for r in rows:
        series.setdefault((r["sampler"], grid_kind(r["grid"])), []).append(r)
    out, seen = [], {}
    for (sampler, kind), members in series.items():
        several = sum(s == sampler for s, _ in series) > 1
        k = seen[sampler] = seen.get(sampler, -1) + 1
        towards, amount = GRID_SHADES[k % len(GRID_SHADES)]
        colour = tuple(int(c + (towards - c) * amount) for c in COLOURS.get(sampler, (0, 0, 0)))
        out.append((f"{sampler} {kind or 'even'}" if several else sampler, colour, members))
    return out


def plot_fid(rows, path, floor_fid=None, size=(840, 480), margin=60, legend_width=130):
    """
    PNG line plot against model evaluations (log axis), one line per `plot_series`. With `floor_fid`
    the y axis is FID minus the real-vs-real floor, on a log scale: samplers a few tenths apart
    near the floor stay apart even when another one (guided DDIM here) is hundreds above it.
    Points at or below the floor sit on the bottom edge. Without a floor: FID on a log scale.
    """
    from PIL import Image, ImageDraw

    floor = 0.0 if floor_fid is None else floor_fid
    excess = np.array([r["fid"] for r in rows], dtype=float) - floor
    bottom = excess[excess > 0].min() / 2 if (excess > 0).any() else 1e-2

    def height(fid):
        return np.log10(max(fid - floor, bottom))

    xs = np.log([r["evaluations"] for r in rows])
    heights = np.array([height(r["fid"]) for r in rows])
    x_lo, x_hi = xs.min() - 0.1, xs.max() + 0.1
    y_lo, y_hi = np.log10(bottom), heights.max() + 0.05 * (heights.max() - np.log10(bottom) + 1e-6)
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
        draw.text((4, py - 6), f"{10 ** y:.3g}", fill=(0, 0, 0))
    draw.text(((w - legend_width) // 2 - 70, h - 22), "model evaluations (log)", fill=(0, 0, 0))
    title = (f"FID above the real-vs-real floor ({floor_fid:.2f}), log scale" if floor_fid is not None
             else "FID, log scale")
    draw.text((margin, 20), f"{title}, against model evaluations", fill=(0, 0, 0))
    for i, (label, colour, members) in enumerate(plot_series(rows)):
        points = sorted(to_px(np.log(r["evaluations"]), height(r["fid"])) for r in members)
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        draw.text((w - margin - legend_width + 12, margin + 8 + 14 * i), f"- {label}", fill=colour)
    img.save(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--run_dir", default="demo_out", help="a `make demo` output folder")
    p.add_argument("--samplers", default=",".join(SAMPLERS))
    p.add_argument("--steps", default=",".join(map(str, STEPS)))
    p.add_argument("--num_samples", type=int, default=1000)
    p.add_argument("--batch_size", type=int, default=250)
    p.add_argument("--classifier_scale", type=float, default=4.0)
    p.add_argument("--branch", default="null", choices=list(BRANCHES),
                   help="which branch of the class-conditional base the classifier guides: null (its null label, "
                        "as the original guides an unconditional model) or conditional (the requested label: the "
                        "paper's ADM-G)")
    p.add_argument("--dpm_grid", default="logsnr",
                   help=f"step grids of the dpm++ samplers, a comma list of {', '.join(DPM_GRIDS)} (ancestral and "
                        "ddim keep the original's even grid)")
    p.add_argument("--precision", default=Recipe().precision, choices=PRECISIONS,
                   help="generate_samples' precision= (default: the demo recipe's; fp32: the networks as they are)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=200,
                   help="bootstrap draws for the standard errors of FID and of FID / baseline (paired: every point "
                        "shares seeds and labels); 0: none")
    p.add_argument("--output_dir", default="", help="default: <run_dir>/bench_solvers")
    add_device_flags(p, device="cuda" if th.cuda.is_available() else "cpu")
    p.set_defaults(threads=len(os.sched_getaffinity(0)))  # one process, every core
    args = p.parse_args(argv)
    args.samplers = [s for s in args.samplers.split(",") if s]
    args.steps = [int(s) for s in args.steps.split(",") if s]
    args.dpm_grid = [g for g in args.dpm_grid.split(",") if g]
    unknown = sorted(set(args.dpm_grid) - set(DPM_GRIDS)) or ([] if args.dpm_grid else ["(none)"])
    if unknown:
        p.error(f"--dpm_grid {','.join(unknown)}: choose a comma list of {', '.join(DPM_GRIDS)}")
    if args.num_samples < 2 or args.batch_size < 1:
        p.error(f"--num_samples must be >= 2 (FID) and --batch_size >= 1, got {args.num_samples}, {args.batch_size}")
    return args


def load_context(args, device):
    """Networks, base diffusion, judge, feature extractor and reference statistics, loaded once."""
    model, model_flags, model_path = load_network(os.path.join(args.run_dir, "diffusion"), "model", device)
    guide, _, guide_path = load_network(os.path.join(args.run_dir, "guide"), "classifier", device)
    size = model_flags["image_size"]
    reference = os.path.join(args.run_dir, f"reference_heldout_{size}px.npz")
    if not os.path.exists(reference):
        raise ValueError(f"--run_dir: {reference} is missing (make demo writes it)")
    ref_images, ref_labels = read_labelled_batch(reference)
    extractor = FeatureExtractor(device=device)
    diffusion = diffusion_from_flags(dict(model_flags, timestep_respacing=""))
    return dict(model=model, guide=guide, diffusion=diffusion, device=device, image_size=size, extractor=extractor,
                judge=digits_judge(size), reference=(ref_images, ref_labels),
                ref_stats=inception_stats(extractor, ref_images),
                checkpoints={p: os.path.getmtime(p) for p in (model_path, guide_path, reference)})


def load_results(json_path, settings):
    """:return: (rows, floor) saved under the same settings, else ([], None)."""
    if not os.path.exists(json_path):
        return [], None
    with open(json_path) as f:
        saved = json.load(f)
    if saved.get("settings") != settings:
        return [], None
    return saved["rows"], saved.get("floor")


def baseline_row(rows):
    """The ancestral point with the most steps among `rows` (whichever run added it), or None."""
    return max((r for r in rows if r["sampler"] == "ancestral"), key=lambda r: r["steps"], default=None)


def write_outputs(out_dir, rows, floor, settings, args, ref_pool):
    """results.md and fid_vs_evaluations.png, with bootstrap errors; :return: the table."""
    rows.sort(key=lambda r: (r["sampler"], grid_kind(r["grid"]), r["evaluations"]))
    baseline = baseline_row(rows)
    add_bootstrap_errors(rows, baseline, ref_pool, out_dir, args.bootstrap)
    table = format_table(rows, baseline, floor)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(f"{table}\n\nbaseline: {baseline['grid'] + '-step ancestral' if baseline else 'none'}; "
                f"judge on the floor line: the held-out digits; {settings}\n")
    plot_fid(rows, os.path.join(out_dir, "fid_vs_evaluations.png"), floor_fid=floor["fid"])
    return table


def main(argv=None):
    args = parse_args(argv)
    device = start(args)
    out_dir = args.output_dir or os.path.join(args.run_dir, "bench_solvers")
    os.makedirs(os.path.join(out_dir, "features"), exist_ok=True)
    ctx = load_context(args, device)
    settings = dict(run_dir=os.path.abspath(args.run_dir), num_samples=args.num_samples, seed=args.seed,
                    classifier_scale=args.classifier_scale, branch=args.branch,
                    precision=args.precision, checkpoints=ctx["checkpoints"])
    json_path = os.path.join(out_dir, "results.json")
    rows, floor = load_results(json_path, settings)
    machine = dict(device=str(device), threads=th.get_num_threads(), cpu=describe_cpu())
    print(f"{machine} {settings}")

    def save():
        with open(json_path, "w") as f:
            json.dump(dict(settings=settings, machine=machine, floor=floor, rows=rows), f, indent=2)

    if floor is None:
        floor = real_floor(ctx, args)
        save()
    for sampler, steps, grid in planned_points(args.samplers, args.steps, args.dpm_grid):
        if any(r["sampler"] == sampler and r["grid"] == respacing_for(sampler, steps, grid) for r in rows):
            continue
        row, pool = run_point(ctx, sampler, steps, grid, args)
        np.save(features_path(out_dir, row), pool)
        rows.append(row)
        print(format_row(row, None), flush=True)
        save()
    table = write_outputs(out_dir, rows, floor, settings, args, ctx["ref_stats"].pool)
    save()
    print(f"\n{table}\n\nwrote {out_dir}/results.md, results.json, fid_vs_evaluations.png, features/")


if __name__ == "__main__":
    main()
