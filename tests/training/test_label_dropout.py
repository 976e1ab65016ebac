"""Label dropout: the rate, the null label, reproducibility from the seeded global generator."""

import math

import pytest
import torch as th

from guided_diffusion.training.label_dropout import drop_labels

NULL = 10


def _labels(n, seed=0):
    return th.randint(0, NULL, (n,), generator=th.Generator().manual_seed(seed))


@pytest.mark.parametrize("p", [0.05, 0.15, 0.5])
def test_dropout_rate_is_within_three_binomial_standard_errors(p):
    g = th.Generator().manual_seed(123)
    batches, size = 400, 128
    dropped = 0
    for b in range(batches):
        y = _labels(size, seed=b)
        out = drop_labels(y, p, NULL, generator=g)
        kept = out != NULL
        assert th.equal(out[kept], y[kept])  # a label is either kept as is or becomes null
        dropped += int((~kept).sum())
    n = batches * size
    assert abs(dropped / n - p) <= 3 * math.sqrt(p * (1 - p) / n)


def test_zero_probability_returns_the_labels_and_draws_nothing():
    y = _labels(16)
    th.manual_seed(7)
    before = th.get_rng_state()
    assert drop_labels(y, 0.0, NULL) is y
    assert th.equal(th.get_rng_state(), before)


def test_draws_follow_the_global_generator_so_a_restored_state_repeats_them():
    y = _labels(64)
    th.manual_seed(3)
    first = drop_labels(y, 0.3, NULL)
    state = th.get_rng_state()
    second = drop_labels(y, 0.3, NULL)
    th.manual_seed(99)  # something else moves the generator, then a resume restores it
    th.set_rng_state(state)
    assert th.equal(drop_labels(y, 0.3, NULL), second)
    assert not th.equal(first, second)  # fresh draws per batch, not one fixed mask


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_probability_outside_the_unit_interval_is_rejected(p):
    with pytest.raises(ValueError, match=r"--class_dropout_prob must be in \[0, 1\)"):
        drop_labels(_labels(4), p, NULL)
