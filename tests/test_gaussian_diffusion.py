"""Schedules, coefficient tables, q(x_t | x_0), the posterior and p_mean_variance."""

import math

import numpy as np
import pytest
import torch as th

from guided_diffusion import gaussian_diffusion as gd
from guided_diffusion.gaussian_diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    _extract_into_tensor,
    betas_for_alpha_bar,
    get_named_beta_schedule,
)


def make(T=50, schedule="linear", mean=ModelMeanType.EPSILON, var=ModelVarType.FIXED_LARGE,
         loss=LossType.MSE, rescale=False):
    return GaussianDiffusion(
        betas=get_named_beta_schedule(schedule, T),
        model_mean_type=mean,
        model_var_type=var,
        loss_type=loss,
        rescale_timesteps=rescale,
    )


# ---------------------------------------------------------------- schedules


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
    assert isinstance(err.value, NotImplementedError)  # what the reference raised


@pytest.mark.parametrize("betas", [[0.1, 1.5], [0.0, 0.1], [[0.1, 0.2]], []])
def test_invalid_betas_raise_value_error(betas):
    with pytest.raises(ValueError):
        GaussianDiffusion(betas=betas, model_mean_type=ModelMeanType.EPSILON,
                          model_var_type=ModelVarType.FIXED_LARGE, loss_type=LossType.MSE)


def test_invalid_enum_raises_value_error_listing_members():
    with pytest.raises(ValueError, match="EPSILON"):
        GaussianDiffusion(betas=[0.1, 0.2], model_mean_type="eps",
                          model_var_type=ModelVarType.FIXED_LARGE, loss_type=LossType.MSE)


def test_enums_follow_reference_order_and_is_vb():
    assert [m.value for m in ModelMeanType] == [1, 2, 3]
    assert [m.name for m in ModelVarType] == ["LEARNED", "FIXED_SMALL", "FIXED_LARGE", "LEARNED_RANGE"]
    assert [lt.is_vb() for lt in LossType] == [False, False, True, True]


# ---------------------------------------------------------------- coefficient tables


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


def test_extract_into_tensor_casts_float64_values_and_broadcasts():
    arr = np.array([0.1, 1 / 3, 2 / 3, 0.9], dtype=np.float64)
    t = th.tensor([3, 1])
    out = _extract_into_tensor(arr, t, (2, 3, 4, 4))
    assert out.dtype == th.float32 and out.shape == (2, 3, 4, 4)
    assert out[0].eq(np.float32(0.9)).all() and out[1].eq(np.float32(1 / 3)).all()


def test_extract_into_tensor_rank_mismatch_raises():
    with pytest.raises(ValueError, match="dims"):
        _extract_into_tensor(np.ones(4), th.zeros(2, 2, dtype=th.long), (2,))
    with pytest.raises(ValueError, match="broadcast"):
        _extract_into_tensor(np.ones(4), th.zeros(3, dtype=th.long), (2, 5))


# ---------------------------------------------------------------- q(x_t | x_0) and posterior


def test_q_sample_moments_match_forward_marginal():
    d = make(T=100)
    th.manual_seed(0)
    x0 = th.tensor([0.8, -0.5, 0.1])
    draws = 40000
    t = th.full((draws,), 60, dtype=th.long)
    xt = d.q_sample(x0.expand(draws, 3), t)
    abar = d.alphas_cumprod[60]
    assert th.allclose(xt.mean(0), math.sqrt(abar) * x0, atol=0.02)
    assert th.allclose(xt.var(0), th.full((3,), 1 - abar), rtol=0.03)


def test_q_sample_with_noise_and_q_mean_variance():
    d = make(T=100)
    x0, noise = th.randn(2, 3, 4, 4), th.randn(2, 3, 4, 4)
    t = th.tensor([0, 99])
    mean, var, log_var = d.q_mean_variance(x0, t)
    xt = d.q_sample(x0, t, noise=noise)
    assert th.allclose(xt, mean + var.sqrt() * noise, atol=1e-6)
    assert th.allclose(log_var, var.log(), atol=1e-5)
    assert var[1, 0, 0, 0].item() == pytest.approx(1 - d.alphas_cumprod[99], rel=1e-6)


