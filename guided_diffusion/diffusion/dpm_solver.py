"""
Multistep DPM-Solver++ on the data (x_0) prediction, in discrete time (Lu et al. 2022,
"DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models").

Notation (symbol in the paper -> here), for a timestep t of the (possibly respaced) process:

    alpha_t      sqrt(abar_t)                     signal scale of q(x_t | x_0)
    sigma_t      sqrt(1 - abar_t)                 noise scale of q(x_t | x_0)
    lambda_t     log(alpha_t / sigma_t)           half log-SNR, grows as t falls
    h_i          lambda_{t_i} - lambda_{t_{i-1}}  step size in lambda (> 0)
    x_theta      the model's x_0 prediction, after guidance, thresholding and clipping

The grid is the process's own timesteps, num_timesteps - 1 down to 0: the model sees only
integer training timesteps (`SpacedDiffusion` maps them), one model call per timestep, and the
loop returns x_theta at t = 0.

Exact solution of the diffusion ODE (eta = 0) or of the reverse SDE family (eta > 0) from s to
t, with c = 1 + eta (Lu et al. 2022, Eq. 9 and its SDE form):

    x_t = (sigma_t / sigma_s) e^{-eta h} x_s
          + c alpha_t int_{lambda_s}^{lambda_t} e^{-c (lambda_t - lambda)} x_theta(lambda) dlambda
          + sigma_t sqrt(1 - e^{-2 eta h}) z,        z ~ N(0, I).

x_theta is expanded in a Taylor series around lambda_s, whose derivatives are estimated from
the x_theta of earlier steps by divided differences in lambda. Order 1 is DDIM (eta = 0);
order 2 is the midpoint form of DPM-Solver++(2M) (Algorithm 2), x_theta weighted
(1 + 1/(2r)) and -1/(2r) with r = h_{i-1} / h_i, in its SDE form for eta > 0; order 3 keeps the
second-derivative term, so its local error is O(h^4). At eta = 1 the first-order SDE step is the
DDPM posterior given x_theta, i.e. DDIM with eta = 1.

Random draws: per step the model call, then cond_fn, then (SDE only, not at t = 0) the step
noise through `noise_fn(x)` (see `sampling.draw_step_noise`), so per-sample seeded noise works
as in the ancestral and DDIM loops.
"""

import math

import numpy as np
import torch as th

from . import sampling as diffusion_sampling

ORDERS = (1, 2, 3)


def half_log_snr(alphas_cumprod):
    """
    lambda_t = log(alpha_t / sigma_t) of every timestep.

    :param alphas_cumprod: float64 array [T] of abar_t in (0, 1).
    :return: float64 array [T], decreasing in t.
    """
    abar = np.asarray(alphas_cumprod, dtype=np.float64)
    return 0.5 * (np.log(abar) - np.log1p(-abar))


def resolve_options(order, sde, eta, num_timesteps, thresholding_percentile):
    """
    Check the solver options and return the SDE's eta.

    :param order: solver order, one of ORDERS.
    :param sde: True for the stochastic DPM-Solver++ variant.
    :param eta: the SDE's noise amount (>= 0; 1 is the reverse SDE), None for its default.
    :param num_timesteps: timesteps of the (respaced) process, i.e. model calls.
    :param thresholding_percentile: None, or the dynamic-thresholding percentile in (0, 1].
    :return: eta as a float (0.0 for the ODE solver, 1.0 for the SDE when eta is None).
    :raises ValueError: naming the bad option and the allowed values.
    """
    if order not in ORDERS:
        raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3; got order={order!r}")
    if not sde and eta not in (None, 0, 0.0):
        raise ValueError(
            f"eta={eta} needs the stochastic solver (sde=True, sampler dpm++2m-sde); "
            f"the DPM-Solver++ ODE solver is deterministic, leave eta at 0"
        )
    eta = (1.0 if sde else 0.0) if eta is None else float(eta)
    if not eta >= 0.0:
        raise ValueError(f"eta must be >= 0 (1 follows the reverse SDE), got eta={eta}")
    if num_timesteps < order + 1:
        raise ValueError(
            f"DPM-Solver++ of order {order} needs at least {order + 1} timesteps ({order} model "
            f"outputs before a step can use them all); the process has {num_timesteps}: "
            f"respace to more steps or lower the order"
        )
    if thresholding_percentile is not None and not 0.0 < thresholding_percentile <= 1.0:
        raise ValueError(
            f"thresholding_percentile must lie in (0, 1] (e.g. 0.995), "
            f"got {thresholding_percentile}"
        )
    return eta


