"""Beta schedules, betas validation, the coefficient tables and extract_into_tensor."""

import math

import numpy as np
import pytest
import torch as th

from guided_diffusion.diffusion.gaussian import GaussianDiffusion
from guided_diffusion.diffusion.schedule import (
    betas_for_alpha_bar,
    extract_into_tensor,
    get_named_beta_schedule,
    sigmoid_alpha_bar,
)
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType
from diffusion_helpers import make


@pytest.mark.parametrize("T", [20, 100, 1000])
def test_linear_schedule_endpoints_and_constant_spacing(T):
    betas = get_named_beta_schedule("linear", T)
    scale = 1000 / T
    assert betas.dtype == np.float64 and betas.shape == (T,)
    assert betas[0] == pytest.approx(scale * 1e-4, rel=1e-12)
    assert betas[-1] == pytest.approx(scale * 0.02, rel=1e-12)
    step = (scale * 0.02 - scale * 1e-4) / (T - 1)
    assert np.allclose(np.diff(betas), step, rtol=1e-9, atol=0)


def test_linear_schedule_with_too_few_steps_raises():
    with pytest.raises(ValueError, match="19"):
        get_named_beta_schedule("linear", 19)


def test_cosine_schedule_matches_closed_form_and_clip():
    T = 1000
    betas = get_named_beta_schedule("cosine", T)
    f = lambda s: np.cos((s + 0.008) / 1.008 * np.pi / 2) ** 2
    s = np.arange(T)
    expected = np.minimum(1 - f((s + 1) / T) / f(s / T), 0.999)
    assert np.allclose(betas, expected, rtol=1e-12, atol=0)
    # abar(1) = cos(pi/2)^2 is ~0, so the final beta is clipped to 0.999 and no other is.
    assert betas[-1] == 0.999 and (betas[:-1] < 0.999).all()
    # Away from the clip, the cumulative product reproduces abar(t) / abar(0).
    abar = np.cumprod(1 - betas)
    assert np.allclose(abar[:-1], f((s[:-1] + 1) / T) / f(0), rtol=1e-9)


def test_betas_for_alpha_bar_respects_max_beta():
    betas = betas_for_alpha_bar(10, lambda t: 1 - t, max_beta=0.3)
    # 1 - abar(t2)/abar(t1) = 1 - (1 - t2)/(1 - t1) = 0.1 / (1 - t1); the last would be 1.
    expected = np.minimum([0.1 / (1 - i / 10) for i in range(10)], 0.3)
    assert np.allclose(betas, expected)


def test_unknown_schedule_names_allowed_ones():
    with pytest.raises(ValueError) as err:
        get_named_beta_schedule("quadratic", 100)
    assert "quadratic" in str(err.value) and "linear" in str(err.value) and "cosine" in str(err.value)
    assert "sigmoid" in str(err.value)
    assert isinstance(err.value, NotImplementedError)  # what the reference raised


@pytest.mark.parametrize("betas", [[0.1, 1.5], [0.0, 0.1], [[0.1, 0.2]], []])
def test_invalid_betas_raise_value_error(betas):
    with pytest.raises(ValueError):
        GaussianDiffusion(betas=betas, model_mean_type=ModelMeanType.EPSILON,
                          model_var_type=ModelVarType.FIXED_LARGE, loss_type=LossType.MSE)


def test_coefficient_tables_are_float64_and_consistent():
    d = make(T=30, schedule="cosine")
    abar = np.cumprod(1 - d.betas)
    names = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next",
             "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
             "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
             "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2"]
    for name in names:
        arr = getattr(d, name)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == (30,), name
    assert d.num_timesteps == 30
    assert np.allclose(d.alphas_cumprod, abar)
    assert d.alphas_cumprod_prev[0] == 1.0 and np.allclose(d.alphas_cumprod_prev[1:], abar[:-1])
    assert d.alphas_cumprod_next[-1] == 0.0 and np.allclose(d.alphas_cumprod_next[:-1], abar[1:])
    assert np.allclose(d.sqrt_recip_alphas_cumprod * d.sqrt_alphas_cumprod, 1.0)
    assert np.allclose(d.sqrt_recipm1_alphas_cumprod**2, 1 / abar - 1)
    # Clipped log posterior variance: entry 0 (variance 0) reuses entry 1.
    assert d.posterior_variance[0] == 0.0
    assert d.posterior_log_variance_clipped[0] == np.log(d.posterior_variance[1])
    assert np.allclose(d.posterior_log_variance_clipped[1:], np.log(d.posterior_variance[1:]))


def testextract_into_tensor_casts_float64_values_and_broadcasts():
    arr = np.array([0.1, 1 / 3, 2 / 3, 0.9], dtype=np.float64)
    t = th.tensor([3, 1])
    out = extract_into_tensor(arr, t, (2, 3, 4, 4))
    assert out.dtype == th.float32 and out.shape == (2, 3, 4, 4)
    assert out[0].eq(np.float32(0.9)).all() and out[1].eq(np.float32(1 / 3)).all()


def testextract_into_tensor_rank_mismatch_raises():
    with pytest.raises(ValueError, match="dims"):
        extract_into_tensor(np.ones(4), th.zeros(2, 2, dtype=th.long), (2,))
    with pytest.raises(ValueError, match="broadcast"):
        extract_into_tensor(np.ones(4), th.zeros(3, dtype=th.long), (2, 5))


def _logistic(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("T", [1, 10, 1000])
def test_sigmoid_schedule_betas_in_open_unit_interval_and_alpha_bar_monotone(T):
    betas = get_named_beta_schedule("sigmoid", T)
    assert betas.dtype == np.float64 and betas.shape == (T,)
    assert (betas > 0).all() and (betas < 1).all()
    abar = np.cumprod(1 - betas)
    assert (np.diff(abar) < 0).all() and 0 < abar[-1] <= abar[0] < 1


def test_sigmoid_schedule_alpha_bar_matches_closed_form_at_three_points():
    T = 1000
    abar = np.cumprod(1 - get_named_beta_schedule("sigmoid", T))
    s_start, s_end = _logistic(-3.0), _logistic(3.0)  # start -3, end 3, tau 1
    for t in (0.25, 0.5, 0.75):
        expected = (s_end - _logistic(-3.0 + 6.0 * t)) / (s_end - s_start)
        # abar after step i is abar((i + 1) / T); only the last beta is capped at 0.999
        assert abar[round(t * T) - 1] == pytest.approx(expected, rel=1e-12)
    assert abar[T // 2 - 1] == pytest.approx(0.5, rel=1e-12)  # the sigmoid's symmetry point
    assert sigmoid_alpha_bar(0.0) == 1.0 and sigmoid_alpha_bar(1.0) == 0.0
    # a smaller tau keeps more signal early and less late
    assert sigmoid_alpha_bar(0.25, tau=0.5) > sigmoid_alpha_bar(0.25) > sigmoid_alpha_bar(0.25, tau=2.0)
