"""
The networks (the original's module path): `UNetModel`, `SuperResModel`, `EncoderUNetModel` and their
blocks. Implementation: the `guided_diffusion.models` package.
"""

from .models.attention import (  # noqa: F401
    AttentionBlock,
    AttentionPool2d,
    count_flops_attn,
    QKVAttention,
    QKVAttentionLegacy,
)
from .models.blocks import (  # noqa: F401
    Downsample,
    ResBlock,
    TimestepBlock,
    TimestepEmbedSequential,
    Upsample,
)
from .models.encoder import (  # noqa: F401
    EncoderUNetModel,
)
from .models.fp16 import (  # noqa: F401
    convert_module_to_f16,
    convert_module_to_f32,
)
from .models.layers import (  # noqa: F401
    avg_pool_nd,
    checkpoint,
    conv_nd,
    linear,
    normalization,
    timestep_embedding,
    zero_module,
)
from .models.torso import (  # noqa: F401
    build_input_and_middle,
    time_embed_mlp,
)
from .models.unet import (  # noqa: F401
    SuperResModel,
    UNetModel,
)
