"""GaussianDiffusion: q(x_t | x_0), the posterior, p_mean_variance and guidance."""

import math

import numpy as np
import pytest
import torch as th

from guided_diffusion.diffusion.gaussian import GaussianDiffusion
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType
from diffusion_helpers import LinearEps, make


def test_invalid_enum_raises_value_error_listing_members():
    with pytest.raises(ValueError, match="EPSILON"):
        GaussianDiffusion(betas=[0.1, 0.2], model_mean_type="eps",
                          model_var_type=ModelVarType.FIXED_LARGE, loss_type=LossType.MSE)


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


# ---------------------------------------------------------------- guidance

SHAPE = (2, 3, 4, 4)


def test_condition_mean_moves_mean_by_variance_times_grad():
    d = make(T=30, var=ModelVarType.LEARNED_RANGE, rescale=True)
    x = th.randn(SHAPE)
    t = th.tensor([3, 17])
    pmv = d.p_mean_variance(LinearEps(learned_var=True), x, t)
    grad = th.randn(SHAPE)
    seen = {}

    def cond_fn(x_in, t_in, y=None):
        seen.update(x=x_in, t=t_in, y=y)
        return grad

    new_mean = d.condition_mean(cond_fn, pmv, x, t, model_kwargs={"y": th.tensor([1, 2])})
    assert th.equal(new_mean, pmv["mean"] + pmv["variance"] * grad)
    assert seen["x"] is x and th.equal(seen["y"], th.tensor([1, 2]))
    assert th.allclose(seen["t"], t.float() * 1000 / 30)  # the model's timestep scaling


def test_condition_score_matches_formula():
    d = make(T=30)
    x = th.randn(SHAPE, dtype=th.float64)
    t = th.tensor([3, 17])
    pmv = d.p_mean_variance(LinearEps(), x.float(), t)
    pmv = {k: v.double() for k, v in pmv.items()}
    grad = th.randn(SHAPE, dtype=th.float64)
    out = d.condition_score(lambda *a, **k: grad, pmv, x, t)

    abar = th.tensor(d.alphas_cumprod[[3, 17]]).view(2, 1, 1, 1)
    eps = (x - abar.sqrt() * pmv["pred_xstart"]) / (1 - abar).sqrt()
    eps_new = eps - (1 - abar).sqrt() * grad
    x0_new = (x - (1 - abar).sqrt() * eps_new) / abar.sqrt()  # not clipped again
    assert th.allclose(out["pred_xstart"], x0_new, atol=1e-5)
    assert th.allclose(out["mean"], d.q_posterior_mean_variance(x0_new, x, t)[0], atol=1e-5)
    assert out["variance"] is pmv["variance"] and pmv["mean"] is not out["mean"]
