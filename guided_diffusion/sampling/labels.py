"""
Class labels for sampling: the `--class_labels` option and per-sample label assignment.

`--class_labels` accepts
- "" (default): a uniform random label per sample, drawn from that sample's own seeded stream;
- "balanced": sample i gets label i % num_classes (equal counts when num_samples is a multiple);
- "3,1,4": a comma list of labels, cycled over the samples (sample i gets list[i % len(list)]);
- "null": every sample gets the null label num_classes (the unconditional branch of a model
  trained with --class_dropout_prob).
"""

import numpy as np

from .seeds import random_labels


def parse_class_labels(spec, num_classes):
    """
    Parse and validate a `--class_labels` value.

    :param spec: the flag string.
    :param num_classes: number of classes the model/classifier knows.
    :return: None (random), the string "balanced" or "null", or a tuple of ints.
    :raises ValueError: on a malformed list or a label outside [0, num_classes).
    """
    spec = (spec or "").strip()
    if spec == "" or spec.lower() == "random":
        return None
    if spec.lower() in ("balanced", "null"):
        return spec.lower()
    labels = []
    for part in spec.split(","):
        part = part.strip()
        try:
            label = int(part)
        except ValueError:
            raise ValueError(
                f"--class_labels: {part!r} is not an integer; expected '', 'random', 'balanced', "
                f"'null' or a comma list of labels in [0, {num_classes})"
            ) from None
        if not 0 <= label < num_classes:
            raise ValueError(f"--class_labels: label {label} is outside [0, {num_classes})")
        labels.append(label)
    return tuple(labels)


def labels_for_indices(parsed, seed, indices, num_classes):
    """
    Labels of the given global samples.

    :param parsed: output of `parse_class_labels`.
    :param seed: the run seed (used for random labels).
    :param indices: global sample indices.
    :param num_classes: number of classes.
    :return: an int64 numpy array [len(indices)].
    """
    indices = np.asarray(list(indices), dtype=np.int64)
    if parsed is None:
        return random_labels(seed, indices, num_classes)
    if parsed == "balanced":
        return indices % num_classes
    if parsed == "null":
        raise ValueError("'null' labels are the model's null label, which the caller supplies (model.null_label)")
    table = np.asarray(parsed, dtype=np.int64)
    return table[indices % len(table)]


def check_labels(labels, num_classes, what="labels"):
    """
    :param labels: integer array-like of class labels.
    :param num_classes: the number of classes the networks were trained on.
    :param what: how the message names the labels (e.g. "--base_samples 'x.npz': labels").
    :raises ValueError: unless every label lies in [0, num_classes).
    """
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}); got [{labels.min()}, {labels.max()}]")
