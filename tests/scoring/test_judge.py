"""Judging labelled samples: accuracy and mean log-probability against a closed-form classifier."""

import numpy as np
import pytest
import torch as th

from guided_diffusion.scoring.judge import judge, read_labelled_batch


class _MeanColourClassifier(th.nn.Module):
    """logits = [mean red, mean green, mean blue, -1e3 ...]: the dominant colour wins."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x, t):
        assert (t == 0).all()  # judged clean, at t = 0
        means = x.mean(dim=(2, 3))
        pad = th.full((len(x), self.k - 3), -1e3)
        return th.cat([means, pad], dim=1)


def _images():
    images = np.zeros((6, 2, 2, 3), np.uint8)
    for i in range(6):
        images[i, :, :, i % 3] = 255
    return images, np.arange(6) % 3


def test_accuracy_and_log_prob_closed_form():
    images, labels = _images()
    accuracy, mean_lp = judge(_MeanColourClassifier(5), images, labels, batch_size=4, num_classes=5, device="cpu")
    assert accuracy == 1.0
    # logits (1, -1, -1, -1e3, -1e3): log p = 1 - log(e + 2/e + ~0)
    assert mean_lp == pytest.approx(1 - np.log(np.e + 2 / np.e), abs=1e-5)
    accuracy, _ = judge(_MeanColourClassifier(5), images, (labels + 1) % 3, 4, 5, "cpu")
    assert accuracy == 0.0


def test_only_the_first_num_classes_logits_compete():
    images, labels = _images()
    _, lp_all = judge(_MeanColourClassifier(5), images, labels, 6, 5, "cpu")
    _, lp_three = judge(_MeanColourClassifier(5), images, labels, 6, 3, "cpu")
    assert lp_three == pytest.approx(lp_all, abs=1e-6)  # the padded logits carry ~0 mass
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        judge(_MeanColourClassifier(5), images, labels, 6, 2, "cpu")


def test_read_labelled_batch_checks_the_file(tmp_path):
    images, labels = _images()
    path = str(tmp_path / "s.npz")
    np.savez(path, arr_0=images, arr_1=labels.astype(np.int32))
    got, got_labels = read_labelled_batch(path)
    assert np.array_equal(got, images) and got_labels.dtype == np.int64
    np.savez(path, arr_0=images, arr_1=labels[:4])
    with pytest.raises(ValueError, match="one label per image"):
        read_labelled_batch(path)
    with pytest.raises(ValueError, match="does not exist"):
        read_labelled_batch(str(tmp_path / "missing.npz"))
