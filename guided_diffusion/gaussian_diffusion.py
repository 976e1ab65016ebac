"""
Gaussian diffusion (the original's module path): schedules, enums and the `GaussianDiffusion` class.
Implementation: the `guided_diffusion.diffusion` package (map in its `__init__`).
"""

from .diffusion.gaussian import (  # noqa: F401
    GaussianDiffusion,
)
from .diffusion.schedule import (  # noqa: F401
    betas_for_alpha_bar,
    diffusion_coefficients,
    extract_into_tensor,
    extract_into_tensor as _extract_into_tensor,
    fixed_large_variance,
    get_named_beta_schedule,
    validate_betas,
)
from .diffusion.types import (  # noqa: F401
    check_enum as _check_enum,
    LossType,
    ModelMeanType,
    ModelVarType,
)
