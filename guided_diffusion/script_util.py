"""
Defaults, flags and factories (the original's module path).
Implementation: the `guided_diffusion.config` package.
"""

from .config.defaults import (  # noqa: F401
    CHANNEL_MULT_BY_SIZE,
    classifier_and_diffusion_defaults,
    classifier_defaults,
    CLASSIFIER_HEAD_CHANNELS,
    diffusion_defaults,
    model_and_diffusion_defaults,
    NUM_CLASSES,
    SR_CHANNEL_MULT_BY_SIZE,
    sr_model_and_diffusion_defaults,
    _SR_EXCLUDED,
)
from .config.factory import (  # noqa: F401
    create_classifier,
    create_classifier_and_diffusion,
    create_gaussian_diffusion,
    create_model,
    create_model_and_diffusion,
    sr_create_model,
    sr_create_model_and_diffusion,
    _attention_ds,
    _channel_mult,
    _check_classifier_heads,
)
from .config.flags import (  # noqa: F401
    add_dict_to_argparser,
    args_to_dict,
    parse_list_flag,
    str2bool,
    _FALSE,
    _TRUE,
)
from .models.encoder import (  # noqa: F401
    EncoderUNetModel,
)
from .models.unet import (  # noqa: F401
    SuperResModel,
    UNetModel,
)
