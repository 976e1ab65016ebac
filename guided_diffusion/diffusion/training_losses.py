"""
Training objectives and bits-per-dim evaluation of a Gaussian diffusion.

The variational bound L = L_T + sum_{t>=1} L_{t-1} + L_0 (Ho et al. 2020, Eq. 5) is reported in
bits per dimension: L_{t-1} is KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)), L_0 is the
discretized Gaussian decoder NLL, L_T is the prior term KL(q(x_T | x_0) || N(0, I)).

The mean term of the MSE loss types compares the model's mean channels with their target (eps,
x_0 or the posterior mean, by model_mean_type) in the norm `diffusion.mean_loss`: "l2" (the
reference, reported as "mse") or "l1" (mean absolute error, reported as "l1"). With a learned
variance the hybrid loss of Nichol & Dhariwal 2021 is that mean term plus the vb term, which is
unchanged by the norm (it is computed with the mean detached), so under "l1" the hybrid is
L1(mean) + L_vb.

As in `sampling`, each function takes the diffusion object first and calls its public
(overridable) methods, so `SpacedDiffusion` only needs to wrap the model once.
"""

import numpy as np
import torch as th

from .types import LossType, ModelMeanType
from .likelihood import discretized_gaussian_log_likelihood, normal_kl
from ..models.layers import mean_flat

_LN2 = np.log(2.0)

# Norms of the mean term: "l2" is the reference's MSE.
MEAN_LOSSES = ("l2", "l1")