def test_posterior_matches_gaussian_product():
    # q(x_{t-1} | x_t, x_0) ∝ N(x_t; sqrt(a_t) x_{t-1}, b_t) N(x_{t-1}; sqrt(abar_{t-1}) x_0, 1 - abar_{t-1})
    d = make(T=40, schedule="cosine")
    th.manual_seed(1)
    x0, xt = th.randn(5, 2, 3, dtype=th.float64), th.randn(5, 2, 3, dtype=th.float64)
    t = th.tensor([1, 5, 17, 30, 39])
    mean, var, log_var = d.q_posterior_mean_variance(x0, xt, t)
    betas = d.betas[t.numpy()][:, None, None]
    abar_prev = np.cumprod(1 - d.betas)[t.numpy() - 1][:, None, None]
    precision = (1 - betas) / betas + 1 / (1 - abar_prev)
    exp_mean = (np.sqrt(1 - betas) / betas * xt.numpy() + np.sqrt(abar_prev) / (1 - abar_prev) * x0.numpy()) / precision
    assert np.allclose(mean.numpy(), exp_mean, rtol=1e-5, atol=1e-6)
    assert np.allclose(var.numpy(), np.broadcast_to(1 / precision, var.shape), rtol=1e-5)
    assert np.allclose(log_var.numpy(), np.log(np.broadcast_to(1 / precision, var.shape)), atol=1e-5)


def test_posterior_at_t0_returns_x0():
    d = make(T=40)
    x0, xt = th.randn(2, 3), th.randn(2, 3)
    mean, var, _ = d.q_posterior_mean_variance(x0, xt, th.tensor([0, 0]))
    assert th.allclose(mean, x0) and (var == 0).all()


# ---------------------------------------------------------------- p_mean_variance


def _const_model(out):
    return lambda x, t, **kw: out


@pytest.mark.parametrize("var_type", [ModelVarType.FIXED_LARGE, ModelVarType.FIXED_SMALL])
def test_fixed_variances(var_type):
    d = make(T=30, var=var_type)
    x = th.randn(3, 2, 4)
    t = th.tensor([0, 1, 29])
    out = d.p_mean_variance(_const_model(th.zeros_like(x)), x, t)
    if var_type == ModelVarType.FIXED_LARGE:
        # betas, with the t = 0 entry replaced by the posterior variance at t = 1.
        expected = np.array([d.posterior_variance[1], d.betas[1], d.betas[29]])
    else:
        # The posterior variance itself (0 at t = 0); only its log is clipped.
        expected = d.posterior_variance[[0, 1, 29]]
    assert np.allclose(out["variance"][:, 0, 0].numpy(), expected, rtol=1e-6)
    log_expected = np.log([d.posterior_variance[1], expected[1], expected[2]])
    assert np.allclose(out["log_variance"][:, 0, 0].numpy(), log_expected, rtol=1e-6)


def test_learned_range_interpolates_log_variance():
    d = make(T=30, var=ModelVarType.LEARNED_RANGE)
    x = th.randn(3, 2, 4)
    t = th.tensor([0, 7, 29])
    for v in (-1.0, 1.0, 0.0, 0.5):
        out = d.p_mean_variance(_const_model(th.cat([th.zeros_like(x), th.full_like(x, v)], 1)), x, t)
        frac = (v + 1) / 2
        expected = frac * np.log(d.betas[t.numpy()]) + (1 - frac) * d.posterior_log_variance_clipped[t.numpy()]
        assert np.allclose(out["log_variance"][:, 0, 0].numpy(), expected, rtol=1e-5)
        assert th.allclose(out["variance"], out["log_variance"].exp())


