"""Class labels for sampling: the --class_labels forms, per-sample assignment, range checks."""

import numpy as np
import pytest

from guided_diffusion.sampling.labels import (
    check_labels,
    labels_for_indices,
    parse_class_labels,
)


def test_parse_class_labels_forms():
    assert parse_class_labels("", 10) is None
    assert parse_class_labels("balanced", 10) == "balanced"
    assert parse_class_labels(" 3, 1,4 ", 10) == (3, 1, 4)
    with pytest.raises(ValueError, match="outside"):
        parse_class_labels("3,10", 10)
    with pytest.raises(ValueError, match="'x'"):
        parse_class_labels("3,x", 10)


def test_balanced_and_cycled_labels():
    idx = np.arange(7)
    assert labels_for_indices("balanced", 0, idx, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert labels_for_indices((5, 2), 0, idx, 10).tolist() == [5, 2, 5, 2, 5, 2, 5]
    assert labels_for_indices((5, 2), 0, idx, 10).dtype == np.int64


def test_random_labels_stay_below_num_classes():
    labels = labels_for_indices(None, 0, range(500), 3)
    assert set(labels.tolist()) == {0, 1, 2}


def test_check_labels_refuses_labels_at_or_above_num_classes():
    check_labels(np.array([0, 9]), 10)
    check_labels(np.array([], dtype=np.int64), 10)
    with pytest.raises(ValueError, match=r"\[0, 10\); got \[0, 10\]"):
        check_labels(np.array([0, 10]), 10)
    with pytest.raises(ValueError, match="my labels"):
        check_labels([-1], 10, "my labels")
