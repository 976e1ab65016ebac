"""Bootstrap errors of FID: exact per draw, paired across batches, calibrated against resampling."""

import numpy as np
import pytest

from evaluations.bootstrap import bootstrap_fids, ratio_stderr
from evaluations.fid import frechet_distance_from_features


def _gaussian(n, d=12, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal((n, d)) * scale


def test_each_draw_is_the_fid_of_the_resampled_rows():
    reference, batch = _gaussian(60, seed=1) + 0.5, _gaussian(90, seed=2)
    draws = bootstrap_fids(reference, [batch, 1.3 * batch], num_draws=4, seed=7)
    # the documented order of the random draws: the batch rows, then the reference rows
    rng = np.random.RandomState(7)
    for k in range(4):
        rows, ref_rows = rng.randint(0, 90, size=90), rng.randint(0, 60, size=60)
        expected = [frechet_distance_from_features(b[rows], reference[ref_rows]) for b in (batch, 1.3 * batch)]
        np.testing.assert_allclose(draws[k], expected, rtol=1e-6)


def test_fixed_reference_draws_only_the_batch_rows():
    reference, batch = _gaussian(40, seed=3), _gaussian(50, seed=4) + 0.2
    draws = bootstrap_fids(reference, [batch], num_draws=3, seed=1, resample_reference=False)
    rng = np.random.RandomState(1)
    for k in range(3):
        rows = rng.randint(0, 50, size=50)
        assert draws[k, 0] == pytest.approx(frechet_distance_from_features(batch[rows], reference), rel=1e-6)


def test_spread_matches_fresh_batches_from_the_same_distribution():
    # the bootstrap's standard deviation should estimate how much FID moves between independent
    # batches (and references) drawn from the same two distributions
    n, m = 200, 150
    fresh = [frechet_distance_from_features(_gaussian(n, seed=100 + i) + 0.3, _gaussian(m, seed=500 + i))
             for i in range(150)]
    boot = bootstrap_fids(_gaussian(m, seed=9), [_gaussian(n, seed=8) + 0.3], num_draws=300, seed=0)[:, 0]
    assert 0.6 < boot.std(ddof=1) / np.std(fresh, ddof=1) < 1.6


def test_pairing_shrinks_the_ratio_error():
    # a batch and a slightly perturbed copy share their sampling noise: the ratio of their FIDs
    # moves far less than either FID does
    reference, batch = _gaussian(150, seed=11), _gaussian(200, seed=12) + 0.4
    twin = batch + 0.05 * _gaussian(200, seed=13)
    draws = bootstrap_fids(reference, [batch, twin], num_draws=200, seed=2)
    relative_spread = draws[:, 0].std(ddof=1) / draws[:, 0].mean()
    errors = ratio_stderr(draws, baseline_column=0)
    assert errors[0] == 0.0
    assert 0 < errors[1] < relative_spread / 5


def test_bad_input_is_named():
    ref = _gaussian(30)
    with pytest.raises(ValueError, match="paired batches"):
        bootstrap_fids(ref, [_gaussian(20), _gaussian(21)])
    with pytest.raises(ValueError, match="paired batches"):
        bootstrap_fids(ref, [np.zeros(20)])
    with pytest.raises(ValueError, match="reference"):
        bootstrap_fids(_gaussian(30, d=5), [_gaussian(20)])
    with pytest.raises(ValueError, match="num_draws"):
        bootstrap_fids(ref, [_gaussian(20)], num_draws=1)
