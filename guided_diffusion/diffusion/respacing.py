"""
Respacing: run a diffusion process on a subset of its timesteps (Nichol & Dhariwal 2021, Sec. 4).

The respaced process keeps the chosen alphas_cumprod values and recomputes betas from
consecutive ones; the model (and any cond_fn) still receives the ORIGINAL timestep indices,
rescaled relative to the original T when `rescale_timesteps` is set.
"""

import numpy as np
import torch as th

from .gaussian import GaussianDiffusion


# Prefixes of grids uniform in a noise-level coordinate u(abar), increasing in t: the half
# log-SNR -lambda = log(sigma / alpha) (Lu et al. 2022), and sigma^(1 / rho) with the VE noise
# level sigma = sigma_t / alpha_t and rho = 7 (Karras et al. 2022, Eq. 5).
KARRAS_RHO = 7.0
NOISE_LEVEL_GRIDS = {
    "logsnr": lambda abar: 0.5 * (np.log1p(-abar) - np.log(abar)),
    "karras": lambda abar: ((1 - abar) / abar) ** (0.5 / KARRAS_RHO),
}


def _parse_section_counts(section_counts):
    try:
        return [int(x) for x in section_counts.split(",")]
    except ValueError:
        raise ValueError(
            f"invalid timestep respacing {section_counts!r}: expected 'N', comma-separated "
            f"section counts like '10,15,20', 'ddimN', 'logsnrN' or 'karrasN'"
        ) from None


def _parse_prefixed_count(section_counts, prefix):
    desired = section_counts[len(prefix):]
    if not desired.isdigit():
        raise ValueError(
            f"invalid timestep respacing {section_counts!r}: '{prefix}' must be followed by a "
            f"step count, e.g. '{prefix}25'"
        )
    return int(desired)


def _ddim_stride_steps(num_timesteps, desired_count):
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == desired_count:
            return set(range(0, num_timesteps, stride))
    achievable = sorted({len(range(0, num_timesteps, i)) for i in range(1, num_timesteps)})
    lower = [n for n in achievable if n < desired_count][-1:]
    higher = [n for n in achievable if n > desired_count][:1]
    nearest = " or ".join(str(n) for n in lower + higher) or "none"
    raise ValueError(
        f"cannot create exactly {desired_count} steps with an integer stride over "
        f"{num_timesteps} diffusion steps ('ddim{desired_count}'); nearest achievable "
        f"counts: {nearest}"
    )


def _distinct_increasing(steps, num_timesteps):
    """Push rounded indices apart into strictly increasing ints in [0, num_timesteps)."""
    steps = list(steps)
    for k in range(1, len(steps)):
        steps[k] = max(steps[k], steps[k - 1] + 1)
    steps[-1] = min(steps[-1], num_timesteps - 1)
    for k in range(len(steps) - 2, -1, -1):
        steps[k] = min(steps[k], steps[k + 1] - 1)
    return steps


def _capped_coordinate(u, count):
    """
    u with every per-timestep increment capped at delta, where delta is the spacing that
    `count` uniform points get in the capped coordinate (bisection on delta). Increments above
    delta (e.g. the last step of the cosine schedule, whose beta is clipped) then span one grid
    step instead of drawing several grid points onto the same few timesteps.

    :param u: float64 [T], strictly increasing.
    :return: float64 [T], starting at 0.
    """
    du = np.diff(u)
    lo, hi = 0.0, float(u[-1] - u[0])
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.minimum(du, mid).sum() > (count - 1) * mid:
            lo = mid
        else:
            hi = mid
    return np.concatenate([[0.0], np.cumsum(np.minimum(du, lo))])


def noise_level_steps(betas, desired_count, name):
    """
    Timesteps uniform in the noise-level coordinate u = NOISE_LEVEL_GRIDS[name](abar_t): the
    timesteps nearest `desired_count` points uniform from u(0) to u(T - 1), where a single
    timestep whose u-increment exceeds the spacing counts as one spacing (see
    `_capped_coordinate`). Targets that still share a timestep are pushed apart, so exactly
    `desired_count` distinct timesteps come back, always including 0 and T - 1.

    :param betas: the ORIGINAL process's betas, float64 [T].
    :param desired_count: the number of timesteps, 2 <= count <= T.
    :param name: a key of NOISE_LEVEL_GRIDS.
    :return: a set of ints in [0, T).
    """
    abar = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    num_timesteps = len(abar)
    if not 2 <= desired_count <= num_timesteps:
        raise ValueError(
            f"'{name}{desired_count}' needs 2 to {num_timesteps} steps (the grid spans the "
            f"{num_timesteps} diffusion steps end to end); got {desired_count}"
        )
    u = _capped_coordinate(NOISE_LEVEL_GRIDS[name](abar), desired_count)
    targets = np.linspace(u[0], u[-1], desired_count)
    upper = np.clip(np.searchsorted(u, targets), 1, num_timesteps - 1)
    nearest = np.where(targets - u[upper - 1] <= u[upper] - targets, upper - 1, upper)
    return set(_distinct_increasing(nearest.tolist(), num_timesteps))


