"""Training losses, the variational-bound terms and bits-per-dim."""

import numpy as np
import pytest
import torch as th

from guided_diffusion.diffusion.gaussian import GaussianDiffusion
from guided_diffusion.diffusion.schedule import get_named_beta_schedule
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType


SHAPE = (4, 3, 4, 4)


LN2 = np.log(2.0)


def make(T=40, var=ModelVarType.FIXED_LARGE, mean=ModelMeanType.EPSILON, loss=LossType.MSE,
         mean_loss="l2"):
    return GaussianDiffusion(betas=get_named_beta_schedule("cosine", T), model_mean_type=mean,
                             model_var_type=var, loss_type=loss, mean_loss=mean_loss)


def x0_batch(seed=0):
    g = th.Generator().manual_seed(seed)
    return (th.randint(0, 256, SHAPE, generator=g).float() / 127.5 - 1).clamp(-1, 1)


def oracle_model(d, x0, var_values=None):
    """An eps-model that knows x0 and so returns the exact noise of any x_t."""

    def model(x_t, t, **kwargs):
        abar = th.tensor(d.alphas_cumprod, dtype=th.float64)[t].view(-1, 1, 1, 1)
        eps = ((x_t.double() - abar.sqrt() * x0.double()) / (1 - abar).sqrt()).float()
        return eps if var_values is None else th.cat([eps, var_values], 1)

    return model


def gaussian_kl(m1, lv1, m2, lv2):
    return 0.5 * (lv2 - lv1 + np.exp(lv1 - lv2) + (m1 - m2) ** 2 / np.exp(lv2) - 1)


def page_cdf(v):
    return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))


def decoder_nll(x0, mean, logvar):
    sd = np.exp(0.5 * logvar)
    upper = np.where(x0 > 0.999, 1.0, page_cdf((x0 - mean + 1 / 255) / sd))
    lower = np.where(x0 < -0.999, 0.0, page_cdf((x0 - mean - 1 / 255) / sd))
    return -np.log(np.maximum(upper - lower, 1e-12))


def reference_vb_bits(d, x0, xt, t, eps, v):
    """vb term from scratch in float64 for a LEARNED_RANGE eps-model output (eps, v)."""
    x0, xt, eps, v = (a.double().numpy() for a in (x0, xt, eps, v))
    out = []
    for i, ti in enumerate(t.tolist()):
        ab, ab_prev, b = d.alphas_cumprod[ti], d.alphas_cumprod_prev[ti], d.betas[ti]
        post_var = b * (1 - ab_prev) / (1 - ab)
        post_var_clipped = post_var if ti > 0 else d.betas[1] * (1 - d.alphas_cumprod[0]) / (1 - d.alphas_cumprod[1])
        c1, c2 = b * np.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * np.sqrt(1 - b) / (1 - ab)
        pred_x0 = (xt[i] - np.sqrt(1 - ab) * eps[i]) / np.sqrt(ab)
        p_mean = c1 * pred_x0 + c2 * xt[i]
        frac = (v[i] + 1) / 2
        p_logvar = frac * np.log(b) + (1 - frac) * np.log(post_var_clipped)
        if ti == 0:
            term = decoder_nll(x0[i], p_mean, p_logvar)
        else:
            q_mean = c1 * x0[i] + c2 * xt[i]
            term = gaussian_kl(q_mean, np.log(post_var_clipped), p_mean, p_logvar)
        out.append(term.mean() / LN2)
    return np.array(out)


@pytest.mark.parametrize("mean_type", list(ModelMeanType))
def test_exact_prediction_gives_zero_mse(mean_type):
    d = make(mean=mean_type)
    x0 = x0_batch()
    t = th.tensor([0, 5, 20, 39])
    noise = th.randn(SHAPE)
    xt = d.q_sample(x0, t, noise=noise)
    target = {
        ModelMeanType.EPSILON: oracle_model(d, x0)(xt, t),
        ModelMeanType.START_X: x0,
        ModelMeanType.PREVIOUS_X: d.q_posterior_mean_variance(x0, xt, t)[0],
    }[mean_type]
    terms = d.training_losses(lambda x, tt, **k: target, x0, t, noise=noise)
    assert set(terms) == {"loss", "mse"}
    assert terms["mse"].shape == (4,) and terms["mse"].max() < 1e-8
    assert th.equal(terms["loss"], terms["mse"])


