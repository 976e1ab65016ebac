"""
Respacing: run a diffusion process on a subset of its timesteps (Nichol & Dhariwal 2021, Sec. 4).

The respaced process keeps the chosen alphas_cumprod values and recomputes betas from
consecutive ones; the model (and any cond_fn) still receives the ORIGINAL timestep indices,
rescaled relative to the original T when `rescale_timesteps` is set.
"""

import numpy as np
import torch as th

from .gaussian import GaussianDiffusion


def _parse_section_counts(section_counts):
    try:
        return [int(x) for x in section_counts.split(",")]
    except ValueError:
        raise ValueError(
            f"invalid timestep respacing {section_counts!r}: expected 'N', comma-separated "
            f"section counts like '10,15,20', or 'ddimN'"
        ) from None


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


def space_timesteps(num_timesteps, section_counts):
    """
    Create a set of timesteps to keep from an original diffusion process.

    The original T steps are divided into len(section_counts) equal sections (the first
    T % len(section_counts) sections one step longer); from each section, section_counts[i]
    steps are taken with a fractional stride (size - 1) / (count - 1), rounded with Python's
    round (half to even). E.g. 300 steps with "10,15,20": the first 100 steps strided down to
    10, the next 100 to 15, the final 100 to 20.

    With a string "ddimN", the fixed integer stride of the DDIM paper is used instead: the
    smallest stride i for which range(0, T, i) has exactly N elements.

    :param num_timesteps: the number of diffusion steps T of the original process.
    :param section_counts: a list of ints, or a string "N", "a,b,c" or "ddimN".
    :return: a set of diffusion step indices (ints in [0, T)) to keep.
    :raises ValueError: for an unparsable string, a negative count, a count larger than its
                        section, or a "ddimN" no integer stride can meet.
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = section_counts[len("ddim"):]
            if not desired.isdigit():
                raise ValueError(
                    f"invalid timestep respacing {section_counts!r}: 'ddim' must be followed "
                    f"by a step count, e.g. 'ddim25'"
                )
            return _ddim_stride_steps(num_timesteps, int(desired))
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

        base_diffusion = GaussianDiffusion(**kwargs)  # pylint: disable=missing-kwoa
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

    def _scale_timesteps(self, t):
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
