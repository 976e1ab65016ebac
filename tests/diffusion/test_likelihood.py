"""Gaussian KL and the discretized Gaussian log-likelihood."""

import math

import numpy as np
import pytest
import torch as th

from guided_diffusion.diffusion.likelihood import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    normal_kl,
)


def test_normal_kl_matches_torch_distributions():
    g = th.Generator().manual_seed(0)
    m1, m2 = th.randn(50, generator=g, dtype=th.float64), th.randn(50, generator=g, dtype=th.float64)
    lv1, lv2 = th.randn(50, generator=g, dtype=th.float64), th.randn(50, generator=g, dtype=th.float64)
    expected = th.distributions.kl_divergence(
        th.distributions.Normal(m1, (0.5 * lv1).exp()), th.distributions.Normal(m2, (0.5 * lv2).exp())
    )
    assert th.allclose(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-10, atol=1e-12)


def test_normal_kl_accepts_scalars_and_is_zero_for_equal_gaussians():
    mean = th.tensor([0.3, -1.2])
    assert th.allclose(normal_kl(mean, 0.7, mean, 0.7), th.zeros(2), atol=1e-7)
    # KL(N(m, 1) || N(0, 1)) = m^2 / 2 with the second Gaussian given as plain floats.
    assert th.allclose(normal_kl(mean, 0.0, 0.0, 0.0), mean**2 / 2)


def test_normal_kl_needs_a_tensor():
    with pytest.raises(TypeError):
        normal_kl(0.0, 0.0, 1.0, 0.0)


def test_approx_cdf_close_to_exact_normal_cdf():
    x = th.linspace(-6, 6, 1001, dtype=th.float64)
    exact = 0.5 * (1 + th.erf(x / math.sqrt(2)))
    approx = approx_standard_normal_cdf(x)
    assert (approx - exact).abs().max() < 5e-4
    assert approx[0] >= 0 and approx[-1] <= 1
    assert th.allclose(approx + approx.flip(0), th.ones_like(x))  # symmetric: F(-x) = 1 - F(x)


def test_discretized_likelihood_sums_to_one_over_all_bins():
    # The 256 bin centres of uint8 images mapped to [-1, 1]; edge bins reach +-inf, so the
    # probabilities telescope to exactly one for any mean and scale.
    x = th.linspace(-1, 1, 256, dtype=th.float64)
    for mean, log_scale in [(0.0, -2.0), (0.7, -4.0), (-0.95, 0.5)]:
        logp = discretized_gaussian_log_likelihood(
            x, means=th.full_like(x, mean), log_scales=th.full_like(x, log_scale)
        )
        assert th.isclose(logp.exp().sum(), th.tensor(1.0, dtype=th.float64), atol=1e-9)


def test_discretized_likelihood_middle_bin_is_cdf_difference():
    x = th.tensor([0.2], dtype=th.float64)
    mean, sigma = 0.1, 0.05
    logp = discretized_gaussian_log_likelihood(
        x, means=th.tensor([mean], dtype=th.float64), log_scales=th.tensor([math.log(sigma)], dtype=th.float64)
    )
    cdf = lambda v: 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))
    expected = np.log(cdf((0.2 - mean + 1 / 255) / sigma) - cdf((0.2 - mean - 1 / 255) / sigma))
    assert logp.item() == pytest.approx(expected, rel=1e-9)


def test_discretized_likelihood_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        discretized_gaussian_log_likelihood(th.zeros(3), means=th.zeros(2), log_scales=th.zeros(3))