def test_eps_model_sees_q_sample_of_the_given_noise():
    d = make()
    x0 = x0_batch()
    t = th.tensor([1, 2, 3, 30])
    terms = d.training_losses(oracle_model(d, x0), x0, t, noise=th.randn(SHAPE))
    assert terms["mse"].max() < 1e-8  # the oracle recovers the very noise that was passed
    terms = d.training_losses(lambda x, tt, **k: th.zeros_like(x), x0, t, noise=th.full(SHAPE, 2.0))
    assert th.allclose(terms["mse"], th.full((4,), 4.0))


def test_training_losses_draws_randn_like_x_start_when_noise_is_none():
    d = make()
    x0 = x0_batch()
    t = th.tensor([1, 2, 3, 30])
    model = lambda x, tt, **k: 0.5 * x
    th.manual_seed(4)
    a = d.training_losses(model, x0, t)
    th.manual_seed(4)
    b = d.training_losses(model, x0, t, noise=th.randn_like(x0))
    assert th.equal(a["loss"], b["loss"])


def test_learned_range_vb_term_matches_independent_computation():
    d = make(var=ModelVarType.LEARNED_RANGE)
    x0 = x0_batch(1)
    t = th.tensor([0, 1, 17, 39])
    noise = th.randn(SHAPE)
    xt = d.q_sample(x0, t, noise=noise)
    eps_out = 0.9 * noise + 0.1 * th.randn(SHAPE)
    v = th.rand(SHAPE) * 2 - 1
    terms = d.training_losses(lambda x, tt, **k: th.cat([eps_out, v], 1), x0, t, noise=noise)
    expected = reference_vb_bits(d, x0, xt, t, eps_out, v)
    assert np.allclose(terms["vb"].detach().numpy(), expected, rtol=1e-3, atol=1e-4)
    assert th.allclose(terms["mse"], ((eps_out - noise) ** 2).mean((1, 2, 3)))
    assert th.allclose(terms["loss"], terms["mse"] + terms["vb"])


def test_vb_term_does_not_train_the_mean():
    d = make(var=ModelVarType.LEARNED_RANGE)
    w_mean = th.tensor(0.7, requires_grad=True)
    w_var = th.tensor(0.2, requires_grad=True)
    model = lambda x, t, **k: th.cat([w_mean * x, th.tanh(w_var * x)], 1)
    terms = d.training_losses(model, x0_batch(), th.tensor([0, 3, 9, 20]))
    g_mean, g_var = th.autograd.grad(terms["vb"].sum(), [w_mean, w_var], allow_unused=True)
    assert g_mean is None or g_mean == 0
    assert g_var.abs() > 0


def test_rescaled_mse_scales_vb_by_T_over_1000():
    x0, t, noise = x0_batch(), th.tensor([0, 3, 9, 20]), th.randn(SHAPE)
    out = th.cat([th.randn(SHAPE), th.rand(SHAPE) * 2 - 1], 1)
    model = lambda x, tt, **k: out
    plain = make(var=ModelVarType.LEARNED_RANGE).training_losses(model, x0, t, noise=noise)
    rescaled = make(var=ModelVarType.LEARNED_RANGE, loss=LossType.RESCALED_MSE).training_losses(
        model, x0, t, noise=noise)
    assert th.allclose(rescaled["vb"], plain["vb"] * 40 / 1000)
    assert th.equal(rescaled["mse"], plain["mse"])


@pytest.mark.parametrize("loss", [LossType.KL, LossType.RESCALED_KL])
def test_kl_losses_are_the_bound(loss):
    d = make(var=ModelVarType.LEARNED_RANGE, loss=loss)
    x0, t, noise = x0_batch(2), th.tensor([0, 2, 10, 39]), th.randn(SHAPE)
    xt = d.q_sample(x0, t, noise=noise)
    eps_out, v = th.randn(SHAPE), th.rand(SHAPE) * 2 - 1
    terms = d.training_losses(lambda x, tt, **k: th.cat([eps_out, v], 1), x0, t, noise=noise)
    assert set(terms) == {"loss"}
    expected = reference_vb_bits(d, x0, xt, t, eps_out, v) * (40 if loss == LossType.RESCALED_KL else 1)
    assert np.allclose(terms["loss"].numpy(), expected, rtol=1e-3, atol=1e-4)


def test_vb_terms_bpd_returns_output_and_pred_xstart():
    d = make(var=ModelVarType.FIXED_SMALL)
    x0 = x0_batch()
    t = th.tensor([0, 1, 2, 3])
    xt = d.q_sample(x0, t)
    out = d._vb_terms_bpd(oracle_model(d, x0), x0, xt, t, clip_denoised=False)
    assert set(out) == {"output", "pred_xstart"}
    # Exact mean and posterior variance: the KL terms vanish, the decoder term does not.
    assert out["output"][1:].abs().max() < 1e-4 and out["output"][0] > 0.01
    assert th.allclose(out["pred_xstart"], x0, atol=1e-4)


