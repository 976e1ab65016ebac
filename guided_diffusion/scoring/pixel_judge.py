"""
An independent judge of labelled image batches: k-nearest neighbours on grey pixels.

Guidance follows the gradient of a noisy `EncoderUNetModel`, and a clean classifier of the same
family, trained on the same images, is fooled by the same features. A judge from another model
family, fitted on the training images only, has no such shared blind spot. k-NN on pixels is the
simplest such family: a sample is called a "3" when the training images nearest to it, in plain
pixel distance, are mostly 3s.

Features: the image in grey (the mean of the three channels), box-downsampled to `FEATURE_SIDE`
squared pixels (the digits' native 8x8), in [0, 1]. A sample far from every training image is
still given the majority label of its neighbours, so `on_manifold` reports, beside the accuracy,
how many samples lie as close to the training set as real held-out images do.
"""

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..data.digits import NUM_DIGIT_CLASSES, digits_images

FEATURE_SIDE = 8
CANDIDATE_K = (1, 3, 5, 7, 9)
# a sample is "on the manifold" when its nearest training image is no farther than this quantile of
# the leave-one-out nearest-neighbour distances among the training images themselves
MANIFOLD_QUANTILE = 0.99


def pixel_features(images):
    """
    :param images: uint8 [N, H, W, 3] (or [N, H, W] grey).
    :return: float64 [N, FEATURE_SIDE ** 2], grey intensity in [0, 1], box-resized when H or W
             differ from FEATURE_SIDE.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] != 3):
        raise ValueError(f"images must be uint8 [N, H, W, 3] or [N, H, W], got {images.dtype} {list(images.shape)}")
    grey = images.astype(np.float64).mean(axis=-1) if images.ndim == 4 else images.astype(np.float64)
    if grey.shape[1:] != (FEATURE_SIDE, FEATURE_SIDE):
        grey = np.stack([
            np.asarray(Image.fromarray(g.astype(np.float32), mode="F").resize(
                (FEATURE_SIDE, FEATURE_SIDE), resample=Image.BOX), dtype=np.float64)
            for g in grey
        ])
    return grey.reshape(len(grey), -1) / 255.0


def squared_distances(a, b):
    """:return: float64 [len(a), len(b)] squared Euclidean distances (clipped at 0)."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def vote(neighbour_labels, num_classes):
    """
    Majority label of each row of `neighbour_labels` ([N, k], nearest first). Ties go to the tied
    class whose member is nearest, so k = 1 and a clear majority behave as expected.

    :return: int64 [N].
    """
    n, k = neighbour_labels.shape
    counts = np.zeros((n, num_classes), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), neighbour_labels.ravel()), 1)
    best = counts.max(axis=1, keepdims=True)
    tied = counts == best
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = next(c for c in neighbour_labels[i] if tied[i, c])
    return out


@dataclass
class JudgeReport:
    """What the judge says of a labelled batch."""

    accuracy: float  # fraction whose predicted label equals the requested one
    accuracy_stderr: float  # binomial standard error of `accuracy`
    on_manifold: float  # fraction as near the training images as real held-out images are
    predicted: np.ndarray  # int64 [N] predicted labels
    count: int


