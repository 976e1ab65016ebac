"""
The three configuration enums of a Gaussian diffusion (re-exported by `gaussian_diffusion`), their
check, and the error raised for unknown schedule or sampler names.

The member values (1, 2, 3, ...) follow the declaration order of the reference implementation.
"""

import enum


class ModelMeanType(enum.Enum):
    """Which quantity the model predicts for the mean of p(x_{t-1} | x_t)."""

    PREVIOUS_X = enum.auto()  # the model predicts x_{t-1}
    START_X = enum.auto()  # the model predicts x_0
    EPSILON = enum.auto()  # the model predicts the noise epsilon


class ModelVarType(enum.Enum):
    """
    What is used as the variance of p(x_{t-1} | x_t).

    LEARNED_RANGE lets the model output an interpolation frac in [-1, 1] between
    FIXED_SMALL (the clipped posterior variance) and FIXED_LARGE (beta_t), in log space.
    """

    LEARNED = enum.auto()
    FIXED_SMALL = enum.auto()
    FIXED_LARGE = enum.auto()
    LEARNED_RANGE = enum.auto()

    def is_learned(self):
        """True when the model outputs 2 * C channels, the second half for the variance."""
        return self in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)


class LossType(enum.Enum):
    """The training objective."""

    MSE = enum.auto()  # raw MSE loss (plus the vb term when learning variances)
    RESCALED_MSE = enum.auto()  # MSE, with the vb term scaled by num_timesteps / 1000
    KL = enum.auto()  # the variational lower bound
    RESCALED_KL = enum.auto()  # the bound times num_timesteps, like RESCALED_MSE

    def is_vb(self):
        """True for the losses that are the variational bound alone."""
        return self == LossType.KL or self == LossType.RESCALED_KL


class UnknownNameError(ValueError, NotImplementedError):
    """
    An unknown schedule / sampler name. A ValueError (bad user input) that is also a
    NotImplementedError, which is what the reference raised, so old `except` clauses still work.
    """


def check_enum(value, enum_cls, name):
    """Raise a ValueError naming `name` and the members of `enum_cls` unless value is one."""
    if not isinstance(value, enum_cls):
        allowed = ", ".join(f"{enum_cls.__name__}.{m.name}" for m in enum_cls)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
