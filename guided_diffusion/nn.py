"""
Neural-network helpers (the original's module path). Implementation: `guided_diffusion.models.layers`.
"""

from .models.layers import (  # noqa: F401
    avg_pool_nd,
    checkpoint,
    conv_nd,
    GroupNorm32,
    linear,
    mean_flat,
    normalization,
    scale_module,
    SiLU,
    timestep_embedding,
    update_ema,
    zero_module,
)
