"""
Pure float64 noise schedules and the per-timestep coefficients of a Gaussian diffusion.

Notation (attribute name -> symbol in Ho et al. 2020, "Denoising Diffusion Probabilistic Models"):

    betas                           beta_t            forward-process variance of step t
    alphas_cumprod                  abar_t            prod_{s<=t} (1 - beta_s)
    alphas_cumprod_prev / _next     abar_{t-1}, abar_{t+1}   (abar_{-1} = 1, abar_T = 0)
    posterior_variance              beta~_t           variance of q(x_{t-1} | x_t, x_0), Eq. 7
    posterior_mean_coef1 / 2        coefficients of x_0 and x_t in mu~_t(x_t, x_0), Eq. 7

Timesteps are 0-based: index t here is step t + 1 of the paper. Everything in this module is
numpy float64 and free of torch except `extract_into_tensor`, the one place where a coefficient
table becomes a broadcastable float32 tensor.
"""

import math

import numpy as np
import torch as th

from .types import UnknownNameError

BETA_SCHEDULES = ("linear", "cosine", "sigmoid")

# The sigmoid schedule's parameters (Jabri et al. 2022): the sigmoid is read on [start, end]
# and sharpened by 1 / tau.
SIGMOID_START, SIGMOID_END, SIGMOID_TAU = -3.0, 3.0, 1.0


def get_named_beta_schedule(schedule_name, num_diffusion_timesteps):
    """
    Get a pre-defined beta schedule for the given name.

    "linear" is the DDPM schedule, scaled by 1000 / T so that it keeps its shape for any number
    of steps; "cosine" is the schedule of Nichol & Dhariwal 2021 (Improved DDPM, Eq. 17);
    "sigmoid" is the sigmoid schedule of Jabri et al. 2022 ("Scalable Adaptive Computation for
    Iterative Generation"), see `sigmoid_alpha_bar`, with start -3, end 3 and tau 1. Cosine and
    sigmoid are discretized by `betas_for_alpha_bar` (betas capped at 0.999).

    :param schedule_name: one of BETA_SCHEDULES.
    :param num_diffusion_timesteps: T, the number of betas to produce (> 0).
    :return: a float64 numpy array of shape [T].
    :raises ValueError: for an unknown name (UnknownNameError, also a NotImplementedError like
                        the reference's), T < 1, or T < 20 with "linear" (betas above 1).
    """
    num_diffusion_timesteps = int(num_diffusion_timesteps)
    if num_diffusion_timesteps < 1:
        raise ValueError(
            f"num_diffusion_timesteps must be a positive integer, got {num_diffusion_timesteps}"
        )
    if schedule_name == "linear":
        # The 1000 / T scale keeps beta_1 = 1e-4 and beta_T = 0.02 at T = 1000.
        scale = 1000 / num_diffusion_timesteps
        beta_start = scale * 0.0001
        beta_end = scale * 0.02
        if beta_end > 1.0:
            raise ValueError(
                f"the linear schedule needs at least 20 diffusion steps (its betas reach "
                f"20 / T, i.e. {beta_end:g} > 1 for T={num_diffusion_timesteps}); "
                f"use more steps or the 'cosine' schedule"
            )
        return np.linspace(beta_start, beta_end, num_diffusion_timesteps, dtype=np.float64)
    if schedule_name == "cosine":
        return betas_for_alpha_bar(
            num_diffusion_timesteps,
            lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2,
        )
    if schedule_name == "sigmoid":
        return betas_for_alpha_bar(num_diffusion_timesteps, sigmoid_alpha_bar)
    raise UnknownNameError(
        f"unknown beta schedule: {schedule_name!r}; allowed: {', '.join(BETA_SCHEDULES)}"
    )


def sigmoid_alpha_bar(t, start=SIGMOID_START, end=SIGMOID_END, tau=SIGMOID_TAU):
    """
    The sigmoid schedule's abar(t) for t in [0, 1] (Jabri et al. 2022):

        abar(t) = (s(end / tau) - s((start + t * (end - start)) / tau)) / (s(end / tau) - s(start / tau))

    with s the logistic sigmoid; abar(0) = 1, abar(1) = 0, strictly decreasing. A smaller tau
    or a wider [start, end] concentrates the noise change in the middle of the process.

    :param t: diffusion time in [0, 1] (float).
    :return: abar(t), a float in [0, 1].
    """
    v_start = _logistic(start / tau)
    v_end = _logistic(end / tau)
    return (v_end - _logistic((start + t * (end - start)) / tau)) / (v_end - v_start)