def test_learned_variance_is_the_model_log_variance():
    d = make(T=30, var=ModelVarType.LEARNED)
    x = th.randn(2, 3, 4)
    v = th.randn(2, 3, 4)
    out = d.p_mean_variance(_const_model(th.cat([th.zeros_like(x), v], 1)), x, th.tensor([3, 4]))
    assert th.equal(out["log_variance"], v)


def test_learned_variance_with_wrong_channels_raises():
    d = make(T=30, var=ModelVarType.LEARNED_RANGE)
    x = th.randn(2, 3, 4)
    with pytest.raises(ValueError, match="learn_sigma"):
        d.p_mean_variance(_const_model(x), x, th.tensor([3, 4]))


@pytest.mark.parametrize("mean_type", list(ModelMeanType))
def test_mean_types_recover_x0_from_the_exact_prediction(mean_type):
    d = make(T=50, mean=mean_type, var=ModelVarType.FIXED_SMALL)
    th.manual_seed(2)
    x0 = th.rand(4, 3, 5) * 1.6 - 0.8
    t = th.tensor([1, 10, 25, 49])
    noise = th.randn_like(x0)
    xt = d.q_sample(x0, t, noise=noise)
    target = {
        ModelMeanType.EPSILON: noise,
        ModelMeanType.START_X: x0,
        ModelMeanType.PREVIOUS_X: d.q_posterior_mean_variance(x0, xt, t)[0],
    }[mean_type]
    out = d.p_mean_variance(_const_model(target), xt, t, clip_denoised=False)
    assert th.allclose(out["pred_xstart"], x0, atol=2e-3)
    assert th.allclose(out["mean"], d.q_posterior_mean_variance(x0, xt, t)[0], atol=1e-3)


def test_clip_and_denoised_fn_apply_to_pred_xstart():
    d = make(T=25, mean=ModelMeanType.START_X)
    x = th.randn(2, 4)
    pred = th.tensor([[3.0, -3.0, 0.5, 0.2], [0.1, 2.0, -0.4, -9.0]])
    out = d.p_mean_variance(_const_model(pred), x, th.tensor([5, 6]), denoised_fn=lambda z: z * 0.5)
    assert th.equal(out["pred_xstart"], (pred * 0.5).clamp(-1, 1))
    out = d.p_mean_variance(_const_model(pred), x, th.tensor([5, 6]), clip_denoised=False)
    assert th.equal(out["pred_xstart"], pred)


def test_model_sees_rescaled_timesteps_and_kwargs():
    seen = {}

    def model(x, t, y=None):
        seen["t"], seen["y"] = t, y
        return th.zeros_like(x)

    d = make(T=50, rescale=True)
    d.p_mean_variance(model, th.randn(2, 3), th.tensor([0, 49]), model_kwargs={"y": 7})
    assert seen["t"].dtype == th.float32 and th.allclose(seen["t"], th.tensor([0.0, 980.0]))
    assert seen["y"] == 7
    d = make(T=50)
    d.p_mean_variance(model, th.randn(2, 3), th.tensor([0, 49]))
    assert th.equal(seen["t"], th.tensor([0, 49]))


def test_predict_helpers_invert_each_other():
    d = make(T=50, schedule="cosine")
    x0, xt = th.randn(3, 4, dtype=th.float64), th.randn(3, 4, dtype=th.float64)
    t = th.tensor([0, 20, 48])
    eps = d._predict_eps_from_xstart(xt, t, x0)
    assert th.allclose(d._predict_xstart_from_eps(xt, t, eps), x0, atol=1e-4)
    xprev = d.q_posterior_mean_variance(x0, xt, t)[0]
    assert th.allclose(d._predict_xstart_from_xprev(xt, t, xprev), x0, atol=1e-3)


def test_module_exports_reference_names():
    for name in ["get_named_beta_schedule", "betas_for_alpha_bar", "ModelMeanType", "ModelVarType",
                 "LossType", "GaussianDiffusion", "_extract_into_tensor"]:
        assert hasattr(gd, name)
