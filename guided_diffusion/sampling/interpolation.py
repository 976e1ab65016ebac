"""
Interpolation between two images through a diffusion model's latents.

Two modes, both ending with the model's reverse process:

- "ddpm" (Ho et al. 2020, Sec. 4.3): encode both sources with q(x_t | x_0) at one timestep t
  with the SAME noise, mix the two latents linearly, x_t(lambda) = (1 - lambda) x_t + lambda x'_t,
  and decode every mixture with the ancestral reverse process from t down to 0. The reverse
  process's step noise is shared by all rows, so rows differ only through their latents.
- "ddim" (Song et al. 2021, Sec. 5.4 and Eq. 14): invert both sources to x_T with the
  deterministic DDIM ODE (`ddim_reverse_sample`, t = 0 .. T-1), mix with spherical linear
  interpolation (the latents are close to Gaussian, whose mass lies on a sphere, so slerp keeps
  their norm where a linear mixture would shrink it), and decode with deterministic DDIM (eta 0).

lambda takes `num_lambdas` evenly spaced values k / (num_lambdas - 1), k = 0 .. num_lambdas - 1.
The two mixing weights of row k are computed as (num_lambdas - 1 - k) / (num_lambdas - 1) and
k / (num_lambdas - 1) (never as 1 - lambda), so swapping the sources gives exactly the same
products in reversed row order, and the rows lambda = 0 and 1 are exactly the two latents.

Timesteps t index the steps of the (possibly respaced) process: 0 <= t < num_timesteps.
Images are float [N x C x H x W] tensors in [-1, 1].
"""

import math

import numpy as np
import torch as th
from tqdm.auto import tqdm

from ..diffusion.sampling import sample_loop_progressive

MODES = ("ddpm", "ddim")


def check_mode(mode):
    """:raises ValueError: unless `mode` is one of MODES."""
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def check_num_lambdas(num_lambdas):
    """:raises ValueError: unless num_lambdas is an integer >= 2 (both ends 0 and 1 are rows)."""
    if isinstance(num_lambdas, bool) or not isinstance(num_lambdas, (int, np.integer)) or num_lambdas < 2:
        raise ValueError(
            f"--num_lambdas must be an integer >= 2 (lambda runs from 0 to 1, both ends "
            f"included), got {num_lambdas!r}"
        )
    return int(num_lambdas)


def resolve_interp_t(interp_t, num_timesteps):
    """
    The timestep at which "ddpm" mode mixes the latents.

    :param interp_t: -1 for the default num_timesteps // 2, else a step of the process.
    :param num_timesteps: T of the (possibly respaced) process.
    :return: an int in [0, num_timesteps).
    :raises ValueError: naming the valid range when interp_t lies outside the schedule.
    """
    if interp_t == -1:
        return num_timesteps // 2
    if not 0 <= interp_t < num_timesteps:
        raise ValueError(
            f"--interp_t {interp_t} is outside the schedule: the sampling process has "
            f"{num_timesteps} steps, so use 0 .. {num_timesteps - 1} (or -1 for "
            f"{num_timesteps // 2}, half way; with --timestep_respacing, t counts respaced steps)"
        )
    return int(interp_t)


def mixing_lambdas(num_lambdas):
    """:return: float64 numpy array [num_lambdas], k / (num_lambdas - 1)."""
    n = check_num_lambdas(num_lambdas)
    return np.arange(n, dtype=np.float64) / (n - 1)


def _fractions(n):
    """Pairs (weight of a, weight of b) as exact quotients of integers, row k = 0 .. n - 1."""
    return [((n - 1 - k) / (n - 1), k / (n - 1)) for k in range(n)]


def _check_pair(a, b):
    if a.shape != b.shape:
        raise ValueError(f"cannot mix latents of shapes {tuple(a.shape)} and {tuple(b.shape)}")


