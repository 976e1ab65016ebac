"""
Judge a sample batch with a trained classifier: how often does it agree with the labels the
samples were asked for?

    python scripts/classifier_accuracy.py --samples samples_300x32x32x3.npz \
        --classifier_path judge/model001000.pt --image_size 32 [classifier flags]

Reads `arr_0` (uint8 [N, H, W, 3]) and `arr_1` (int labels [N]) from `--samples`, runs the
classifier on the clean images at t = 0 (use a classifier trained with `--noised False`) and
prints `Accuracy: x` (top-1 agreement with `arr_1`) and `Mean log p(y|x): x`. With
`--num_classes K` only the first K logits compete (e.g. 10 for the digits).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch as th  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from guided_diffusion.sampling.runner import cli_main, load_checkpoint  # noqa: E402
from guided_diffusion.script_util import (  # noqa: E402
    add_dict_to_argparser,
    args_to_dict,
    classifier_defaults,
    create_classifier,
)


def read_labelled_batch(path):
    """
    :return: (images uint8 [N, H, W, 3], labels int64 [N]).
    :raises ValueError: when the file lacks `arr_0`/`arr_1` or their shapes disagree.
    """
    if not os.path.exists(path):
        raise ValueError(f"--samples {path!r} does not exist")
    with np.load(path, allow_pickle=False) as f:
        if "arr_0" not in f or "arr_1" not in f:
            raise ValueError(f"--samples {path!r} needs arr_0 (images) and arr_1 (labels); has {sorted(f.files)}")
        images, labels = f["arr_0"], f["arr_1"].astype(np.int64)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"arr_0 must be uint8 [N, H, W, 3], got {images.dtype} {list(images.shape)}")
    if labels.shape != (len(images),):
        raise ValueError(f"arr_1 must hold one label per image ({len(images)}), got shape {list(labels.shape)}")
    return images, labels


def judge(classifier, images, labels, batch_size, num_classes, device):
    """
    :return: (top-1 accuracy, mean log-probability of the requested labels), floats.
    """
    correct, log_prob_sum = 0, 0.0
    for start in range(0, len(images), batch_size):
        x = th.from_numpy(images[start:start + batch_size]).to(device)
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        y = th.from_numpy(labels[start:start + batch_size]).to(device)
        t = th.zeros(len(x), dtype=th.long, device=device)
        with th.no_grad():
            logits = classifier(x, t).float()[:, :num_classes]
        log_probs = F.log_softmax(logits, dim=-1)
        correct += (log_probs.argmax(dim=-1) == y).sum().item()
        log_prob_sum += log_probs.gather(1, y.view(-1, 1)).sum().item()
    return correct / len(images), log_prob_sum / len(images)


def main():
    args = create_argparser().parse_args()
    images, labels = read_labelled_batch(args.samples)
    if images.shape[1] != args.image_size or images.shape[2] != args.image_size:
        raise ValueError(f"samples are {images.shape[1]}x{images.shape[2]} but --image_size is {args.image_size}")
    if labels.min() < 0 or labels.max() >= args.num_classes:
        raise ValueError(f"labels must lie in [0, {args.num_classes}); got [{labels.min()}, {labels.max()}]")
    device = th.device("cuda" if th.cuda.is_available() else "cpu")
    flags = args_to_dict(args, classifier_defaults().keys())
    classifier = create_classifier(**flags)
    load_checkpoint(classifier, args.classifier_path, flags, "classifier", "--classifier_path")
    classifier.to(device).eval()
    accuracy, mean_log_prob = judge(classifier, images, labels, args.batch_size, args.num_classes, device)
    print(f"Accuracy: {accuracy}")
    print(f"Mean log p(y|x): {mean_log_prob}")


def create_argparser():
    defaults = dict(samples="", classifier_path="", batch_size=64, num_classes=1000)
    defaults.update(classifier_defaults())
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_dict_to_argparser(parser, defaults)
    return parser


if __name__ == "__main__":
    cli_main(main)
