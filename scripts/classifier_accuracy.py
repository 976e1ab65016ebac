"""
Judge a sample batch with a trained classifier: how often does it agree with the labels the
samples were asked for?

    python scripts/classifier_accuracy.py --samples samples_300x32x32x3.npz \
        --classifier_path judge/model001000.pt --image_size 32 [classifier flags]

Reads `arr_0` (uint8 [N, H, W, 3]) and `arr_1` (int labels [N]) from `--samples`, runs the
classifier on the clean images at t = 0 (use a classifier trained with `--noised False`) and
prints `Accuracy: x` (top-1 agreement with `arr_1`) and `Mean log p(y|x): x`. With
`--num_classes K` only the first K logits compete (e.g. 10 for the digits).

A classifier of the guide's own family shares its blind spots, so an independent judge is built in:

    python scripts/classifier_accuracy.py --samples samples.npz --judge pixel_knn \
        --judge_data digits --image_size 8 --num_classes 10

k-nearest neighbours on grey pixels, fitted on the training images only (`--judge_data digits`,
or an npz of labelled training images). It prints `Accuracy`, its binomial standard error, the
fraction of samples as near the training images as real digits are (`On manifold`) and the
histogram of the labels it sees.
"""

import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch as th

from guided_diffusion.config.flags import flag_parser, parse_and_validate
from guided_diffusion.runtime.cli import run_cli
from guided_diffusion.sampling.labels import check_labels
from guided_diffusion.sampling.loading import build_from_flags, load_checkpoint
from guided_diffusion.scoring.judge import judge, read_labelled_batch
from guided_diffusion.scoring.pixel_judge import fitted_judge, label_histogram
from guided_diffusion.script_util import classifier_defaults


JUDGES = ("classifier", "pixel_knn")


def main():
    args = parse_and_validate(create_argparser())
    if args.judge not in JUDGES:
        raise ValueError(f"--judge {args.judge!r} is not one of {', '.join(JUDGES)}")
    images, labels = read_labelled_batch(args.samples)
    if images.shape[1] != args.image_size or images.shape[2] != args.image_size:
        raise ValueError(f"samples are {images.shape[1]}x{images.shape[2]} but --image_size is {args.image_size}")
    check_labels(labels, args.num_classes, f"--samples {args.samples!r}: labels (arr_1)")
    if args.judge == "pixel_knn":
        report = fitted_judge(args.judge_data, args.image_size, args.num_classes).score(images, labels)
        print(f"Accuracy: {report.accuracy}")
        print(f"Accuracy stderr: {report.accuracy_stderr}")
        print(f"On manifold: {report.on_manifold}")
        histogram = label_histogram(report.predicted, args.num_classes)
        print("Label histogram: " + ",".join(f"{v:.4f}" for v in histogram))
        return
    device = th.device("cuda" if th.cuda.is_available() else "cpu")
    classifier, _, flags = build_from_flags(args, "classifier")
    load_checkpoint(classifier, args.classifier_path, flags, "classifier", "--classifier_path")
    classifier.to(device).eval()
    accuracy, mean_log_prob = judge(classifier, images, labels, args.batch_size, args.num_classes, device)
    print(f"Accuracy: {accuracy}")
    print(f"Mean log p(y|x): {mean_log_prob}")


def create_argparser():
    defaults = dict(samples="", judge="classifier", judge_data="digits", classifier_path="", batch_size=64,
                    num_classes=1000)
    return flag_parser(__doc__, defaults, classifier_defaults())


if __name__ == "__main__":
    run_cli(main)
