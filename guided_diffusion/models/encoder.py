"""
The classifier network: the encoder half of the UNet followed by a pooling head.
"""

import torch as th
import torch.nn as nn

from .attention import AttentionPool2d
from .fp16 import convert_module_to_f16, convert_module_to_f32
from .layers import conv_nd, normalization, timestep_embedding, zero_module
from .torso import init_torso, torso_args

POOLS = ("adaptive", "attention", "spatial", "spatial_v2")


class EncoderUNetModel(nn.Module):
    """
    The half UNet model with attention and timestep embedding, used as a noisy-image
    classifier. Arguments are those of UNetModel (without num_classes), plus:

    :param pool: the head: "adaptive" (norm, SiLU, global average pool, zero 1x1 conv),
        "attention" (norm, SiLU, AttentionPool2d; needs num_head_channels), "spatial"
        (means of every block output -> Linear 2048, ReLU, Linear) or "spatial_v2"
        (same with norm + SiLU instead of ReLU).
    """

    def __init__(
        self,
        image_size,
        in_channels,
        model_channels,
        out_channels,
        num_res_blocks,
        attention_resolutions,
        dropout=0,
        channel_mult=(1, 2, 4, 8),
        conv_resample=True,
        dims=2,
        use_checkpoint=False,
        use_fp16=False,
        num_heads=1,
        num_head_channels=-1,
        num_heads_upsample=-1,
        use_scale_shift_norm=False,
        resblock_updown=False,
        use_new_attention_order=False,
        pool="adaptive",
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; expected one of {', '.join(POOLS)}")
        if pool == "attention" and num_head_channels == -1:
            raise ValueError("pool 'attention' needs num_head_channels (got -1)")
        _input_block_chans, ch, ds = init_torso(self, **torso_args(locals()))
        self.pool = pool
        if pool == "adaptive":
            self.out = nn.Sequential(
                normalization(ch),
                nn.SiLU(),
                nn.AdaptiveAvgPool2d((1, 1)),
                zero_module(conv_nd(dims, ch, out_channels, 1)),
                nn.Flatten(),
            )
        elif pool == "attention":
            self.out = nn.Sequential(
                normalization(ch),
                nn.SiLU(),
                AttentionPool2d((image_size // ds), ch, num_head_channels, out_channels),
            )
        elif pool == "spatial":
            self.out = nn.Sequential(
                nn.Linear(self._feature_size, 2048),
                nn.ReLU(),
                nn.Linear(2048, self.out_channels),
            )
        else:  # spatial_v2
            self.out = nn.Sequential(
                nn.Linear(self._feature_size, 2048),
                normalization(2048),
                nn.SiLU(),
                nn.Linear(2048, self.out_channels),
            )

    def convert_to_fp16(self):
        """Convert the convolutions of the torso (input and middle blocks) to float16."""
        self.input_blocks.apply(convert_module_to_f16)
        self.middle_block.apply(convert_module_to_f16)

    def convert_to_fp32(self):
        """Convert the convolutions of the torso back to float32."""
        self.input_blocks.apply(convert_module_to_f32)
        self.middle_block.apply(convert_module_to_f32)

    def forward(self, x, timesteps):
        """
        Apply the model to an input batch.

        :param x: an [N x C x H x W] tensor of inputs.
        :param timesteps: a 1-D batch of timesteps.
        :return: an [N x out_channels] tensor of logits.
        """
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        spatial = self.pool.startswith("spatial")
        results = []
        h = x.type(self.dtype)
        for module in self.input_blocks:
            h = module(h, emb)
            if spatial:
                results.append(h.type(x.dtype).mean(dim=(2, 3)))
        h = self.middle_block(h, emb)
        if spatial:
            results.append(h.type(x.dtype).mean(dim=(2, 3)))
            h = th.cat(results, dim=-1)  # [N, feature_size]
            return self.out(h)
        h = h.type(x.dtype)
        return self.out(h)
