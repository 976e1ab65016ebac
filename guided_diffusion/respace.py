"""
Respacing (the original's module path): `space_timesteps` and `SpacedDiffusion`.
Implementation: `guided_diffusion.diffusion.respacing`.
"""

from .diffusion.gaussian import (  # noqa: F401
    GaussianDiffusion,
)
from .diffusion.respacing import (  # noqa: F401
    space_timesteps,
    SpacedDiffusion,
    _ddim_stride_steps,
    _parse_section_counts,
    _WrappedModel,
)
