"""Closed-form checks of the evaluator statistics: FID, Inception Score, precision/recall."""

import numpy as np
import pytest

from evaluations.batch_stats import BatchStats, batch_frechet_distance
from evaluations.fid import compute_statistics, frechet_distance, frechet_distance_from_features
from evaluations.inception_score import inception_score
from evaluations.precision_recall import manifold_radii, precision_recall


def _features(n=400, d=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d))


def test_compute_statistics_is_mean_and_unbiased_cov():
    feats = _features(50, 4)
    mu, sigma = compute_statistics(feats.astype(np.float32))
    assert mu.dtype == np.float64 and sigma.shape == (4, 4)
    centered = feats - feats.mean(0)
    np.testing.assert_allclose(sigma, centered.T @ centered / 49, rtol=1e-5)


METHODS = pytest.mark.parametrize("method", ["sqrtm", "eigh"])


@METHODS
def test_fid_of_set_with_itself_is_zero(method):
    mu, sigma = compute_statistics(_features())
    assert abs(frechet_distance(mu, sigma, mu, sigma, method=method)) < 1e-8


@METHODS
def test_fid_against_shifted_copy_is_squared_shift(method):
    feats = _features()
    shift = np.linspace(-1.0, 2.0, feats.shape[1])
    mu1, s1 = compute_statistics(feats)
    mu2, s2 = compute_statistics(feats + shift)
    assert frechet_distance(mu1, s1, mu2, s2, method=method) == pytest.approx(float(shift @ shift), rel=1e-8)


@METHODS
def test_fid_of_diagonal_gaussians_closed_form(method):
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, 2.0])
    expected = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b), method=method) == pytest.approx(expected, rel=1e-10)


def test_fid_methods_agree_on_correlated_and_low_rank_covariances():
    rng = np.random.default_rng(3)
    for n in (300, 20):  # full rank and rank-deficient (N < D) covariances, D = 64
        a = rng.standard_normal((n, 64)) @ rng.standard_normal((64, 64))
        b = rng.standard_normal((n, 64)) @ rng.standard_normal((64, 64)) + 0.5
        stats = (*compute_statistics(a), *compute_statistics(b))
        exact = frechet_distance(*stats, method="eigh")
        assert frechet_distance(*stats, method="sqrtm") == pytest.approx(exact, rel=1e-6)


def test_fid_rejects_unknown_method():
    with pytest.raises(ValueError, match="sqrtm"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="svd")


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


def test_inception_score_of_one_hot_uniform_is_number_of_classes():
    preds = np.eye(10)[np.arange(50) % 10]
    assert inception_score(preds, split_size=10) == pytest.approx(10.0)
    assert inception_score(preds) == pytest.approx(10.0)


def test_inception_score_of_identical_predictions_is_one():
    preds = np.tile(np.array([[0.7, 0.2, 0.1]]), (8, 1))
    assert inception_score(preds) == pytest.approx(1.0)


def test_inception_score_partial_last_split_counts():
    # split 1: 4 one-hot images over 4 classes -> 4; partial split 2: 2 identical rows -> 1.
    preds = np.concatenate([np.eye(4), np.tile([[1.0, 0, 0, 0]], (2, 1))])
    assert inception_score(preds, split_size=4) == pytest.approx((4.0 + 1.0) / 2)


def test_inception_score_matches_kl_definition():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((30, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    marginal = p.mean(0)
    expected = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(marginal)), axis=1)))
    assert inception_score(p) == pytest.approx(expected, rel=1e-12)


def _brute_radii(feats, k):
    d = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
    return np.sort(d, axis=1)[:, k]


def test_manifold_radii_equal_brute_force_kth_neighbour():
    feats = _features(37, 5).astype(np.float32)
    expected = _brute_radii(feats.astype(np.float64), 3)
    for rows, cols in [(10000, 10000), (8, 5), (37, 1)]:
        radii = manifold_radii(feats, k=3, row_batch_size=rows, col_batch_size=cols).numpy()
        np.testing.assert_allclose(radii, expected, rtol=1e-4, atol=1e-4)


def test_precision_recall_identical_sets_are_one():
    feats = _features(60, 8)
    assert precision_recall(feats, feats) == (1.0, 1.0)


def test_precision_recall_disjoint_far_sets_are_zero():
    feats = _features(60, 8)
    assert precision_recall(feats, feats + 1e4) == (0.0, 0.0)


def test_precision_recall_half_of_samples_on_manifold():
    # references: 10 points on a line with spacing 1 -> 3rd-NN squared radius in [4, 9].
    ref = np.stack([np.arange(10.0), np.zeros(10)], 1)
    near = ref[:5] + [0.0, 0.5]  # inside reference balls
    far = ref[:5] + [0.0, 100.0]  # outside all reference balls
    sample = np.concatenate([near, far])
    precision, recall = precision_recall(ref, sample)
    assert precision == 0.5
    # sample balls (3rd NN within 'near'): x=0 and x=4 have radius 9, x=1..3 radius 4; a
    # reference at x is covered if (x - x_near)^2 + 0.25 <= radius: x = 0..6, and the 'far'
    # cluster covers nothing.
    assert recall == pytest.approx(7 / 10)
    # the masks name which: the first five samples, and the references at x = 0..6
    _, _, sample_in_ref, ref_in_sample = precision_recall(ref, sample, return_masks=True)
    assert sample_in_ref.tolist() == [True] * 5 + [False] * 5
    assert ref_in_sample.tolist() == [True] * 7 + [False] * 3


def test_precision_recall_independent_of_block_size():
    ref, sample = _features(45, 6, seed=1), _features(33, 6, seed=2) * 1.3
    full = precision_recall(ref, sample)
    assert precision_recall(ref, sample, row_batch_size=7, col_batch_size=4) == full
    assert 0.0 < full[0] < 1.0 or 0.0 < full[1] < 1.0


@pytest.mark.parametrize("n1, n2", [(20, 25), (300, 200)])  # below and above D = 64
def test_fid_from_features_equals_fid_of_statistics(n1, n2):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((n1, 64)) @ rng.standard_normal((64, 64))
    b = rng.standard_normal((n2, 64)) + 0.25
    expected = frechet_distance(*compute_statistics(a), *compute_statistics(b), method="eigh")
    # eigh carries ~1e-9 relative round-off from the rank-deficient covariance's null space
    assert frechet_distance_from_features(a, b) == pytest.approx(expected, rel=1e-7)


def _batch(feats, stats_feats=None):
    stats_feats = feats if stats_feats is None else stats_feats
    stats = compute_statistics(stats_feats)
    return BatchStats(feats, stats, stats, spatial=feats, stats_from_features=stats_feats is feats)


@pytest.mark.parametrize("method", ["sqrtm", "fast"])
def test_batch_fid_uses_file_statistics_over_features(method):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((30, 40)), rng.standard_normal((30, 40)) + 0.5
    sample = _batch(a)
    ref = _batch(b, stats_feats=b * 2.0)  # statistics "from the file" differ from the features
    expected = frechet_distance(*compute_statistics(a), *compute_statistics(b * 2.0), method="eigh")
    for kind in ("pool", "spatial"):
        assert batch_frechet_distance(sample, ref, kind, method) == pytest.approx(expected, rel=1e-6)
    from_features = batch_frechet_distance(sample, _batch(b), "pool", method)
    assert from_features == pytest.approx(frechet_distance_from_features(a, b), rel=1e-6)
