"""Multistep DPM-Solver++: update coefficients, equivalence with DDIM, convergence on data with an
exact model, call counts, guidance, seeds and bad input."""

import math

import numpy as np
import pytest
import torch as th

from guided_diffusion.diffusion import dpm_solver
from guided_diffusion.gaussian_diffusion import (
    LossType,
    ModelMeanType,
    ModelVarType,
    get_named_beta_schedule,
)
from guided_diffusion.respace import SpacedDiffusion, space_timesteps
from guided_diffusion.sampling.seeds import PerSampleNoise

T = 1000
BETAS = get_named_beta_schedule("linear", T)
ABAR = th.tensor(np.cumprod(1.0 - BETAS))


def spaced(respacing, var=ModelVarType.FIXED_LARGE, rescale=False, betas=BETAS):
    return SpacedDiffusion(
        space_timesteps(len(betas), respacing, betas=betas), betas=betas,
        model_mean_type=ModelMeanType.EPSILON, model_var_type=var, loss_type=LossType.MSE,
        rescale_timesteps=rescale,
    )


class MixtureEps:
    """
    The exact eps-prediction of data from a Gaussian mixture sum_k w_k N(mu_k, s_k^2 I): with
    x_t = alpha x_0 + sigma z, p_t is the mixture of N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I)
    and eps* = -sigma grad log p_t(x_t). Records every timestep it is called with.
    """

    MU = th.tensor([[0.6, 0.5, -0.2, 0.1], [-0.5, -0.4, 0.3, 0.2], [0.1, -0.6, -0.5, 0.4]],
                   dtype=th.float64)
    S = th.tensor([0.1, 0.15, 0.05], dtype=th.float64)
    W = th.tensor([0.3, 0.5, 0.2], dtype=th.float64)

    def __init__(self):
        self.timesteps = []

    def score(self, x, t):
        """grad log p_t(x) [N x D] and the component log-densities [N x K]."""
        a = ABAR[t].view(-1, 1, 1)
        var = a * self.S.view(1, -1, 1) ** 2 + (1 - a)
        diff = x.double().unsqueeze(1) - a.sqrt() * self.MU.unsqueeze(0)
        log_comp = -0.5 * (diff**2 / var).sum(-1) - 0.5 * self.MU.shape[1] * th.log(var[..., 0])
        logits = th.log(self.W).view(1, -1) + log_comp
        weights = (logits - logits.logsumexp(1, keepdim=True)).exp().unsqueeze(-1)
        return -(weights * diff / var).sum(1), log_comp

    def __call__(self, x, t, **kwargs):
        self.timesteps.append(t.clone())
        score, _ = self.score(x, t)
        return (-(1 - ABAR[t]).sqrt().view(-1, 1) * score).to(x.dtype)


def mixture_noise(n=256, seed=0):
    return th.randn(n, 4, generator=th.Generator().manual_seed(seed), dtype=th.float64)


def solve(respacing, x_T, **kwargs):
    return spaced(respacing).dpm_solver_sample_loop(
        MixtureEps(), tuple(x_T.shape), noise=x_T, clip_denoised=False, **kwargs
    )


def mean_error(a, b):
    return (a - b).norm(dim=1).mean().item()


class LinearEps(th.nn.Module):
    """A deterministic eps-model eps = w * x + t / 1000 with an optional variance channel."""

    def __init__(self, learned_var=False):
        super().__init__()
        self.w = th.nn.Parameter(th.tensor(0.3))
        self.learned_var = learned_var
        self.calls = 0

    def forward(self, x, t, **kwargs):
        self.calls += 1
        eps = self.w * x + t.float().view(-1, *([1] * (x.dim() - 1))) / 1000
        return th.cat([eps, th.tanh(x)], 1) if self.learned_var else eps


SHAPE = (3, 2, 4, 4)


# ---------------------------------------------------------------- update coefficients


def alpha(lam):
    """alpha of a VP process (alpha^2 + sigma^2 = 1) at half log-SNR lam."""
    return math.sqrt(1 / (1 + math.exp(-2 * lam)))


def exact_x0_term(lambdas_ref, poly, lambda_next, eta):
    """c alpha_next int e^{-c (lambda_next - l)} poly(l - lambdas_ref) dl by Gauss-Legendre."""
    alpha_next = alpha(lambda_next)
    nodes, weights = np.polynomial.legendre.leggauss(20)
    lo, hi = lambdas_ref, lambda_next
    ls = (hi - lo) / 2 * nodes + (hi + lo) / 2
    c = 1 + eta
    vals = np.exp(-c * (lambda_next - ls)) * poly(ls - lambdas_ref)
    return c * alpha_next * (hi - lo) / 2 * np.sum(weights * vals)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("order", [1, 3])
