"""
16-bit helpers (the original's module path): fp16 conversion of a network's convolutions and the
mixed-precision trainer. Implementation: `guided_diffusion.models.fp16` and
`guided_diffusion.training.mixed_precision`.
"""

from .models.fp16 import (  # noqa: F401
    convert_module_to_f16,
    convert_module_to_f32,
    _CONV_TYPES,
)
from .training.mixed_precision import (  # noqa: F401
    check_overflow,
    get_param_groups_and_shapes,
    INITIAL_LOG_LOSS_SCALE,
    make_master_params,
    master_params_to_model_params,
    master_params_to_state_dict,
    MixedPrecisionTrainer,
    model_grads_to_master_grads,
    param_grad_or_zeros,
    state_dict_to_master_params,
    unflatten_master_params,
    zero_grad,
    zero_master_grads,
    _log,
    _logger,
    _logkv_mean,
)
from .runtime import logger  # noqa: F401  (the original module imported it)