def test_prior_bpd_matches_closed_form():
    # A short schedule keeps abar_T large, so the prior term is far from float32 round-off.
    d = GaussianDiffusion(betas=np.full(12, 0.03), model_mean_type=ModelMeanType.EPSILON,
                          model_var_type=ModelVarType.FIXED_LARGE, loss_type=LossType.MSE)
    x0 = x0_batch()
    ab = 0.97**12
    # KL(N(sqrt(ab) x, 1 - ab) || N(0, 1)) per dimension, in bits.
    per_dim = 0.5 * (-1 - np.log(1 - ab) + (1 - ab) + ab * x0.double().numpy() ** 2)
    expected = per_dim.reshape(4, -1).mean(1) / LN2
    assert np.allclose(d._prior_bpd(x0).numpy(), expected, rtol=1e-4, atol=1e-9)


def test_calc_bpd_loop_shapes_order_and_total():
    d = make(T=12, var=ModelVarType.FIXED_SMALL)
    x0 = x0_batch()
    th.manual_seed(0)
    out = d.calc_bpd_loop(oracle_model(d, x0), x0, clip_denoised=False)
    assert set(out) == {"total_bpd", "prior_bpd", "vb", "xstart_mse", "mse"}
    assert out["vb"].shape == out["xstart_mse"].shape == out["mse"].shape == (4, 12)
    assert th.allclose(out["total_bpd"], out["vb"].sum(1) + out["prior_bpd"])
    assert th.allclose(out["prior_bpd"], d._prior_bpd(x0))
    # Columns run from t = T-1 down to t = 0: with the oracle only the decoder term (last) is >0.
    assert out["vb"][:, :-1].abs().max() < 1e-3 and (out["vb"][:, -1] > 0.01).all()
    assert out["mse"].max() < 1e-6 and out["xstart_mse"].max() < 1e-6


# ---------------------------------------------------------------- the L1 mean term


def test_l1_of_a_model_that_outputs_the_true_noise_is_zero():
    d = make(mean_loss="l1")
    x0, noise = x0_batch(), th.randn(SHAPE)
    t = th.tensor([0, 5, 20, 39])
    out = d.training_losses(oracle_model(d, x0), x0, t, noise=noise)
    assert set(out) == {"loss", "l1"}
    assert th.allclose(out["l1"], th.zeros(4), atol=1e-5) and th.equal(out["loss"], out["l1"])


def test_l1_is_the_mean_absolute_residual_and_its_gradient_has_the_residual_sign():
    d = make(mean_loss="l1")
    x0, noise = x0_batch(), th.randn(SHAPE)
    t = th.tensor([3, 9, 17, 30])
    residual = th.randn(SHAPE, generator=th.Generator().manual_seed(5))
    offset = th.nn.Parameter(residual.clone())
    truth = oracle_model(d, x0)

    def model(x_t, ts, **kwargs):
        return truth(x_t, ts) + offset

    out = d.training_losses(model, x0, t, noise=noise)
    assert th.allclose(out["l1"], residual.abs().mean(dim=(1, 2, 3)), atol=1e-5)
    out["loss"].sum().backward()
    assert th.equal(th.sign(offset.grad), th.sign(residual))
    assert th.allclose(offset.grad.abs(), th.full(SHAPE, 1.0 / (3 * 4 * 4)))


def test_l1_leaves_the_vb_term_of_the_hybrid_loss_unchanged():
    x0, noise = x0_batch(), th.randn(SHAPE)
    t = th.tensor([0, 7, 21, 39])
    v = th.tanh(th.randn(SHAPE, generator=th.Generator().manual_seed(2)))
    terms = {}
    for norm in ("l2", "l1"):
        d = make(var=ModelVarType.LEARNED_RANGE, loss=LossType.RESCALED_MSE, mean_loss=norm)

        def model(x_t, ts, **kwargs):
            return th.cat([oracle_model(d, x0)(x_t, ts) + 0.1, v], 1)

        terms[norm] = d.training_losses(model, x0, t, noise=noise)
    assert th.equal(terms["l1"]["vb"], terms["l2"]["vb"])
    assert th.allclose(terms["l1"]["l1"], th.full((4,), 0.1), atol=1e-5)
    assert th.allclose(terms["l2"]["mse"], th.full((4,), 0.01), atol=1e-5)
    assert th.equal(terms["l1"]["loss"], terms["l1"]["l1"] + terms["l1"]["vb"])


def test_unknown_mean_loss_is_refused():
    with pytest.raises(ValueError, match="mean_loss.*'l3'"):
        make(mean_loss="l3")