def test_orders_1_and_3_integrate_polynomials_of_lower_degree_exactly(order, eta):
    lambdas = [0.3, -0.1, -0.8][:order]  # newest first, uneven steps
    lambda_next = 1.1
    poly = np.polynomial.Polynomial([0.4, -1.3, 0.9][:order])  # degree order - 1
    _, coefs, _ = dpm_solver.step_coefficients(lambdas, lambda_next, eta)
    approx = sum(c * poly(lam - lambdas[0]) for c, lam in zip(coefs, lambdas))
    assert approx == pytest.approx(exact_x0_term(lambdas[0], poly, lambda_next, eta), rel=1e-12)


def test_order_2_is_algorithm_2_of_the_paper():
    # x_i = (sigma_i / sigma_{i-1}) x - alpha_i (e^{-h} - 1) D, D = (1 + 1/(2r)) m0 - 1/(2r) m1.
    lam_prev, lam_cur, lam_next = -0.4, 0.1, 0.9
    h, r = lam_next - lam_cur, (lam_cur - lam_prev) / (lam_next - lam_cur)
    coef_x, coefs, noise = dpm_solver.step_coefficients([lam_cur, lam_prev], lam_next)
    scale = -alpha(lam_next) * math.expm1(-h)
    sigma_ratio = alpha(-lam_next) / alpha(-lam_cur)  # sigma(lam) = alpha(-lam)
    assert coef_x == pytest.approx(sigma_ratio, rel=1e-12) and noise == 0.0
    assert coefs == pytest.approx([scale * (1 + 1 / (2 * r)), -scale / (2 * r)], rel=1e-12)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_order_2_local_error_is_third_order(eta):
    # A smooth x_theta: halving the steps (same ratio r) divides the local error by about 8.
    def local_error(h):
        lambdas = [0.0, -0.7 * h]
        _, coefs, _ = dpm_solver.step_coefficients(lambdas, h, eta)
        approx = sum(c * np.sin(2 * lam) for c, lam in zip(coefs, lambdas))
        return abs(approx - exact_x0_term(0.0, lambda u: np.sin(2 * u), h, eta))

    assert 6.5 < local_error(0.2) / local_error(0.1) < 9.5


def test_first_order_sde_step_is_the_ddpm_posterior():
    # At eta = 1 the noise variance sigma_t^2 (1 - e^{-2h}) is that of q(x_t | x_s, x_0).
    abar_s, abar_t = 0.3, 0.7
    lam_s, lam_t = dpm_solver.half_log_snr(np.array([abar_s, abar_t]))
    coef_x, _, noise = dpm_solver.step_coefficients([lam_s], lam_t, 1.0)
    alpha_ts = math.sqrt(abar_s / abar_t)  # alpha_s / alpha_t
    posterior = (1 - abar_t) * (1 - alpha_ts**2 * (1 - abar_t) / (1 - abar_s))
    assert noise**2 == pytest.approx(posterior, rel=1e-12)
    # The x_s coefficient of the posterior mean (Ho et al. Eq. 7, over the skipped steps).
    assert coef_x == pytest.approx(alpha_ts * (1 - abar_t) / (1 - abar_s), rel=1e-12)


def test_step_orders_rise_then_fall_at_ten_steps():
    orders = [dpm_solver.step_order(i, 9, 3) for i in range(9)]
    assert orders == [1, 2, 3, 3, 3, 3, 3, 2, 1]
    assert [dpm_solver.step_order(i, 9, 2) for i in range(9)] == [1] + [2] * 7 + [1]
    assert [dpm_solver.step_order(i, 9, 3, lower_order_final=False) for i in range(9)][-2:] == [3, 3]


# ---------------------------------------------------------------- equivalences


@pytest.mark.parametrize("learned_var", [False, True])
def test_order_1_equals_ddim_eta_0_on_the_same_grid(learned_var):
    var = ModelVarType.LEARNED_RANGE if learned_var else ModelVarType.FIXED_LARGE
    d = spaced("10", var=var)
    model, x_T = LinearEps(learned_var), th.randn(SHAPE, generator=th.Generator().manual_seed(1))
    ddim = d.ddim_sample_loop(model, SHAPE, noise=x_T, eta=0.0)
    dpm = d.dpm_solver_sample_loop(model, SHAPE, noise=x_T, order=1)
    assert th.allclose(dpm, ddim, atol=1e-5, rtol=0)