def vb_terms_bpd(diffusion, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
    """
    One term of the variational bound, in bits per dimension.

    :param x_start: the clean images x_0, shape [N, C, ...].
    :param x_t: the noised images at t, shape [N, C, ...].
    :param t: the timesteps, shape [N] (int64).
    :return: dict with "output" ([N] float: the decoder NLL where t == 0, the KL elsewhere) and
             "pred_xstart" (the model's x_0 prediction, like x_start).
    """
    true_mean, _, true_log_variance_clipped = diffusion.q_posterior_mean_variance(
        x_start=x_start, x_t=x_t, t=t
    )
    out = diffusion.p_mean_variance(
        model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs
    )
    kl = normal_kl(true_mean, true_log_variance_clipped, out["mean"], out["log_variance"])
    kl = mean_flat(kl) / _LN2

    decoder_nll = -discretized_gaussian_log_likelihood(
        x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
    )
    decoder_nll = mean_flat(decoder_nll) / _LN2

    output = th.where((t == 0), decoder_nll, kl)
    return {"output": output, "pred_xstart": out["pred_xstart"]}


def training_losses(diffusion, model, x_start, t, model_kwargs=None, noise=None):
    """
    The training loss terms for one batch.

    :param x_start: the clean images, shape [N, C, ...].
    :param t: the timesteps, shape [N] (int64).
    :param model_kwargs: extra keyword arguments for the model (e.g. "y").
    :param noise: optional Gaussian noise like x_start; drawn with `randn_like` when None.
    :return: dict of [N] tensors: "loss" always; for the MSE loss types the mean term, "mse"
             (mean_loss "l2") or "l1" (mean_loss "l1"), and "vb" when the variance is learned.
    """
    if model_kwargs is None:
        model_kwargs = {}
    if noise is None:
        noise = th.randn_like(x_start)
    x_t = diffusion.q_sample(x_start, t, noise=noise)

    terms = {}
    loss_type = diffusion.loss_type
    if loss_type.is_vb():
        terms["loss"] = diffusion.vb_terms_bpd(
            model, x_start, x_t, t, clip_denoised=False, model_kwargs=model_kwargs
        )["output"]
        if loss_type == LossType.RESCALED_KL:
            terms["loss"] *= diffusion.num_timesteps
        return terms
    if loss_type not in (LossType.MSE, LossType.RESCALED_MSE):
        raise ValueError(f"unsupported loss type {loss_type!r}")

    model_output = model(x_t, diffusion.scale_timesteps(t), **model_kwargs)
    if diffusion.model_var_type.is_learned():
        model_output, terms["vb"] = _learned_variance_vb(diffusion, model_output, x_start, x_t, t)
    target = _mean_target(diffusion, x_start, x_t, t, noise)
    if not model_output.shape == target.shape == x_start.shape:
        raise ValueError(
            f"model output shape {tuple(model_output.shape)} does not match the input "
            f"shape {tuple(x_start.shape)}"
        )
    if diffusion.mean_loss == "l1":
        mean_term = terms["l1"] = mean_flat((target - model_output).abs())
    else:
        mean_term = terms["mse"] = mean_flat((target - model_output) ** 2)
    if "vb" in terms:
        terms["loss"] = mean_term + terms["vb"]
    else:
        terms["loss"] = mean_term
    return terms


def _learned_variance_vb(diffusion, model_output, x_start, x_t, t):
    """
    Split a learned-variance output [N, 2C, ...] into the mean channels and the vb term ([N]),
    computed with the mean detached so that the bound only trains the variance.

    :return: (mean channels [N, C, ...], vb [N]).
    """
    check_learned_output(model_output, x_t)
    model_output, model_var_values = th.split(model_output, x_t.shape[1], dim=1)
    frozen_out = th.cat([model_output.detach(), model_var_values], dim=1)
    vb = diffusion.vb_terms_bpd(
        lambda *args, r=frozen_out: r, x_start, x_t, t, clip_denoised=False
    )["output"]
    if diffusion.loss_type == LossType.RESCALED_MSE:
        # Divide by 1000 for equivalence with the original T = 1000 implementation;
        # without the 1/1000 factor the vb term hurts the MSE term.
        vb = vb * (diffusion.num_timesteps / 1000.0)
    return model_output, vb


def _mean_target(diffusion, x_start, x_t, t, noise):
    """What the model's mean channels should equal: eps, x_0 or the posterior mean (like x_t)."""
    mean_type = diffusion.model_mean_type
    if mean_type == ModelMeanType.PREVIOUS_X:
        return diffusion.q_posterior_mean_variance(x_start=x_start, x_t=x_t, t=t)[0]
    if mean_type == ModelMeanType.START_X:
        return x_start
    return noise


def check_learned_output(model_output, x):
    """Raise a ValueError unless a learned-variance model output is [N, 2C, ...] for x [N, C, ...]."""
    B, C = x.shape[:2]
    expected = (B, C * 2, *x.shape[2:])
    if tuple(model_output.shape) != expected:
        raise ValueError(
            f"with a learned variance the model must output {expected} (mean and variance "
            f"channels), got {tuple(model_output.shape)}; check learn_sigma / out_channels"
        )


def prior_bpd(diffusion, x_start):
    """
    The prior term KL(q(x_T | x_0) || N(0, I)) in bits per dimension.

    It involves no model, so it cannot be optimized; it only shows how much the forward process
    leaves of x_0.

    :param x_start: the clean images, shape [N, C, ...].
    :return: an [N] tensor.
    """
    batch_size = x_start.shape[0]
    t = th.tensor([diffusion.num_timesteps - 1] * batch_size, device=x_start.device)
    qt_mean, _, qt_log_variance = diffusion.q_mean_variance(x_start, t)
    kl_prior = normal_kl(mean1=qt_mean, logvar1=qt_log_variance, mean2=0.0, logvar2=0.0)
    return mean_flat(kl_prior) / _LN2


def calc_bpd_loop(diffusion, model, x_start, clip_denoised=True, model_kwargs=None):
    """
    The whole variational bound in bits per dimension, with per-timestep diagnostics.

    Draws `randn_like(x_start)` once per timestep, from t = T - 1 down to 0.

    :param x_start: the clean images, shape [N, C, ...].
    :return: dict with "total_bpd" [N], "prior_bpd" [N], and [N, T] tensors "vb" (the bound
             terms), "xstart_mse" (MSE of the x_0 prediction) and "mse" (MSE of the implied
             epsilon); column j belongs to timestep T - 1 - j (the loop order).
    """
    device = x_start.device
    batch_size = x_start.shape[0]
    vb, xstart_mse, mse = [], [], []
    for t in list(range(diffusion.num_timesteps))[::-1]:
        t_batch = th.tensor([t] * batch_size, device=device)
        noise = th.randn_like(x_start)
        x_t = diffusion.q_sample(x_start=x_start, t=t_batch, noise=noise)
        with th.no_grad():
            out = diffusion.vb_terms_bpd(
                model, x_start, x_t, t_batch, clip_denoised=clip_denoised, model_kwargs=model_kwargs
            )
        vb.append(out["output"])
        xstart_mse.append(mean_flat((out["pred_xstart"] - x_start) ** 2))
        eps = diffusion.predict_eps_from_xstart(x_t, t_batch, out["pred_xstart"])
        mse.append(mean_flat((eps - noise) ** 2))

    vb = th.stack(vb, dim=1)
    xstart_mse = th.stack(xstart_mse, dim=1)
    mse = th.stack(mse, dim=1)

    prior = diffusion.prior_bpd(x_start)
    total_bpd = vb.sum(dim=1) + prior
    return {
        "total_bpd": total_bpd,
        "prior_bpd": prior,
        "vb": vb,
        "xstart_mse": xstart_mse,
        "mse": mse,
    }