class PixelKNNJudge:
    """
    k-NN on grey pixels. `fit` keeps the training features and picks k from CANDIDATE_K by
    leave-one-out accuracy on the training images (no held-out data is looked at).
    """

    def __init__(self, num_classes):
        self.num_classes = int(num_classes)
        self.k = None

    def fit(self, images, labels):
        """:param images: uint8 [N, H, W, 3]; labels: int [N] in [0, num_classes)."""
        labels = np.asarray(labels, dtype=np.int64)
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        self.features = pixel_features(images)
        self.labels = labels
        d = squared_distances(self.features, self.features)
        np.fill_diagonal(d, np.inf)  # leave one out
        order = np.argsort(d, axis=1)[:, : max(CANDIDATE_K)]
        scores = {k: float((vote(labels[order[:, :k]], self.num_classes) == labels).mean()) for k in CANDIDATE_K}
        self.k = max(CANDIDATE_K, key=lambda k: (scores[k], -k))
        self.leave_one_out_accuracy = scores
        self.manifold_radius = float(np.sqrt(np.quantile(d[np.arange(len(d)), order[:, 0]], MANIFOLD_QUANTILE)))
        return self

    def predict(self, images, chunk=512):
        """:return: (int64 [N] labels, float64 [N] distance to the nearest training image)."""
        if self.k is None:
            raise RuntimeError("call fit() before predict()")
        features = pixel_features(images)
        labels, nearest = [], []
        for start in range(0, len(features), chunk):
            d = squared_distances(features[start:start + chunk], self.features)
            order = np.argpartition(d, self.k - 1, axis=1)[:, : self.k]
            order = np.take_along_axis(order, np.argsort(np.take_along_axis(d, order, 1), axis=1), 1)
            labels.append(vote(self.labels[order], self.num_classes))
            nearest.append(np.sqrt(d[np.arange(len(d)), order[:, 0]]))
        return np.concatenate(labels), np.concatenate(nearest)

    def score(self, images, requested):
        """
        :param images: uint8 [N, H, W, 3]; requested: int [N] labels the samples were asked for.
        :return: a JudgeReport.
        """
        requested = np.asarray(requested, dtype=np.int64)
        if requested.shape != (len(images),):
            raise ValueError(f"need one label per image ({len(images)}), got shape {list(requested.shape)}")
        predicted, nearest = self.predict(images)
        accuracy = float((predicted == requested).mean())
        return JudgeReport(accuracy=accuracy, accuracy_stderr=binomial_stderr(accuracy, len(requested)),
                           on_manifold=float((nearest <= self.manifold_radius).mean()),
                           predicted=predicted, count=len(requested))


def binomial_stderr(p, n):
    """Standard error of a proportion `p` measured on `n` independent trials."""
    return float(np.sqrt(max(p * (1.0 - p), 0.0) / max(int(n), 1)))


def label_histogram(labels, num_classes):
    """:return: float64 [num_classes], the fraction of `labels` in each class (sums to 1)."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.bincount(labels, minlength=num_classes)[:num_classes] / max(len(labels), 1)


def digits_judge(image_size):
    """The judge fitted on the embedded digits' training split, rendered at `image_size`."""
    images, labels, _ = digits_images("train", image_size)
    return PixelKNNJudge(NUM_DIGIT_CLASSES).fit(images, labels)


def fitted_judge(judge_data, image_size, num_classes):
    """
    The pixel judge of `classifier_accuracy.py --judge pixel_knn`.

    :param judge_data: "digits" (the embedded digits' training split) or an npz of labelled
                       training images (`arr_0` uint8 [N, H, W, 3], `arr_1` labels [N]).
    :param image_size: the side length of the samples to judge.
    :param num_classes: labels lie in [0, num_classes).
    :raises ValueError: for an unknown source or labels outside the classes.
    """
    if judge_data == "digits":
        if num_classes != NUM_DIGIT_CLASSES:
            raise ValueError(f"--judge_data digits has {NUM_DIGIT_CLASSES} classes; pass --num_classes "
                             f"{NUM_DIGIT_CLASSES}, not {num_classes}")
        return digits_judge(image_size)
    if not str(judge_data).endswith(".npz") or not os.path.exists(judge_data):
        raise ValueError(f"--judge_data must be 'digits' or an existing npz of labelled training images "
                         f"(arr_0 uint8 [N, H, W, 3], arr_1 labels), got {judge_data!r}")
    with np.load(judge_data, allow_pickle=False) as f:
        if "arr_0" not in f or "arr_1" not in f:
            raise ValueError(f"--judge_data {judge_data!r} needs arr_0 (images) and arr_1 (labels)")
        return PixelKNNJudge(num_classes).fit(f["arr_0"], f["arr_1"])