def test_order_1_equals_guided_ddim_without_clipping():
    d = spaced("ddim25")
    model, x_T = LinearEps(), th.randn(SHAPE, generator=th.Generator().manual_seed(2))

    def cond_fn(x, t, **kwargs):
        return -0.5 * x + t.float().view(-1, 1, 1, 1) / 1000

    kw = dict(noise=x_T, clip_denoised=False, cond_fn=cond_fn)
    ddim = d.ddim_sample_loop(model, SHAPE, eta=0.0, **kw)
    dpm = d.dpm_solver_sample_loop(model, SHAPE, order=1, **kw)
    assert th.allclose(dpm, ddim, atol=1e-4, rtol=1e-5)


def test_first_order_sde_at_eta_1_equals_ddim_eta_1_with_the_same_noise():
    d = spaced("12")
    model, x_T = LinearEps(), th.randn(SHAPE, generator=th.Generator().manual_seed(3))
    # DDIM draws one more (masked) noise at t = 0, after the ones the solver uses.
    ddim = d.ddim_sample_loop(model, SHAPE, noise=x_T, eta=1.0,
                              noise_fn=PerSampleNoise(5, range(3)).noise_fn)
    dpm = d.dpm_solver_sample_loop(model, SHAPE, noise=x_T, order=1, sde=True, eta=1.0,
                                   noise_fn=PerSampleNoise(5, range(3)).noise_fn)
    assert th.allclose(dpm, ddim, atol=1e-5, rtol=0)


def test_learned_sigma_uses_the_eps_channels():
    x_T = th.randn(SHAPE, generator=th.Generator().manual_seed(4))
    plain = spaced("10").dpm_solver_sample_loop(LinearEps(), SHAPE, noise=x_T)
    learned = spaced("10", var=ModelVarType.LEARNED_RANGE).dpm_solver_sample_loop(
        LinearEps(learned_var=True), SHAPE, noise=x_T)
    assert learned.shape == SHAPE and th.equal(learned, plain)


# ---------------------------------------------------------------- convergence (exact model)


@pytest.fixture(scope="module")
def mixture_reference():
    """x_T [128 x 4] and the 1000-step (every training timestep) solution from it."""
    x_T = mixture_noise(128)
    return x_T, solve("1000", x_T, order=3)


def test_order_2_converges_and_beats_ddim_on_a_gaussian_mixture(mixture_reference):
    x_T, reference = mixture_reference
    err = {(o, n): mean_error(solve(f"logsnr{n}", x_T, order=o), reference)
           for o in (1, 2) for n in (10, 20)}
    assert err[2, 10] / err[2, 20] >= 2.5
    assert err[2, 20] <= 0.5 * err[1, 20]
    # Order 1 is DDIM: check that with the DDIM loop itself on the same grid.
    ddim = spaced("logsnr20").ddim_sample_loop(MixtureEps(), tuple(x_T.shape), noise=x_T,
                                               clip_denoised=False)
    assert mean_error(ddim, reference) == pytest.approx(err[1, 20], rel=1e-3)


def test_order_3_converges_at_third_order_without_lower_order_final(mixture_reference):
    x_T, reference = mixture_reference
    e10, e20 = (mean_error(solve(f"logsnr{n}", x_T, order=3, lower_order_final=False), reference)
                for n in (10, 20))
    assert e10 / e20 >= 4.0


# ---------------------------------------------------------------- grid, calls, guidance


@pytest.mark.parametrize("order,sde", [(1, False), (2, False), (3, False), (2, True)])
def test_model_and_cond_fn_calls_are_counted_exactly(order, sde):
    d = spaced("logsnr20")
    model, cond_ts = MixtureEps(), []

    def cond_fn(x, t, **kwargs):
        cond_ts.append(t.clone())
        return th.zeros_like(x)

    d.dpm_solver_sample_loop(model, (5, 4), noise=mixture_noise(5), cond_fn=cond_fn, order=order,
                             sde=sde)
    expected = sorted(d.timestep_map, reverse=True)
    assert len(model.timesteps) == 20 and len(cond_ts) == 20
    for seen in (model.timesteps, cond_ts):
        assert all(t.dtype == th.int64 for t in seen)
        assert [int(t[0]) for t in seen] == expected
        assert all(bool((t == t[0]).all()) for t in seen)
    assert expected[0] == max(d.timestep_map) and expected[-1] == 0