def step_order(index, num_steps, order, lower_order_final=True):
    """
    The order used by one solver step: lower while too few x_theta are known, and (with
    lower_order_final) again over the last steps, whose lambda jumps are the largest.

    :param index: the step, 0 for the step out of the largest timestep.
    :param num_steps: the number of steps, num_timesteps - 1.
    :return: an int in [1, order].
    """
    used = min(order, index + 1)
    if lower_order_final:
        used = min(used, num_steps - index)
    return used


def _derivative_weights(lambdas):
    """
    Divided-difference estimates of dx_theta/dlambda and d2x_theta/dlambda2 at the newest
    point, as weights on the known x_theta.

    :param lambdas: the lambdas of the known x_theta, newest first (1 to 3 of them).
    :return: (first, second), float64 arrays of len(lambdas) weights (newest first).
    """
    k = len(lambdas)
    first, second = np.zeros(k), np.zeros(k)
    if k >= 2:
        h0 = lambdas[0] - lambdas[1]
        d0 = np.zeros(k)
        d0[0], d0[1] = 1 / h0, -1 / h0
        first = d0
    if k == 3:
        h1 = lambdas[1] - lambdas[2]
        d1 = np.zeros(k)
        d1[1], d1[2] = 1 / h1, -1 / h1
        # d0 and d1 are the slopes at the midpoints of [l1, l0] and [l2, l1]; move the slope
        # from the first midpoint to l0 with the second derivative.
        second = 2 * (d0 - d1) / (h0 + h1)
        first = d0 + second * h0 / 2
    return first, second


def step_coefficients(lambdas, lambda_next, eta=0.0):
    """
    One multistep DPM-Solver++ update as a linear combination:
    x_next = coef_x * x + sum_j coef_x0[j] * x_theta[j] + coef_noise * z.

    alpha and sigma follow from lambda (alpha^2 + sigma^2 = 1): sigma^2 = 1 / (1 + e^{2 lambda}).

    :param lambdas: lambdas of the x_theta to use, newest (the current timestep) first; their
                    number is the step's order (1 to 3).
    :param lambda_next: lambda of the target timestep (> lambdas[0]).
    :param eta: 0 for the ODE, > 0 for the SDE family (1 is the reverse SDE).
    :return: (coef_x, coef_x0 as a list of floats newest first, coef_noise), Python floats.
    """
    h = lambda_next - lambdas[0]
    sigma_next = math.sqrt(1 / (1 + math.exp(2 * lambda_next)))
    alpha_next = math.sqrt(1 / (1 + math.exp(-2 * lambda_next)))
    sigma_ratio = sigma_next / math.sqrt(1 / (1 + math.exp(2 * lambdas[0])))
    c = 1.0 + eta
    # c * int_0^h e^{-c (h - u)} u^n / n! du for n = 0, 1, 2.
    i0 = -math.expm1(-c * h)
    i1 = h - i0 / c
    i2 = h * h / 2 - h / c + i0 / c**2
    first, second = _derivative_weights(lambdas)
    weights = np.zeros(len(lambdas))
    weights[0] = i0
    if len(lambdas) == 2:
        # Algorithm 2 of Lu et al.: the slope term with weight i0 * h / 2 (midpoint rule).
        weights += i0 * h / 2 * first
    elif len(lambdas) == 3:
        weights += i1 * first + i2 * second
    coef_x = sigma_ratio * math.exp(-eta * h)
    coef_noise = sigma_next * math.sqrt(-math.expm1(-2 * eta * h)) if eta > 0 else 0.0
    return coef_x, [float(alpha_next * w) for w in weights], coef_noise


def dynamic_threshold(x0, percentile):
    """
    Imagen's dynamic thresholding (Saharia et al. 2022, Sec. 2.3): s = the percentile of
    |x0| per sample (nearest rank), s = max(s, 1), then x0 = clamp(x0, -s, s) / s.

    :param x0: [N x ...] x_0 predictions.
    :param percentile: in (0, 1].
    :return: a tensor like x0 in [-1, 1].
    """
    flat = x0.detach().abs().reshape(x0.shape[0], -1).float()
    rank = max(1, math.ceil(percentile * flat.shape[1]))
    s = flat.kthvalue(rank, dim=1).values.clamp(min=1.0)
    s = s.to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return th.maximum(th.minimum(x0, s), -s) / s