def space_timesteps(num_timesteps, section_counts, betas=None):
    """
    Create a set of timesteps to keep from an original diffusion process.

    The original T steps are divided into len(section_counts) equal sections (the first
    T % len(section_counts) sections one step longer); from each section, section_counts[i]
    steps are taken with a fractional stride (size - 1) / (count - 1), rounded with Python's
    round (half to even). E.g. 300 steps with "10,15,20": the first 100 steps strided down to
    10, the next 100 to 15, the final 100 to 20.

    With a string "ddimN", the fixed integer stride of the DDIM paper is used instead: the
    smallest stride i for which range(0, T, i) has exactly N elements. "logsnrN" takes N
    timesteps uniform in log-SNR and "karrasN" N uniform in sigma^(1/7) (see
    `noise_level_steps`); both need the schedule's `betas`.

    :param num_timesteps: the number of diffusion steps T of the original process.
    :param section_counts: a list of ints, or a string "N", "a,b,c", "ddimN", "logsnrN" or
                           "karrasN".
    :param betas: the original float64 betas [T]; required by "logsnrN" and "karrasN" only.
    :return: a set of diffusion step indices (ints in [0, T)) to keep.
    :raises ValueError: for an unparsable string, a negative count, a count larger than its
                        section, a "ddimN" no integer stride can meet, or a noise-level grid
                        without betas or with N outside [2, T].
    """
    if isinstance(section_counts, str):
        named = _named_grid_steps(num_timesteps, section_counts, betas)
        if named is not None:
            return named
        section_counts = _parse_section_counts(section_counts)
    section_counts = [int(c) for c in section_counts]
    if not section_counts:
        raise ValueError("section_counts must contain at least one count")
    size_per = num_timesteps // len(section_counts)
    extra = num_timesteps % len(section_counts)
    start_idx = 0
    all_steps = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if section_count < 0 or size < section_count:
            raise ValueError(
                f"cannot take {section_count} steps from section {i} of {size} steps "
                f"({num_timesteps} diffusion steps in {len(section_counts)} sections); "
                f"allowed counts for it: 0 to {size}"
            )
        if section_count <= 1:
            frac_stride = 1
        else:
            frac_stride = (size - 1) / (section_count - 1)
        # Accumulate the float index (not i * stride) to round exactly like the reference.
        cur_idx = 0.0
        for _ in range(section_count):
            all_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        start_idx += size
    return set(all_steps)


def _named_grid_steps(num_timesteps, spec, betas):
    """The steps of a "ddimN", "logsnrN" or "karrasN" string; None for any other string."""
    if spec.startswith("ddim"):
        return _ddim_stride_steps(num_timesteps, _parse_prefixed_count(spec, "ddim"))
    for name in NOISE_LEVEL_GRIDS:
        if spec.startswith(name):
            desired = _parse_prefixed_count(spec, name)
            if betas is None or len(betas) != num_timesteps:
                raise ValueError(
                    f"timestep respacing {spec!r} is uniform in a noise level, so "
                    f"space_timesteps needs the schedule: pass betas= (length {num_timesteps})"
                )
            return noise_level_steps(betas, desired, name)
    return None


class SpacedDiffusion(GaussianDiffusion):
    """
    A diffusion process which can skip steps in a base diffusion process.

    :param use_timesteps: a collection (sequence or set) of timesteps from the original
                          diffusion process to retain.
    :param kwargs: the kwargs to create the base diffusion process (betas of the ORIGINAL
                   process, model_mean_type, model_var_type, loss_type, rescale_timesteps).
    """

    def __init__(self, use_timesteps, **kwargs):
        self.use_timesteps = set(use_timesteps)
        self.timestep_map = []
        self.original_num_steps = len(kwargs["betas"])

        bad = sorted(t for t in self.use_timesteps if not 0 <= t < self.original_num_steps)
        if bad or not self.use_timesteps:
            raise ValueError(
                f"use_timesteps must be a non-empty set of indices in [0, "
                f"{self.original_num_steps}); got out-of-range {bad[:5]}"
                if bad
                else "use_timesteps must not be empty"
            )

        base_diffusion = GaussianDiffusion(**kwargs)
        last_alpha_cumprod = 1.0
        new_betas = []
        for i, alpha_cumprod in enumerate(base_diffusion.alphas_cumprod):
            if i in self.use_timesteps:
                new_betas.append(1 - alpha_cumprod / last_alpha_cumprod)
                last_alpha_cumprod = alpha_cumprod
                self.timestep_map.append(i)
        kwargs["betas"] = np.array(new_betas)
        super().__init__(**kwargs)

    def p_mean_variance(self, model, *args, **kwargs):  # pylint: disable=signature-differs
        return super().p_mean_variance(self._wrap_model(model), *args, **kwargs)

    def training_losses(self, model, *args, **kwargs):  # pylint: disable=signature-differs
        return super().training_losses(self._wrap_model(model), *args, **kwargs)

    def condition_mean(self, cond_fn, *args, **kwargs):
        return super().condition_mean(self._wrap_model(cond_fn), *args, **kwargs)

    def condition_score(self, cond_fn, *args, **kwargs):
        return super().condition_score(self._wrap_model(cond_fn), *args, **kwargs)

    def _wrap_model(self, model):
        if isinstance(model, _WrappedModel):
            return model
        return _WrappedModel(
            model, self.timestep_map, self.rescale_timesteps, self.original_num_steps
        )

    def scale_timesteps(self, t):
        # Scaling is done by the wrapped model, relative to the original T.
        return t


class _WrappedModel:
    """
    Calls `model` (or a cond_fn) with the original timestep indices of the respaced steps,
    scaled by 1000 / original_num_steps when `rescale_timesteps` is set.
    """

    def __init__(self, model, timestep_map, rescale_timesteps, original_num_steps):
        self.model = model
        self.timestep_map = timestep_map
        self.rescale_timesteps = rescale_timesteps
        self.original_num_steps = original_num_steps

    def __call__(self, x, ts, **kwargs):
        """
        :param x: the model input, [N x C x ...].
        :param ts: the respaced timestep indices, shape [N] (int64).
        """
        map_tensor = th.tensor(self.timestep_map, device=ts.device, dtype=ts.dtype)
        new_ts = map_tensor[ts]
        if self.rescale_timesteps:
            new_ts = new_ts.float() * (1000.0 / self.original_num_steps)
        return self.model(x, new_ts, **kwargs)
