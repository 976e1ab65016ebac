"""Ancestral and DDIM steps, the sampling loop, random-draw order and noise_fn."""

import numpy as np
import pytest
import torch as th

from guided_diffusion.diffusion.respacing import space_timesteps, SpacedDiffusion
from guided_diffusion.diffusion.schedule import get_named_beta_schedule
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType
import diffusion_helpers
from diffusion_helpers import LinearEps


def make(T=20, schedule="cosine", **kwargs):
    return diffusion_helpers.make(T, schedule, **kwargs)


SHAPE = (2, 3, 4, 4)


def randn_model(x, t, **kwargs):
    """A model that consumes the global RNG, to expose the order of random draws."""
    return th.randn_like(x)


def randn_cond_fn(x, t, **kwargs):
    return th.randn_like(x)


def test_p_sample_draw_order_model_noise_then_cond_fn():
    d = make()
    x = th.randn(SHAPE)
    t = th.tensor([5, 0])  # also draws noise at t = 0
    th.manual_seed(123)
    out = d.p_sample(randn_model, x, t, cond_fn=randn_cond_fn, clip_denoised=False)
    after = th.randn(3)

    th.manual_seed(123)
    eps, noise, grad, expected_after = th.randn_like(x), th.randn_like(x), th.randn_like(x), th.randn(3)
    pmv = d.p_mean_variance(lambda *a, **k: eps, x, t, clip_denoised=False)
    mean = pmv["mean"] + pmv["variance"] * grad
    mask = th.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    assert th.allclose(out["sample"], mean + mask * th.exp(0.5 * pmv["log_variance"]) * noise, atol=1e-6)
    assert th.equal(after, expected_after)  # exactly three draws of x's shape were consumed


def test_ddim_sample_draw_order_model_cond_fn_then_noise_even_for_eta_zero():
    d = make()
    x = th.randn(SHAPE)
    t = th.tensor([7, 3])
    th.manual_seed(5)
    out = d.ddim_sample(randn_model, x, t, cond_fn=randn_cond_fn, clip_denoised=False, eta=0.0)
    after = th.randn(3)

    th.manual_seed(5)
    eps, grad, _noise, expected_after = th.randn_like(x), th.randn_like(x), th.randn_like(x), th.randn(3)
    abar = th.tensor(d.alphas_cumprod[[7, 3]], dtype=th.float32).view(2, 1, 1, 1)
    abar_prev = th.tensor(d.alphas_cumprod_prev[[7, 3]], dtype=th.float32).view(2, 1, 1, 1)
    eps_guided = eps - (1 - abar).sqrt() * grad
    x0 = (x - (1 - abar).sqrt() * eps_guided) / abar.sqrt()
    expected = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps_guided
    assert th.allclose(out["sample"], expected, atol=1e-5)
    assert th.equal(after, expected_after)


def test_ddim_sample_eta_one_variance_formula():
    d = make()
    x = th.randn(SHAPE)
    t = th.tensor([7, 0])
    zero_eps = lambda x, t, **k: th.zeros_like(x)
    det = d.ddim_sample(zero_eps, x, t, eta=1.0, clip_denoised=False, noise_fn=th.zeros_like)
    one = d.ddim_sample(zero_eps, x, t, eta=1.0, clip_denoised=False, noise_fn=th.ones_like)
    a, ap = d.alphas_cumprod[7], d.alphas_cumprod_prev[7]
    sigma = np.sqrt((1 - ap) / (1 - a)) * np.sqrt(1 - a / ap)
    assert th.allclose(one["sample"][0] - det["sample"][0], th.full((3, 4, 4), sigma, dtype=th.float32), atol=1e-6)
    assert th.equal(one["sample"][1], det["sample"][1])  # no noise at t = 0
    # With eps = 0 the mean is sqrt(abar_prev) * x0, x0 = x / sqrt(abar).
    assert th.allclose(det["sample"][0], x[0] * np.sqrt(ap / a), atol=1e-5)


def test_loop_starts_from_randn_shape_and_walks_t_down():
    d = make(T=6)
    model = LinearEps()
    th.manual_seed(9)
    result = d.p_sample_loop(model, SHAPE)

    th.manual_seed(9)
    x = th.randn(*SHAPE)
    for i in reversed(range(6)):
        x = d.p_sample(model, x, th.tensor([i, i]))["sample"]
    assert th.equal(result, x)


