"""
Evaluator benchmarks (CPU by default):

1. feature extraction throughput (images/s) for uint8 batches resized to 299x299;
2. Fréchet distance time at D = 2048: the original's sqrtm, the eigh method, and the exact
   low-rank formula from N = 300 features (what ``--fid_method fast`` uses for small batches);
3. peak memory of precision/recall at N x N (default 10k x 10k, 2048-d features), measured as
   the child process's peak RSS above its RSS once the features exist, for several block sizes.

    python benchmarks/bench_evaluator.py [--images 64] [--pr_n 10000] [--skip ...]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def bench_features(num_images, image_size, batch_size, device):
    import numpy as np
    import torch

    from evaluations.features import FeatureExtractor

    extractor = FeatureExtractor(batch_size=batch_size, device=device)
    images = np.random.default_rng(0).integers(0, 256, (num_images, image_size, image_size, 3), dtype=np.uint8)
    extractor(images[:2])  # warm-up
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    extractor(images)
    if extractor.device.type == "cuda":
        torch.cuda.synchronize()
    return num_images / (time.perf_counter() - start)


def bench_fid(n, dim):
    import numpy as np

    from evaluations.fid import compute_statistics, frechet_distance, frechet_distance_from_features

    rng = np.random.default_rng(0)
    f1, f2 = rng.random((n, dim)), rng.random((n, dim)) + 0.1
    stats = (*compute_statistics(f1), *compute_statistics(f2))
    start = time.perf_counter()
    value = frechet_distance_from_features(f1, f2)
    out = {"low-rank (from features)": {"seconds": round(time.perf_counter() - start, 2), "value": value}}
    for method in ("eigh", "sqrtm"):
        start = time.perf_counter()
        value = frechet_distance(*stats, method=method)
        out[method] = {"seconds": round(time.perf_counter() - start, 2), "value": value}
    return out


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pr_memory_child(n, block):
    """Run in a fresh process: peak RSS of precision_recall above the baseline with features."""
    import numpy as np

    from evaluations.precision_recall import precision_recall

    rng = np.random.default_rng(0)
    ref = rng.random((n, 2048), dtype=np.float32)
    sample = rng.random((n, 2048), dtype=np.float32) + 0.01
    baseline = _rss_kib()
    start = time.perf_counter()
    precision, recall = precision_recall(ref, sample, row_batch_size=block, col_batch_size=block)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "n": n, "block": block, "seconds": round(seconds, 1),
        "features_mib": round(2 * ref.nbytes / 2**20), "baseline_rss_mib": round(baseline / 1024),
        "peak_above_baseline_mib": round((peak - baseline) / 1024),
        "block_distance_matrix_mib": round(min(block, n) ** 2 * 4 / 2**20),
        "precision": precision, "recall": recall,
    }))


def bench_pr_memory(n, blocks):
    results = []
    for block in blocks:
        code = f"import sys; sys.path.insert(0, {REPO!r}); from benchmarks.bench_evaluator import pr_memory_child; pr_memory_child({n}, {block})"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_sizes", default="16,64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fid_n", type=int, default=300, help="features per set for the FID timing")
    parser.add_argument("--pr_n", type=int, default=10000)
    parser.add_argument("--pr_blocks", default="10000,2000")
    parser.add_argument("--skip", default="", help="comma list of: features,fid,pr")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    if "features" not in skip:
        for bs in map(int, args.batch_sizes.split(",")):
            rate = bench_features(args.images, args.image_size, bs, args.device)
            print(f"features: {args.images} images {args.image_size}x{args.image_size} -> 299, batch {bs}, "
                  f"{args.device}: {rate:.2f} images/s")
    if "fid" not in skip:
        for method, r in bench_fid(args.fid_n, 2048).items():
            print(f"frechet_distance D=2048 N={args.fid_n} {method}: {r['seconds']} s (value {r['value']:.6f})")
    if "pr" not in skip:
        for r in bench_pr_memory(args.pr_n, [int(b) for b in args.pr_blocks.split(",")]):
            print(f"precision_recall {r['n']}x{r['n']} block {r['block']}: peak +{r['peak_above_baseline_mib']} MiB "
                  f"over {r['baseline_rss_mib']} MiB baseline (features {r['features_mib']} MiB, one block "
                  f"{r['block_distance_matrix_mib']} MiB), {r['seconds']} s")


if __name__ == "__main__":
    main()