def lerp_rows(a, b, num_lambdas):
    """
    Linear mixtures (1 - lambda) a + lambda b for every lambda of `mixing_lambdas`.

    :param a, b: tensors of one shape S, e.g. [C, H, W].
    :return: a tensor [num_lambdas, *S]; row 0 is a and the last row is b, exactly.
    """
    _check_pair(a, b)
    n = check_num_lambdas(num_lambdas)
    return th.stack([a * wa + b * wb for wa, wb in _fractions(n)])


def slerp_rows(a, b, num_lambdas, eps=1e-7):
    """
    Spherical linear interpolation (Shoemake 1985) for every lambda of `mixing_lambdas`:
    sin((1 - lambda) theta) / sin(theta) a + sin(lambda theta) / sin(theta) b, where theta is
    the angle between a and b as flat vectors. When sin(theta) < eps (a and b (anti)parallel,
    where the arc is undefined or unstable) it falls back to `lerp_rows`.

    :param a, b: tensors of one shape S, e.g. [C, H, W].
    :return: a tensor [num_lambdas, *S]; row 0 is a and the last row is b, exactly.
    """
    _check_pair(a, b)
    n = check_num_lambdas(num_lambdas)
    a64, b64 = a.double().flatten(), b.double().flatten()
    norms = a64.norm() * b64.norm()
    if norms == 0:
        return lerp_rows(a, b, n)
    cos = float((a64 * b64).sum() / norms)
    theta = math.acos(min(1.0, max(-1.0, cos)))
    if math.sin(theta) < eps:
        return lerp_rows(a, b, n)
    rows = []
    for wa, wb in _fractions(n):
        rows.append(a * (math.sin(wa * theta) / math.sin(theta)) + b * (math.sin(wb * theta) / math.sin(theta)))
    return th.stack(rows)


def mix_latents(z_a, z_b, num_lambdas, mode):
    """
    :param z_a, z_b: the two encoded sources, [C, H, W] each.
    :return: [num_lambdas, C, H, W]: linear mixtures for "ddpm", spherical ones for "ddim".
    """
    if check_mode(mode) == "ddpm":
        return lerp_rows(z_a, z_b, num_lambdas)
    return slerp_rows(z_a, z_b, num_lambdas)


def _batch_t(t, n, device):
    return th.full((n,), int(t), dtype=th.long, device=device)


def encode_ddpm(diffusion, sources, t, noise):
    """
    q_sample both sources to timestep t with the same noise.

    :param sources: [2, C, H, W] in [-1, 1].
    :param t: a step of the process.
    :param noise: [C, H, W] or [1, C, H, W] standard normal noise, shared by both sources.
    :return: [2, C, H, W] latents x_t.
    """
    shared = noise.reshape(1, *sources.shape[1:]).expand_as(sources)
    return diffusion.q_sample(sources, _batch_t(t, sources.shape[0], sources.device), noise=shared)


def encode_ddim(diffusion, model, sources, model_kwargs=None, clip_denoised=True, progress=False):
    """
    Invert images to x_T along the deterministic DDIM path: ddim_reverse_sample for t = 0 .. T-1.

    :param sources: [N, C, H, W] in [-1, 1].
    :param model_kwargs: extra model arguments (e.g. {"y": [N] labels}).
    :return: [N, C, H, W] latents at the last step T-1.
    """
    steps = range(diffusion.num_timesteps)
    if progress:
        steps = tqdm(steps, desc="ddim inversion")
    x = sources
    with th.no_grad():
        for t in steps:
            x = diffusion.ddim_reverse_sample(
                model, x, _batch_t(t, x.shape[0], x.device), clip_denoised=clip_denoised,
                model_kwargs=model_kwargs,
            )["sample"]
    return x


def shared_noise_fn(draw_one):
    """
    Step noise shared by every row of a batch.

    :param draw_one: callable(x[:1]) -> one row of noise [1, ...] (e.g. a seeded generator).
    :return: noise_fn(x) -> the row expanded to x's shape.
    """

    def noise_fn(x):
        return draw_one(x[:1]).expand_as(x).contiguous()

    return noise_fn


