"""Super-resolution inputs: what is returned, and every defect named with the file."""

import numpy as np
import pytest

from guided_diffusion.sampling.base_samples import load_base_samples


def test_class_conditional_inputs_come_back_with_int64_labels(tmp_path):
    path = str(tmp_path / "base.npz")
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    np.savez(path, images, np.array([3, 1], dtype=np.int32))
    got, labels = load_base_samples(path, 4, class_cond=True, num_classes=10)
    assert np.array_equal(got, images) and labels.dtype == np.int64 and labels.tolist() == [3, 1]
    assert load_base_samples(path, 4, class_cond=False, num_classes=10)[1] is None


@pytest.mark.parametrize("labels,expected", [(np.array([0, 10]), r"must lie in \[0, 10\)"),
                                             (np.array([0.5, 1.0]), "expected integer labels"),
                                             (np.array([1, 2, 3]), "expected integer labels of shape")])
def test_bad_labels_are_named(tmp_path, labels, expected):
    path = str(tmp_path / "base.npz")
    np.savez(path, np.zeros((2, 4, 4, 3), np.uint8), labels)
    with pytest.raises(ValueError, match=expected):
        load_base_samples(path, 4, class_cond=True, num_classes=10)


def test_empty_path_and_empty_batch(tmp_path):
    with pytest.raises(ValueError, match="--base_samples is required"):
        load_base_samples("", 4, False, 10)
    path = str(tmp_path / "empty.npz")
    np.savez(path, np.zeros((0, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="M >= 1"):
        load_base_samples(path, 4, False, 10)
