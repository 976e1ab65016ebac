"""Per-sample random streams: each sample's noise and label depend on (seed, index) alone."""

import numpy as np
import pytest
import torch as th

from guided_diffusion.sampling.seeds import PerSampleNoise, derive_seed, random_labels


def test_derived_seeds_differ_by_index_stream_and_seed():
    seeds = {derive_seed(s, i, k) for s in (0, 1) for i in range(50) for k in (0, 1)}
    assert len(seeds) == 200
    assert all(0 <= v < 2**63 for v in seeds)
    assert derive_seed(7, 3, 0) == derive_seed(7, 3, 0)


def test_sample_noise_independent_of_batch_composition():
    big = PerSampleNoise(5, range(6))
    x_big = big.initial_noise((6, 3, 4, 4))
    steps_big = [big.noise_fn(x_big) for _ in range(3)]
    small = PerSampleNoise(5, [3, 4])
    x_small = small.initial_noise((2, 3, 4, 4))
    steps_small = [small(x_small) for _ in range(3)]
    assert th.equal(x_small, x_big[3:5])
    for a, b in zip(steps_small, steps_big):
        assert th.equal(a, b[3:5])


def test_sample_noise_steps_are_fresh_and_standard_normal():
    noise = PerSampleNoise(0, range(4))
    x = noise.initial_noise((4, 3, 16, 16))
    s1, s2 = noise(x), noise(x)
    assert not th.equal(s1, s2) and not th.equal(x, s1)
    allv = th.cat([x.flatten(), s1.flatten(), s2.flatten()])
    assert abs(allv.mean().item()) < 0.05 and abs(allv.std().item() - 1) < 0.05
    assert s1.dtype == x.dtype and s1.shape == x.shape


def test_sample_noise_follows_dtype_and_rejects_wrong_batch():
    noise = PerSampleNoise(0, range(2))
    x = th.zeros(2, 3, 4, 4, dtype=th.float64)
    assert noise(x).dtype == th.float64
    with pytest.raises(ValueError, match="3"):
        noise(th.zeros(3, 3, 4, 4))




def test_random_labels_per_sample_and_in_range():
    a = random_labels(3, range(200), 10)
    b = np.concatenate([random_labels(3, range(0, 120), 10), random_labels(3, range(120, 200), 10)])
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 10 and len(np.unique(a)) == 10
    assert not np.array_equal(a, random_labels(4, range(200), 10))