def decode(diffusion, model, latents, mode, t_start, noise_fn=None, model_kwargs=None,
           clip_denoised=True, progress=False):
    """
    Run the reverse process on latents from timestep t_start down to 0.

    :param latents: [N, C, H, W] at noise level t_start.
    :param mode: "ddpm" (ancestral steps, step noise from `noise_fn`) or "ddim" (eta = 0).
    :param t_start: the latents' timestep (num_timesteps - 1 for "ddim" latents).
    :param noise_fn: noise_fn(x) -> noise like x for the ancestral steps (default randn_like).
    :return: [N, C, H, W] images, nominally in [-1, 1].
    """
    if check_mode(mode) == "ddpm":
        def step(x, t):
            return diffusion.p_sample(model, x, t, clip_denoised=clip_denoised,
                                      model_kwargs=model_kwargs, noise_fn=noise_fn)
    else:
        def step(x, t):
            # eta = 0 multiplies the step noise by 0; zeros keep the global RNG untouched
            return diffusion.ddim_sample(model, x, t, clip_denoised=clip_denoised,
                                         model_kwargs=model_kwargs, eta=0.0, noise_fn=th.zeros_like)
    final = None
    for final in sample_loop_progressive(t_start + 1, step, model, tuple(latents.shape),
                                         noise=latents, device=latents.device, progress=progress):
        pass
    return final["sample"]


def encode(diffusion, model, sources, mode, t, noise=None, model_kwargs=None,
           clip_denoised=True, progress=False):
    """
    Both sources' latents and their timestep.

    :param sources: [2, C, H, W] in [-1, 1].
    :param t: the "ddpm" mixing timestep (ignored by "ddim", which goes to num_timesteps - 1).
    :param noise: the shared q_sample noise of "ddpm", [C, H, W] (default: drawn with randn).
    :return: (latents [2, C, H, W], their timestep).
    """
    if sources.dim() != 4 or sources.shape[0] != 2:
        raise ValueError(f"expected two sources [2, C, H, W], got shape {tuple(sources.shape)}")
    if check_mode(mode) == "ddpm":
        if noise is None:
            noise = th.randn(sources.shape[1:], device=sources.device)
        return encode_ddpm(diffusion, sources, t, noise), t
    latents = encode_ddim(diffusion, model, sources, model_kwargs, clip_denoised, progress)
    return latents, diffusion.num_timesteps - 1


def interpolate(diffusion, model, sources, mode="ddpm", num_lambdas=11, interp_t=-1, noise=None,
                noise_fn=None, model_kwargs=None, clip_denoised=True):
    """
    Every interpolant in one batch (a single process; see `interpolation_run` for the sharded
    script path).

    :param sources: [2, C, H, W] in [-1, 1].
    :param model_kwargs: model arguments shared by every row, each value with a leading
                         dimension of 1 (e.g. {"y": [1] label}); they are expanded to the rows.
    :return: dict with "images" [num_lambdas, C, H, W], "latents" (the mixtures, like images),
             "lambdas" float64 [num_lambdas] and "t" (the latents' timestep).
    """
    t = resolve_interp_t(interp_t, diffusion.num_timesteps)
    kwargs2 = _rows_kwargs(model_kwargs, 2)
    latents, t = encode(diffusion, model, sources, mode, t, noise, kwargs2, clip_denoised)
    mixed = mix_latents(latents[0], latents[1], num_lambdas, mode)
    images = decode(diffusion, model, mixed, mode, t, noise_fn=noise_fn,
                    model_kwargs=_rows_kwargs(model_kwargs, len(mixed)), clip_denoised=clip_denoised)
    return {"images": images, "latents": mixed, "lambdas": mixing_lambdas(num_lambdas), "t": t}


def _rows_kwargs(model_kwargs, n):
    """Model arguments with a leading dimension of 1, expanded to n rows."""
    if not model_kwargs:
        return {}
    for k, v in model_kwargs.items():
        if v.shape[0] != 1:
            raise ValueError(f"model_kwargs[{k!r}] must have a leading dimension of 1 (one value "
                             f"for every row), got shape {tuple(v.shape)}")
    return {k: v.expand(n, *v.shape[1:]) for k, v in model_kwargs.items()}