def test_zero_scale_guidance_equals_unguided():
    d, x_T = spaced("logsnr15"), mixture_noise(16)
    unguided = d.dpm_solver_sample_loop(MixtureEps(), (16, 4), noise=x_T)

    def cond_fn(x, t, **kwargs):
        return 0.0 * MixtureEps().score(x, t)[0].to(x.dtype)

    guided = d.dpm_solver_sample_loop(MixtureEps(), (16, 4), noise=x_T, cond_fn=cond_fn)
    assert th.allclose(guided, unguided, atol=1e-6, rtol=0)


def test_guidance_toward_a_component_samples_that_component():
    # grad log p(y = k | x_t) of the mixture is exact: scale 1 samples component k.
    d, x_T, target = spaced("logsnr20"), mixture_noise(200), 2
    model = MixtureEps()

    def cond_fn(x, t, **kwargs):
        score, log_comp = model.score(x, t)
        a = ABAR[t].view(-1, 1)
        var = a * model.S[target] ** 2 + (1 - a)
        return (-(x.double() - a.sqrt() * model.MU[target]) / var - score).to(x.dtype)

    out = d.dpm_solver_sample_loop(MixtureEps(), (200, 4), noise=x_T, cond_fn=cond_fn,
                                   clip_denoised=False)
    nearest = ((out.unsqueeze(1) - model.MU.unsqueeze(0)) ** 2).sum(-1).argmin(1)
    assert (nearest == target).float().mean() >= 0.98


def test_clip_and_dynamic_thresholding_bound_the_prediction():
    d = spaced("10")
    x_T = 3 * th.randn(SHAPE, generator=th.Generator().manual_seed(6))
    for kw in (dict(clip_denoised=True), dict(clip_denoised=False, thresholding_percentile=0.9)):
        outs = list(d.dpm_solver_sample_loop_progressive(LinearEps(), SHAPE, noise=x_T, **kw))
        assert all(o["pred_xstart"].abs().max() <= 1.0 + 1e-6 for o in outs)


def test_dynamic_threshold_keeps_small_rows_and_scales_large_ones():
    small = th.linspace(-0.5, 0.5, 10).view(1, 10)
    large = th.linspace(-4.0, 4.0, 9).view(1, 9)
    large = th.cat([large, th.tensor([[0.0]])], 1)
    x = th.cat([small, large])
    out = dpm_solver.dynamic_threshold(x, 0.9)  # nearest rank 9 of 10: |x| = 4 in row 2
    assert th.equal(out[0], small[0])
    assert th.allclose(out[1], large[0] / 4)
    assert th.allclose(dpm_solver.dynamic_threshold(x, 1.0)[1], large[0] / 4)


# ---------------------------------------------------------------- seeds and bad input


def test_sde_is_reproducible_under_per_sample_seeds():
    d, x_T = spaced("logsnr10"), mixture_noise(4, seed=9)

    def run(rows, seed=7):
        noise = PerSampleNoise(seed, rows)
        return d.dpm_solver_sample_loop(MixtureEps(), (len(rows), 4), noise=x_T[rows], sde=True,
                                        noise_fn=noise.noise_fn)

    whole = run([0, 1, 2, 3])
    assert th.equal(whole, run([0, 1, 2, 3]))
    assert th.allclose(th.cat([run([0, 1]), run([2, 3])]), whole, atol=1e-6, rtol=0)
    assert not th.allclose(run([0, 1, 2, 3], seed=8), whole, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(order=0), "order must be 1, 2 or 3"),
        (dict(order=4), "order must be 1, 2 or 3"),
        (dict(eta=0.5), "eta=0.5 needs the stochastic solver"),
        (dict(sde=True, eta=-1.0), "eta must be >= 0"),
        (dict(thresholding_percentile=0.0), "thresholding_percentile must lie in (0, 1]"),
        (dict(thresholding_percentile=1.5), "thresholding_percentile must lie in (0, 1]"),
    ],
)
def test_bad_options_raise_naming_the_problem(kwargs, needle):
    with pytest.raises(ValueError) as err:
        spaced("10").dpm_solver_sample_loop(LinearEps(), SHAPE, **kwargs)
    assert needle in str(err.value)


def test_too_few_steps_for_the_order_is_an_error():
    with pytest.raises(ValueError, match="order 3 needs at least 4 timesteps"):
        spaced("3").dpm_solver_sample_loop(LinearEps(), SHAPE, order=3)
    spaced("4").dpm_solver_sample_loop(LinearEps(), SHAPE, order=3)  # the smallest allowed
