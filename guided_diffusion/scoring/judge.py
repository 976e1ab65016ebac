"""
Judging labelled samples with a clean classifier: how often does it agree with the labels the
samples were asked for (top-1 accuracy), and how likely does it find them (mean log p(y|x)).
"""

import os

import numpy as np
import torch as th
import torch.nn.functional as F

from ..data.pixels import from_uint8_nhwc
from ..sampling.labels import check_labels


def read_labelled_batch(path):
    """
    :param path: an npz with `arr_0` uint8 [N, H, W, 3] and `arr_1` integer labels [N].
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
    Score labelled images with a classifier at t = 0 (a classifier trained with `--noised False`).

    :param classifier: module called as classifier(x, t) -> logits [N x K], K >= num_classes.
    :param images: uint8 [N, H, W, 3].
    :param labels: integer labels [N] in [0, num_classes).
    :param batch_size: images per forward pass.
    :param num_classes: only the first `num_classes` logits compete (e.g. 10 for the digits).
    :param device: where the classifier runs.
    :return: (top-1 accuracy in [0, 1], mean log-probability of the labels (<= 0)), floats.
    :raises ValueError: when labels fall outside [0, num_classes) or the counts differ.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images) or len(images) == 0:
        raise ValueError(f"need one label per image and at least one image, got {len(images)} images "
                         f"and {len(labels)} labels")
    check_labels(labels, num_classes)
    correct, log_prob_sum = 0, 0.0
    for start in range(0, len(images), batch_size):
        x = from_uint8_nhwc(images[start:start + batch_size], device)
        y = th.from_numpy(labels[start:start + batch_size]).to(device)
        t = th.zeros(len(x), dtype=th.long, device=device)
        with th.no_grad():
            logits = classifier(x, t).float()[:, :num_classes]
        log_probs = F.log_softmax(logits, dim=-1)
        correct += (log_probs.argmax(dim=-1) == y).sum().item()
        log_prob_sum += log_probs.gather(1, y.view(-1, 1)).sum().item()
    return correct / len(images), log_prob_sum / len(images)
