"""
The paper's trade-off across guidance scales, with paired standard errors: precision, recall and
the independent judge's accuracy of sample batches drawn from the same seeds and labels (the
demo's rows: sample i of every row starts from the same noise and asks for the same digit), and
the change of each from the first batch to every later one.

    python benchmarks/bench_trade_off.py --reference demo_out/reference_heldout_8px.npz \\
        demo_out/samples/free_1/samples_300x8x8x3.npz demo_out/samples/scale_1/samples_300x8x8x3.npz \\
        demo_out/samples/scale_4/samples_300x8x8x3.npz

Independent binomial errors overstate the noise of such a change: a sample that lies inside the
real digits' manifold at scale 0 mostly does at scale 4 too, and a held-out digit that one batch
covers, the next mostly covers as well. Every metric here is a mean of per-item outcomes
(sample i inside the reference manifold; reference digit j inside the samples' manifold; sample
i judged as its requested digit), so the change is a mean of paired differences with standard
error std(d) / sqrt(n) (`scoring/paired.py`). Recall's items are the reference digits, whose
manifold balls come from each batch in turn. Features are the evaluator's Inception pool
features; each batch's are cached beside the results and reused while the npz is unchanged.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_solvers.py

import numpy as np  # noqa: E402
import torch as th  # noqa: E402

from evaluations.features import FeatureExtractor  # noqa: E402
from evaluations.precision_recall import precision_recall  # noqa: E402
from guided_diffusion.runtime.precision import describe_cpu  # noqa: E402
from guided_diffusion.scoring.judge import read_labelled_batch  # noqa: E402
from guided_diffusion.scoring.paired import paired_difference  # noqa: E402
from guided_diffusion.scoring.pixel_judge import binomial_stderr, digits_judge  # noqa: E402

METRICS = (("precision", "samples"), ("recall", "reference digits"), ("judge", "samples"))


def cached_pool_features(extractor, images, npz, cache_dir):
    """Inception pool features [N, 2048] of `images`, cached per npz path and modification time."""
    key = f"{os.path.abspath(npz)}:{os.path.getmtime(npz)}"
    name = os.path.abspath(npz).strip(os.sep).replace(os.sep, "_")
    path = os.path.join(cache_dir, f"{name}.pool.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            if str(f["key"]) == key:
                return f["pool"]
    pool = extractor(images)["pool"]
    np.savez(path, pool=pool, key=key)
    return pool


def outcomes(ref_pool, pool, images, labels, judge):
    """:return: {"precision": bool [N], "recall": bool [N_ref], "judge": bool [N]} per-item outcomes."""
    _, _, sample_in_ref, ref_in_sample = precision_recall(ref_pool, pool, return_masks=True)
    return dict(precision=sample_in_ref, recall=ref_in_sample, judge=judge.score(images, labels).predicted == labels)


def check_paired(first, batch, first_path, path):
    """:raises ValueError: unless `batch` asks for the same labels, in the same order, as `first`."""
    if len(batch[1]) != len(first[1]) or not np.array_equal(batch[1], first[1]):
        raise ValueError(f"{path} and {first_path} are not paired: paired errors need batches of the same "
                         f"seeds and labels (same --seed, --num_samples and --class_labels), got "
                         f"{len(batch[1])} and {len(first[1])} samples with different labels")


def format_tables(names, items):
    """Per-batch figures with binomial errors, then each batch's change from the first, paired."""
    lines = ["| batch | " + " | ".join(m for m, _ in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for name, out in zip(names, items):
        cells = [f"{out[m].mean():.3f} ± {binomial_stderr(out[m].mean(), len(out[m])):.3f}" for m, _ in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| change | " + " | ".join(f"{m} (paired over the {what})" for m, what in METRICS) + " |",
              "|---|" + "---|" * len(METRICS)]
    for name, out in zip(names[1:], items[1:]):
        cells = []
        for m, _ in METRICS:
            diff, se = paired_difference(items[0][m], out[m])
            z = f"{diff / se:+.1f}" if se > 0 else "exact"
            cells.append(f"{diff:+.3f} ± {se:.3f} ({z} SE)")
        lines.append(f"| {names[0]} -> {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("batches", nargs="+", help="labelled sample npz files from the same seeds, lowest scale first")
    p.add_argument("--reference", required=True, help="the held-out digits npz (make demo writes it)")
    p.add_argument("--image_size", type=int, default=8, help="the digits' size the judge is fitted at")
    p.add_argument("--output_dir", default="bench_out/trade_off")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = p.parse_args(argv)
    if len(args.batches) < 2:
        p.error("give at least two batches: the first is the baseline of every change")
    th.set_num_threads(args.threads)
    os.makedirs(args.output_dir, exist_ok=True)
    extractor = FeatureExtractor(device="cuda" if th.cuda.is_available() else "cpu")
    judge = digits_judge(args.image_size)
    ref_images, _ = read_labelled_batch(args.reference)
    ref_pool = cached_pool_features(extractor, ref_images, args.reference, args.output_dir)
    batches = [read_labelled_batch(path) for path in args.batches]
    for path, batch in zip(args.batches[1:], batches[1:]):
        check_paired(batches[0], batch, args.batches[0], path)
    items = []
    for path, (images, labels) in zip(args.batches, batches):
        print(f"features and outcomes of {path}", flush=True)
        pool = cached_pool_features(extractor, images, path, args.output_dir)
        items.append(outcomes(ref_pool, pool, images, labels, judge))
    names = [os.path.basename(os.path.dirname(os.path.abspath(path))) for path in args.batches]
    table = format_tables(names, items)
    text = f"CPU: {describe_cpu()}\nreference: {args.reference} ({len(ref_images)} digits)\n\n{table}\n"
    print("\n" + text)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(dict(batches=args.batches, reference=args.reference,
                       rates={n: {m: float(o[m].mean()) for m, _ in METRICS} for n, o in zip(names, items)}), f,
                  indent=2)
    print(f"wrote {args.output_dir}/results.md and results.json")


if __name__ == "__main__":
    main()