def _logistic(x):
    return 1.0 / (1.0 + math.exp(-x))


def betas_for_alpha_bar(num_diffusion_timesteps, alpha_bar, max_beta=0.999):
    """
    Discretize a continuous alpha_bar(t), t in [0, 1], into betas.

    beta_i = min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta).

    :param num_diffusion_timesteps: T, the number of betas to produce.
    :param alpha_bar: a callable from t in [0, 1] to the cumulative product of (1 - beta).
    :param max_beta: the largest beta allowed; values below 1 prevent singularities at t = T.
    :return: a float64 numpy array of shape [T].
    """
    betas = []
    for i in range(num_diffusion_timesteps):
        t1 = i / num_diffusion_timesteps
        t2 = (i + 1) / num_diffusion_timesteps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(betas, dtype=np.float64)


def validate_betas(betas):
    """
    Convert betas to a float64 array and check they form a valid schedule.

    :param betas: a 1-D sequence of floats in (0, 1].
    :return: a float64 numpy array of shape [T].
    :raises ValueError: when betas are not 1-D, empty, or outside (0, 1].
    """
    betas = np.array(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.shape[0] == 0:
        raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {betas.shape}")
    if not ((betas > 0).all() and (betas <= 1).all()):
        raise ValueError(
            f"betas must lie in (0, 1]; got min {betas.min():g}, max {betas.max():g}"
        )
    return betas


def diffusion_coefficients(betas):
    """
    Compute every per-timestep coefficient table of the forward process and its posterior.

    :param betas: a validated float64 array of shape [T].
    :return: a dict of float64 arrays of shape [T], keyed by the GaussianDiffusion attribute
             names (see the module docstring).
    """
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas, axis=0)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    alphas_cumprod_next = np.append(alphas_cumprod[1:], 0.0)
    # Posterior q(x_{t-1} | x_t, x_0), Eq. 7 of Ho et al.
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return {
        "alphas_cumprod": alphas_cumprod,
        "alphas_cumprod_prev": alphas_cumprod_prev,
        "alphas_cumprod_next": alphas_cumprod_next,
        # q(x_t | x_0) and its inversions.
        "sqrt_alphas_cumprod": np.sqrt(alphas_cumprod),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - alphas_cumprod),
        "log_one_minus_alphas_cumprod": np.log(1.0 - alphas_cumprod),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1),
        "posterior_variance": posterior_variance,
        # The posterior variance is 0 at t = 0, so its log is clipped by reusing the t = 1 value.
        "posterior_log_variance_clipped": np.log(
            np.append(posterior_variance[1], posterior_variance[1:])
        ),
        "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        "posterior_mean_coef2": (
            (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod)
        ),
    }


def fixed_large_variance(betas, posterior_variance):
    """
    The FIXED_LARGE variance table: betas with the t = 0 entry replaced by the posterior
    variance at t = 1 (so the decoder log-likelihood stays well defined).

    :return: (variance, log_variance), float64 arrays of shape [T].
    """
    variance = np.append(posterior_variance[1], betas[1:])
    return variance, np.log(variance)


def extract_into_tensor(arr, timesteps, broadcast_shape):
    """
    Extract values from a 1-D numpy array for a batch of indices, as float32.

    The values are indexed in float64 and then cast, so the result equals the reference
    implementation bit for bit.

    :param arr: the 1-D numpy array (float64).
    :param timesteps: a tensor of indices into the array, shape [N] (int64).
    :param broadcast_shape: a shape [N, ...] with at least as many dimensions as `timesteps`.
    :return: a float32 tensor of shape `broadcast_shape` on the device of `timesteps`.
    :raises ValueError: when the indices do not broadcast to `broadcast_shape`.
    """
    broadcast_shape = tuple(broadcast_shape)
    if timesteps.dim() > len(broadcast_shape):
        raise ValueError(
            f"timesteps have {timesteps.dim()} dims (shape {tuple(timesteps.shape)}) but the "
            f"target shape {broadcast_shape} has only {len(broadcast_shape)}"
        )
    res = th.from_numpy(arr).to(device=timesteps.device)[timesteps].float()
    res = res[(...,) + (None,) * (len(broadcast_shape) - res.dim())]
    try:
        return res.expand(broadcast_shape)
    except RuntimeError as err:
        raise ValueError(
            f"timesteps of shape {tuple(timesteps.shape)} cannot broadcast to {broadcast_shape}"
        ) from err
