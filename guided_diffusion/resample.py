"""
Timestep samplers for training (the original's module path).
Implementation: `guided_diffusion.diffusion.timestep_sampler`.
"""

from .diffusion.timestep_sampler import (  # noqa: F401
    create_named_schedule_sampler,
    LossAwareSampler,
    LossSecondMomentResampler,
    SCHEDULE_SAMPLERS,
    ScheduleSampler,
    UniformSampler,
)
from .diffusion.types import (  # noqa: F401
    UnknownNameError,
)