def test_progressive_yields_one_dict_per_step_without_grad():
    d = make(T=5)
    outs = []
    for out in d.ddim_sample_loop_progressive(LinearEps(), SHAPE, noise=th.randn(SHAPE)):
        assert not th.is_grad_enabled()
        outs.append(out)
    assert len(outs) == 5 and set(outs[0]) == {"sample", "pred_xstart"}
    assert not outs[-1]["sample"].requires_grad


def test_loop_uses_given_noise_and_device_for_parameterless_model():
    d = make(T=4)
    noise = th.randn(SHAPE)
    a = d.ddim_sample_loop(lambda x, t, **k: 0.1 * x, SHAPE, noise=noise)
    b = d.ddim_sample_loop(lambda x, t, **k: 0.1 * x, list(SHAPE), noise=noise.clone(), device="cpu")
    assert th.equal(a, b)
    with pytest.raises(ValueError, match="shape"):
        next(d.p_sample_loop_progressive(LinearEps(), 3))


@pytest.mark.parametrize("loop", ["p_sample_loop", "ddim_sample_loop"])
def test_noise_fn_randn_like_reproduces_default_path(loop):
    d = make(T=8)
    kwargs = {"eta": 0.5} if loop == "ddim_sample_loop" else {}
    th.manual_seed(3)
    default = getattr(d, loop)(LinearEps(), SHAPE, **kwargs)
    th.manual_seed(3)
    hooked = getattr(d, loop)(LinearEps(), SHAPE, noise_fn=lambda x: th.randn_like(x), **kwargs)
    assert th.equal(default, hooked)


def test_noise_fn_zero_gives_the_mean_and_is_called_with_x():
    d = make(T=8)
    x = th.randn(SHAPE)
    calls = []

    def zeros(z):
        calls.append(z)
        return th.zeros_like(z)

    out = d.p_sample(LinearEps(), x, th.tensor([4, 4]), noise_fn=zeros)
    pmv = d.p_mean_variance(LinearEps(), x, th.tensor([4, 4]))
    assert th.equal(out["sample"], pmv["mean"]) and calls[0] is x
    with pytest.raises(ValueError, match="noise_fn"):
        d.p_sample(LinearEps(), x, th.tensor([4, 4]), noise_fn=lambda z: th.zeros(3))


def test_ddim_reverse_then_forward_round_trips():
    # With a fixed eps (independent of x and t) the eta = 0 DDIM map is exactly invertible:
    # reverse steps 0 .. T-2 take x at index 0 to index T-1, the sampling loop brings it back.
    base = get_named_beta_schedule("linear", 1000)
    d = SpacedDiffusion(space_timesteps(1000, "10"), betas=base, model_mean_type=ModelMeanType.EPSILON,
                        model_var_type=ModelVarType.FIXED_LARGE, loss_type=LossType.MSE)
    pattern = th.randn(SHAPE)
    model = lambda x, t, **k: pattern
    start = th.rand(SHAPE) * 1.6 - 0.8
    x = start
    for i in range(d.num_timesteps - 1):
        x = d.ddim_reverse_sample(model, x, th.tensor([i, i]), clip_denoised=False)["sample"]
    assert not th.allclose(x, start, atol=0.1)  # really got noised
    outs = list(d.ddim_sample_loop_progressive(model, SHAPE, noise=x, clip_denoised=False))
    assert th.allclose(outs[-2]["sample"], start, atol=1e-4)  # back at index 0
    # The last step (t = 0) maps to the x_0 prediction, like a direct DDIM step.
    direct = d.ddim_sample(model, start, th.tensor([0, 0]), clip_denoised=False)["sample"]
    assert th.allclose(outs[-1]["sample"], direct, atol=1e-4)


def test_ddim_reverse_rejects_nonzero_eta():
    with pytest.raises(ValueError, match="eta"):
        make().ddim_reverse_sample(LinearEps(), th.randn(SHAPE), th.tensor([1, 1]), eta=0.5)


def test_p_sample_with_zero_grad_cond_fn_equals_unguided():
    d = make(T=10)
    x = th.randn(SHAPE)
    t = th.tensor([4, 4])
    zero = lambda x, t, **k: th.zeros_like(x)
    for step in ("p_sample", "ddim_sample"):
        th.manual_seed(0)
        a = getattr(d, step)(LinearEps(), x, t)["sample"]
        th.manual_seed(0)
        b = getattr(d, step)(LinearEps(), x, t, cond_fn=zero)["sample"]
        assert th.allclose(a, b, atol=1e-6), step
