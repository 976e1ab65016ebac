"""
Guidance limited to an interval of noise levels (Kynkäänniemi et al. 2024, "Applying Guidance in
a Limited Interval Improves Sample and Distribution Quality in Diffusion Models").

`--guidance_interval lo,hi` names training timesteps (0 = least noise, T - 1 = most, T =
`--diffusion_steps`); guidance of either kind acts only at steps whose training timestep t has
lo <= t <= hi. Outside, classifier-free guidance falls back to its base scale and the classifier
gradient is not computed at all (`IntervalCondFn` returns None, which the diffusion's
`condition_mean` / `condition_score` take as "no shift").

The wrappers see timesteps as the network receives them: the training index, or t * 1000 / T as a
float when `rescale_timesteps` is set (respaced processes pass the original indices, see
`diffusion.respacing`). `GuidanceInterval` maps them back before testing.
"""

import torch as th

FLAG = "--guidance_interval"


def parse_guidance_interval(spec, num_train_steps):
    """
    Parse a `--guidance_interval` value.

    :param spec: "" (guidance at every step) or "lo,hi" with integers 0 <= lo <= hi <= T - 1.
    :param num_train_steps: T, the training process's number of steps.
    :return: None for "", else the pair (lo, hi).
    :raises ValueError: naming the flag, for a malformed pair, bounds outside [0, T - 1] or lo > hi.
    """
    spec = (spec or "").strip()
    if not spec:
        return None
    parts = [p.strip() for p in spec.split(",")]
    try:
        lo, hi = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{FLAG} must be two training timesteps 'lo,hi' like '200,700' "
                         f"(within [0, {num_train_steps - 1}]), got {spec!r}") from None
    if not (0 <= lo <= num_train_steps - 1 and 0 <= hi <= num_train_steps - 1):
        raise ValueError(f"{FLAG} {spec}: both ends must lie in [0, {num_train_steps - 1}] "
                         f"(--diffusion_steps is {num_train_steps})")
    if lo > hi:
        raise ValueError(f"{FLAG} {spec}: lo > hi; write the smaller timestep first ('{hi},{lo}')")
    return lo, hi


def training_timesteps(t, num_train_steps, rescaled):
    """
    :param t: [N] timesteps as the network receives them.
    :param num_train_steps: T of the training process.
    :param rescaled: whether `rescale_timesteps` scaled them to t * 1000 / T.
    :return: [N] int64 training timesteps.
    """
    if rescaled:
        return th.round(t.double() * (num_train_steps / 1000.0)).long()
    return t.long()


class GuidanceInterval:
    """
    The set of training timesteps lo <= t <= hi where guidance acts.

    :param lo: first guided training timestep.
    :param hi: last guided training timestep.
    :param num_train_steps: T of the training process.
    :param rescaled: whether the network receives t * 1000 / T (`rescale_timesteps`).
    """

    def __init__(self, lo, hi, num_train_steps, rescaled=False):
        self.lo, self.hi = int(lo), int(hi)
        self.num_train_steps = int(num_train_steps)
        self.rescaled = bool(rescaled)

    @classmethod
    def for_diffusion(cls, spec, diffusion):
        """
        Build from a `--guidance_interval` value for a (Spaced)GaussianDiffusion.

        :return: a GuidanceInterval, or None for "" (guidance everywhere).
        """
        steps = getattr(diffusion, "original_num_steps", diffusion.num_timesteps)
        bounds = parse_guidance_interval(spec, steps)
        if bounds is None:
            return None
        return cls(*bounds, num_train_steps=steps, rescaled=diffusion.rescale_timesteps)

    def contains(self, t):
        """
        :param t: [N] timesteps as the network receives them.
        :return: [N] bool, True where guidance acts.
        """
        steps = training_timesteps(t, self.num_train_steps, self.rescaled)
        return (steps >= self.lo) & (steps <= self.hi)

    def count_steps(self, diffusion):
        """:return: how many of the diffusion's sampling steps fall inside the interval."""
        steps = getattr(diffusion, "timestep_map", None) or range(diffusion.num_timesteps)
        return sum(1 for s in steps if self.lo <= s <= self.hi)

    def __repr__(self):
        return f"GuidanceInterval({self.lo}, {self.hi}, T={self.num_train_steps})"


def _rows(value, inside, n):
    """Select the guided rows of a per-row tensor argument; other values pass unchanged."""
    if th.is_tensor(value) and value.dim() > 0 and value.shape[0] == n:
        return value[inside]
    return value


class IntervalCondFn:
    """
    A `cond_fn` evaluated only inside a guidance interval.

    Called as cond_fn(x, t, **model_kwargs). Where no row of the batch is inside, the classifier
    is not called and None is returned (no shift). Where only some rows are, the gradient is
    computed for those rows alone and is zero for the others.

    Counters: `computed` (calls that evaluated the classifier gradient) and `skipped`.
    """

    def __init__(self, cond_fn, interval):
        self.cond_fn = cond_fn
        self.interval = interval
        self.computed = 0
        self.skipped = 0

    def __call__(self, x, t, **kwargs):
        """
        :param x: [N x C x ...] noisy inputs x_t.
        :param t: [N] timesteps as the network receives them.
        :return: the gradient (a float tensor like x) or None outside the interval.
        """
        inside = self.interval.contains(t)
        if not bool(inside.any()):
            self.skipped += 1
            return None
        self.computed += 1
        if bool(inside.all()):
            return self.cond_fn(x, t, **kwargs)
        n = x.shape[0]
        part = self.cond_fn(x[inside], t[inside], **{k: _rows(v, inside, n) for k, v in kwargs.items()})
        grad = th.zeros(x.shape, dtype=part.dtype, device=part.device)
        grad[inside] = part
        return grad
