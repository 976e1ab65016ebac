"""
Reverse-process steps (ancestral DDPM and DDIM) and the one loop that runs either of them.

Every function takes the diffusion object first and only uses its public surface
(`p_mean_variance`, `condition_mean`, `condition_score`, `predict_eps_from_xstart`, the
coefficient tables), so the timestep remapping of `SpacedDiffusion` applies unchanged.

Random draws happen in the reference order so that seeded runs match it bit for bit:
- `p_sample`: model call, then the step noise (also at t = 0), then `cond_fn`;
- `ddim_sample`: model call, then `cond_fn`, then the step noise (also for eta = 0);
- loops: the initial `torch.randn(*shape)` when no `noise` is given, then one step per t.

`noise_fn`: a callable `noise_fn(x) -> tensor like x` that replaces
`torch.randn_like(x)` for the step noise, e.g. to draw per-sample seeded noise. None keeps the
reference behaviour.
"""

import torch as th
from tqdm.auto import tqdm

from .schedule import extract_into_tensor


def nonzero_mask(t, x):
    """
    A [N, 1, ...] float mask that is 0 where t == 0 (no noise is added at the last step).

    :param t: the timesteps, shape [N].
    :param x: the batch the mask multiplies, shape [N, ...].
    """
    return (t != 0).float().view(-1, *([1] * (len(x.shape) - 1)))


def draw_step_noise(x, noise_fn=None):
    """The step noise: `noise_fn(x)` when given, else `torch.randn_like(x)`."""
    if noise_fn is None:
        return th.randn_like(x)
    noise = noise_fn(x)
    if noise.shape != x.shape:
        raise ValueError(
            f"noise_fn returned shape {tuple(noise.shape)}, expected {tuple(x.shape)}"
        )
    return noise


def p_sample(diffusion, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
             model_kwargs=None, noise_fn=None):
    """
    One ancestral step: draw x_{t-1} ~ p(x_{t-1} | x_t) (Algorithm 2 of Ho et al.).

    :return: dict with "sample" (x_{t-1}, like x) and "pred_xstart" (like x).
    """
    out = diffusion.p_mean_variance(
        model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs
    )
    noise = draw_step_noise(x, noise_fn)
    if cond_fn is not None:
        out["mean"] = diffusion.condition_mean(cond_fn, out, x, t, model_kwargs=model_kwargs)
    sample = out["mean"] + nonzero_mask(t, x) * th.exp(0.5 * out["log_variance"]) * noise
    return {"sample": sample, "pred_xstart": out["pred_xstart"]}


def ddim_sample(diffusion, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                model_kwargs=None, eta=0.0, noise_fn=None):
    """
    One DDIM step from x_t to x_{t-1} (Song et al. 2021, Eq. 12), stochastic when eta > 0.

    :return: dict with "sample" (x_{t-1}, like x) and "pred_xstart" (like x).
    """
    out = diffusion.p_mean_variance(
        model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs
    )
    if cond_fn is not None:
        out = diffusion.condition_score(cond_fn, out, x, t, model_kwargs=model_kwargs)
    # Re-derive eps from pred_xstart: it differs from the model output after clipping, and the
    # model may predict x_0 or x_{t-1} instead.
    eps = diffusion.predict_eps_from_xstart(x, t, out["pred_xstart"])
    alpha_bar = extract_into_tensor(diffusion.alphas_cumprod, t, x.shape)
    alpha_bar_prev = extract_into_tensor(diffusion.alphas_cumprod_prev, t, x.shape)
    sigma = (
        eta
        * th.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar))
        * th.sqrt(1 - alpha_bar / alpha_bar_prev)
    )
    noise = draw_step_noise(x, noise_fn)
    mean_pred = (
        out["pred_xstart"] * th.sqrt(alpha_bar_prev)
        + th.sqrt(1 - alpha_bar_prev - sigma**2) * eps
    )
    sample = mean_pred + nonzero_mask(t, x) * sigma * noise
    return {"sample": sample, "pred_xstart": out["pred_xstart"]}


def ddim_reverse_sample(
    diffusion, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None, eta=0.0
):
    """
    One deterministic DDIM step forward in time, from x_t to x_{t+1} (Eq. 12 reversed).

    :return: dict with "sample" (x_{t+1}, like x) and "pred_xstart" (like x).
    :raises ValueError: when eta != 0 (the reverse ODE only exists for the deterministic path).
    """
    if eta != 0.0:
        raise ValueError(f"ddim_reverse_sample needs eta == 0.0 (deterministic path), got {eta}")
    out = diffusion.p_mean_variance(
        model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs
    )
    eps = diffusion.predict_eps_from_xstart(x, t, out["pred_xstart"])
    alpha_bar_next = extract_into_tensor(diffusion.alphas_cumprod_next, t, x.shape)
    mean_pred = out["pred_xstart"] * th.sqrt(alpha_bar_next) + th.sqrt(1 - alpha_bar_next) * eps
    return {"sample": mean_pred, "pred_xstart": out["pred_xstart"]}


def _default_device(model, noise):
    params = getattr(model, "parameters", None)
    if callable(params):
        first = next(iter(params()), None)
        if first is not None:
            return first.device
    if noise is not None:
        return noise.device
    return th.device("cpu")


def sample_loop_progressive(
    num_timesteps, step, model, shape, noise=None, device=None, progress=False
):
    """
    The one reverse-process loop: walk t from T - 1 down to 0 and yield each step's output.

    Runs under `torch.no_grad()` (a `cond_fn` that needs gradients enables them itself).

    :param num_timesteps: T, the number of steps of the (possibly respaced) process.
    :param step: a callable `step(x, t) -> dict` with at least "sample" (e.g. a bound
                 `p_sample` or `ddim_sample`).
    :param model: the model, only used to find the default device (its first parameter's).
    :param shape: the shape of the samples, (N, C, H, W); a tuple or list.
    :param noise: optional starting x_T, else drawn with `torch.randn(*shape, device=device)`.
    :param device: the device for x_T and the timesteps; defaults to the model's device.
    :param progress: show a tqdm progress bar.
    :return: a generator of the step dicts.
    """
    if not isinstance(shape, (tuple, list)):
        raise ValueError(f"shape must be a tuple or list like (N, C, H, W), got {shape!r}")
    if device is None:
        device = _default_device(model, noise)
    if noise is not None:
        img = noise
    else:
        img = th.randn(*shape, device=device)
    indices = list(range(num_timesteps))[::-1]
    if progress:
        indices = tqdm(indices)
    for i in indices:
        t = th.tensor([i] * shape[0], device=device)
        with th.no_grad():
            out = step(img, t)
            yield out
            img = out["sample"]


def final_sample(progressive):
    """Exhaust a progressive generator and return the last "sample"."""
    final = None
    for out in progressive:
        final = out
    return final["sample"]
