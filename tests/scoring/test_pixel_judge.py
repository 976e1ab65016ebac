"""The pixel k-NN judge: closed-form votes, distances and standard errors, and its digits figures."""

import numpy as np
import pytest

from guided_diffusion.data.digits import digits_images
from guided_diffusion.scoring.pixel_judge import (
    PixelKNNJudge,
    binomial_stderr,
    digits_judge,
    label_histogram,
    pixel_features,
    squared_distances,
    vote,
)


def test_vote_majority_and_nearest_tie_break():
    rows = np.array([[2, 1, 1], [0, 1, 2], [3, 3, 0]])
    assert vote(rows, 4).tolist() == [1, 0, 3]  # majority; a three-way tie goes to the nearest


def test_squared_distances_match_direct_formula():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(4, 7))
    direct = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(a, b), direct, atol=1e-12)


def test_features_are_grey_in_unit_range_and_box_resized():
    img = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    img[0, :2, :2] = (255, 0, 0)  # one red 2x2 block = one feature pixel at 1/3 grey
    f = pixel_features(img)
    assert f.shape == (1, 64)
    assert f[0, 0] == pytest.approx(1 / 3) and f[0, 1:].max() == 0.0
    with pytest.raises(ValueError, match="uint8"):
        pixel_features(img.astype(np.float32))


def test_training_images_are_their_own_labels_and_noise_is_off_manifold():
    images, labels, _ = digits_images("train", 8)
    judge = PixelKNNJudge(10).fit(images[:400], labels[:400])
    assert judge.k in (1, 3, 5, 7, 9)
    predicted, nearest = judge.predict(images[:400])
    assert nearest.max() < 1e-6  # each training image is its own nearest neighbour
    assert (predicted == labels[:400]).mean() > 0.99
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8)
    assert judge.score(noise, np.zeros(50, dtype=int)).on_manifold == 0.0


def test_digits_judge_recognises_held_out_digits():
    judge = digits_judge(8)
    images, labels, _ = digits_images("heldout", 8)
    report = judge.score(images, labels)
    assert report.accuracy >= 0.95 and report.on_manifold >= 0.95
    # shuffled labels fall to chance (0.1 within a few standard errors)
    shuffled = np.random.default_rng(0).permutation(labels)
    assert abs(judge.score(images, shuffled).accuracy - 0.1) < 4 * binomial_stderr(0.1, len(labels))


def test_histogram_and_stderr_closed_forms():
    np.testing.assert_allclose(label_histogram([0, 0, 1, 3], 4), [0.5, 0.25, 0.0, 0.25])
    assert binomial_stderr(0.5, 100) == pytest.approx(0.05)
    assert binomial_stderr(1.0, 10) == 0.0
