"""
Class labels for sampling: the `--class_labels` option and per-sample label assignment.

`--class_labels` accepts
- "" (default): a uniform random label per sample, drawn from that sample's own seeded stream;
- "balanced": sample i gets label i % num_classes (equal counts when num_samples is a multiple);
- "3,1,4": a comma list of labels, cycled over the samples (sample i gets list[i % len(list)]);
  an item that is not an integer is a class name ("cat,dog"), mapped to its label by the
  `class_names` that the training run of the model or classifier recorded in its args.json
  (integers are always labels, even when a class is named "3");
- "null": every sample gets the null label num_classes (the unconditional branch of a model
  trained with --class_dropout_prob).
"""

import numpy as np

from ..config.run_record import find_run_record
from .seeds import random_labels


def parse_class_labels(spec, num_classes, checkpoints=()):
    """
    Parse and validate a `--class_labels` value.

    :param spec: the flag string.
    :param num_classes: number of classes the model/classifier knows.
    :param checkpoints: (flag, path) pairs of the networks that take labels, e.g.
        `[("--model_path", "run/model000100.pt")]`; a list item that is not an integer is a class
        name, looked up in the `class_names` of the args.json beside these checkpoints.
    :return: None (random), the string "balanced" or "null", or a tuple of ints.
    :raises ValueError: on a malformed list, a label outside [0, num_classes), or a class name
        that no record maps (the message lists the recorded names).
    """
    spec = (spec or "").strip()
    if spec == "" or spec.lower() == "random":
        return None
    if spec.lower() in ("balanced", "null"):
        return spec.lower()
    labels, names = [], None
    for part in spec.split(","):
        part = part.strip()
        try:
            label = int(part)
        except ValueError:
            if names is None:
                names = recorded_class_names(checkpoints)
            label = _label_of_name(part, names, num_classes, checkpoints)
        if not 0 <= label < num_classes:
            raise ValueError(f"--class_labels: label {label} is outside [0, {num_classes})")
        labels.append(label)
    return tuple(labels)


def recorded_class_names(checkpoints):
    """
    The class mapping recorded with the checkpoints' training runs.

    :param checkpoints: (flag, path) pairs; empty paths are skipped.
    :return: (names, where): `names[i]` names class i, `where` says which record; names is
        None when no record beside any checkpoint has `class_names`.
    :raises ValueError: when two records map the classes differently.
    """
    found = []
    for flag, path in checkpoints:
        if not path:
            continue
        record, record_path = find_run_record(path)
        if isinstance(record.get("class_names"), list):
            found.append((record["class_names"], f"{record_path} (beside {flag})"))
    for names, where in found[1:]:
        if names != found[0][0]:
            raise ValueError(f"--class_labels: the class names in {found[0][1]} and {where} differ, so a name "
                             f"does not say which label both networks were trained on; give integer labels")
    return found[0] if found else (None, None)


_SHOWN_NAMES = 20  # an ImageNet folder has 1000 names; list only the first ones


def _label_of_name(part, names_where, num_classes, checkpoints):
    names, where = names_where
    if names is None:
        looked = ", ".join(f"{flag} {path}" for flag, path in checkpoints if path) or "no checkpoint"
        raise ValueError(
            f"--class_labels: {part!r} is not an integer, and no class names are recorded for the checkpoints "
            f"({looked}: no args.json with class_names beside them); give labels in [0, {num_classes}), "
            f"'balanced', 'null' or ''"
        )
    if part not in names:
        shown = ", ".join(names[:_SHOWN_NAMES]) + (f", ... ({len(names)} in all)" if len(names) > _SHOWN_NAMES else "")
        raise ValueError(f"--class_labels: unknown class name {part!r}; the names in {where} are: {shown}")
    return names.index(part)


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