def predict_xstart(diffusion, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                   model_kwargs=None, thresholding_percentile=None):
    """
    x_theta(x_t, t): the model's x_0 prediction, guided by `cond_fn` through
    `condition_score` (eps - sqrt(1 - abar_t) * grad, before the x_0 conversion), then
    `denoised_fn`, dynamic thresholding and clipping to [-1, 1], in that order.

    :param x: [N x C x ...] x_t; t: [N] timesteps of the (respaced) process.
    :return: a tensor like x.
    """
    out = diffusion.p_mean_variance(
        model, x, t, clip_denoised=False, denoised_fn=None, model_kwargs=model_kwargs
    )
    if cond_fn is not None:
        out = diffusion.condition_score(cond_fn, out, x, t, model_kwargs=model_kwargs)
    x0 = out["pred_xstart"]
    if denoised_fn is not None:
        x0 = denoised_fn(x0)
    if thresholding_percentile is not None:
        x0 = dynamic_threshold(x0, thresholding_percentile)
    if clip_denoised:
        x0 = x0.clamp(-1, 1)
    return x0


class MultistepSolver:
    """
    The per-timestep step of a DPM-Solver++ loop: keeps the last x_theta and their lambdas.

    Call it as `step(x, t)` for t = num_timesteps - 1 down to 0 (one model call each); it
    returns {"sample": x at t - 1 (x_theta at t = 0), "pred_xstart": x_theta}.

    :param predict: callable (x, t) -> x_theta, e.g. a bound `predict_xstart`.
    :param alphas_cumprod: float64 [T] abar of the (respaced) process.
    :param order: 1, 2 or 3; sde, eta: see `resolve_options`.
    :param lower_order_final: see `step_order`.
    :param noise_fn: None or a callable noise_fn(x) -> noise like x (SDE only).
    """

    def __init__(self, predict, alphas_cumprod, order=2, sde=False, eta=0.0,
                 lower_order_final=True, noise_fn=None):
        self.predict = predict
        self.lambdas = half_log_snr(alphas_cumprod)
        self.order, self.sde, self.eta = order, sde, eta
        self.lower_order_final = lower_order_final
        self.noise_fn = noise_fn
        self.history = []  # (lambda, x_theta), newest first

    def __call__(self, x, t):
        i = int(t[0])
        assert not self.history or self.history[0][0] == self.lambdas[i + 1], "steps out of order"
        x0 = self.predict(x, t)
        if i == 0:
            return {"sample": x0, "pred_xstart": x0}
        num_steps = len(self.lambdas) - 1
        used = step_order(num_steps - i, num_steps, self.order, self.lower_order_final)
        self.history = [(self.lambdas[i], x0)] + self.history[: self.order - 1]
        coef_x, coef_x0, coef_noise = step_coefficients(
            [lam for lam, _ in self.history[:used]], self.lambdas[i - 1], self.eta
        )
        sample = coef_x * x
        for coef, (_, past) in zip(coef_x0, self.history):
            sample = sample + coef * past
        if self.sde:
            sample = sample + coef_noise * diffusion_sampling.draw_step_noise(x, self.noise_fn)
        return {"sample": sample, "pred_xstart": x0}


def sample_loop_progressive(diffusion, model, shape, noise=None, clip_denoised=True,
                            denoised_fn=None, cond_fn=None, model_kwargs=None, device=None,
                            progress=False, order=2, sde=False, eta=None,
                            thresholding_percentile=None, lower_order_final=True,
                            noise_fn=None):
    """
    Run multistep DPM-Solver++ over every timestep of `diffusion` and yield each step's dict.

    :param diffusion: a GaussianDiffusion or SpacedDiffusion (its timesteps are the grid).
    :param order: 1, 2 or 3 (DPM-Solver++(1M/2M/3M)).
    :param sde: use the stochastic variant (DPM-Solver++(2M) SDE at order 2).
    :param eta: the SDE's noise amount, >= 0 (default 1, the reverse SDE); ODE: None or 0.
    :param thresholding_percentile: None, or Imagen's dynamic-thresholding percentile in (0, 1].
    :param lower_order_final: lower the order over the last steps (stable at 10 steps).
    :param noise_fn: None or noise_fn(x) -> noise like x for the SDE's step noise.
    (Other arguments as in `GaussianDiffusion.ddim_sample_loop_progressive`.)
    :return: a generator of {"sample", "pred_xstart"} dicts; the last "sample" is x_theta at
             t = 0.
    """
    eta = resolve_options(order, sde, eta, diffusion.num_timesteps, thresholding_percentile)

    def predict(x, t):
        return predict_xstart(
            diffusion, model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
            cond_fn=cond_fn, model_kwargs=model_kwargs,
            thresholding_percentile=thresholding_percentile,
        )

    step = MultistepSolver(predict, diffusion.alphas_cumprod, order=order, sde=sde, eta=eta,
                           lower_order_final=lower_order_final, noise_fn=noise_fn)
    return diffusion_sampling.sample_loop_progressive(
        diffusion.num_timesteps, step, model, shape, noise=noise, device=device,
        progress=progress,
    )
