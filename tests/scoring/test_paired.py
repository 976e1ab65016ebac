"""scoring/paired.py: the paired difference and its standard error."""

import numpy as np
import pytest

from guided_diffusion.scoring.paired import paired_difference
from guided_diffusion.scoring.pixel_judge import binomial_stderr


def test_closed_form_on_four_items():
    diff, se = paired_difference([1, 1, 0, 0], [1, 0, 1, 1])  # d = 0, -1, 1, 1
    assert diff == pytest.approx(0.25)
    assert se == pytest.approx(np.sqrt(np.var([0, -1, 1, 1], ddof=1) / 4))


def test_identical_runs_differ_by_zero_with_zero_error():
    flags = np.random.RandomState(0).rand(500) < 0.7
    assert paired_difference(flags, flags) == (0.0, 0.0)


def test_correlated_runs_get_a_smaller_error_than_independent_binomials_and_it_is_calibrated():
    rng = np.random.RandomState(1)
    n, trials = 400, 2000
    diffs, ses = [], []
    for _ in range(trials):
        before = rng.rand(n) < 0.8
        # after: the same outcome, flipped to inside for 10% of the items that were outside, so
        # the true difference is 0.02 and the two runs share most of their outcomes
        after = before | (rng.rand(n) < 0.1)
        diffs.append(after.mean() - before.mean())
        ses.append(paired_difference(before, after)[1])
    independent = np.hypot(binomial_stderr(0.8, n), binomial_stderr(0.82, n))
    assert np.mean(ses) < independent / 2
    # the paired error is the spread of the difference over repeated runs, within 10%
    assert np.mean(ses) == pytest.approx(np.std(diffs), rel=0.1)


def test_mismatched_or_too_short_outcomes_are_refused():
    with pytest.raises(ValueError, match="same N"):
        paired_difference([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="N >= 2"):
        paired_difference([1], [0])
