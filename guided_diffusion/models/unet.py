"""
The diffusion UNet (`UNetModel`), its super-resolution variant (`SuperResModel`) and,
re-exported, the classifier (`EncoderUNetModel`) and all building blocks, so that
`from guided_diffusion.unet import ...` works as with the original.

State-dict keys and their order equal the original's (see tests/data/checkpoints).
"""

import torch as th
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "UNetModel",
    "SuperResModel",
    "EncoderUNetModel",
    "TimestepBlock",
    "TimestepEmbedSequential",
    "Upsample",
    "Downsample",
    "ResBlock",
    "AttentionBlock",
    "QKVAttentionLegacy",
    "QKVAttention",
    "AttentionPool2d",
    "count_flops_attn",
    "convert_module_to_f16",
    "convert_module_to_f32",
]

from .attention import (  # noqa: F401  (re-exported public names)
    AttentionBlock,
    AttentionPool2d,
    QKVAttention,
    QKVAttentionLegacy,
    count_flops_attn,
)
from .encoder import EncoderUNetModel  # noqa: F401  (re-exported)
from .fp16 import convert_module_to_f16, convert_module_to_f32
from .layers import (  # noqa: F401  (the original module exposed these names too)
    avg_pool_nd,
    checkpoint,
    conv_nd,
    linear,
    normalization,
    timestep_embedding,
    zero_module,
)
from .blocks import (  # noqa: F401  (re-exported public names)
    Downsample,
    ResBlock,
    TimestepBlock,
    TimestepEmbedSequential,
    Upsample,
    build_input_and_middle,
    time_embed_mlp,
)


class UNetModel(nn.Module):
    """
    The full UNet model with attention and timestep embedding.

    :param image_size: the input side (recorded; the network is fully convolutional).
    :param in_channels: channels in the input tensor.
    :param model_channels: base channel count for the model.
    :param out_channels: channels in the output tensor.
    :param num_res_blocks: number of residual blocks per downsample.
    :param attention_resolutions: a collection of downsample rates (e.g. {2, 4}) at which
        attention is used.
    :param dropout: the dropout probability.
    :param channel_mult: channel multiplier for each level of the UNet.
    :param conv_resample: if True, use learned convolutions for up/downsampling.
    :param dims: whether the signal is 1D, 2D, or 3D.
    :param num_classes: if specified (int), the model is class-conditional with that many classes.
    :param use_checkpoint: use gradient checkpointing to reduce memory usage.
    :param use_fp16: run the torso in float16 (after `convert_to_fp16()`).
    :param num_heads: attention heads in each attention layer.
    :param num_head_channels: if not -1, a fixed channel width per head (overrides num_heads).
    :param num_heads_upsample: heads in the upsampling attention layers (-1: num_heads).
    :param use_scale_shift_norm: use a FiLM-like (AdaGN) conditioning mechanism.
    :param resblock_updown: use residual blocks for up/downsampling.
    :param use_new_attention_order: use QKVAttention (q, k, v split before heads).
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
        num_classes=None,
        use_checkpoint=False,
        use_fp16=False,
        num_heads=1,
        num_head_channels=-1,
        num_heads_upsample=-1,
        use_scale_shift_norm=False,
        resblock_updown=False,
        use_new_attention_order=False,
    ):
        super().__init__()
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads

        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = attention_resolutions
        self.dropout = dropout
        self.channel_mult = channel_mult
        self.conv_resample = conv_resample
        self.num_classes = num_classes
        self.use_checkpoint = use_checkpoint
        self.dtype = th.float16 if use_fp16 else th.float32
        self.num_heads = num_heads
        self.num_head_channels = num_head_channels
        self.num_heads_upsample = num_heads_upsample

        time_embed_dim = model_channels * 4
        self.time_embed = time_embed_mlp(model_channels, time_embed_dim)
        if self.num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, time_embed_dim)

        res_kw = dict(dims=dims, use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm)
        (
            self.input_blocks,
            self.middle_block,
            input_block_chans,
            self._feature_size,
            ch,
            ds,
        ) = build_input_and_middle(
            in_channels=in_channels,
            model_channels=model_channels,
            time_embed_dim=time_embed_dim,
            num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions,
            dropout=dropout,
            channel_mult=channel_mult,
            conv_resample=conv_resample,
            use_new_attention_order=use_new_attention_order,
            num_heads=num_heads,
            num_head_channels=num_head_channels,
            resblock_updown=resblock_updown,
            **res_kw,
        )
        input_ch = int(channel_mult[0] * model_channels)

        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                ich = input_block_chans.pop()
                out_ch = int(model_channels * mult)
                layers = [ResBlock(ch + ich, time_embed_dim, dropout, out_channels=out_ch, **res_kw)]
                ch = out_ch
                if ds in attention_resolutions:
                    layers.append(
                        AttentionBlock(
                            ch,
                            use_checkpoint=use_checkpoint,
                            num_heads=num_heads_upsample,
                            num_head_channels=num_head_channels,
                            use_new_attention_order=use_new_attention_order,
                        )
                    )
                if level and i == num_res_blocks:
                    if resblock_updown:
                        up = ResBlock(ch, time_embed_dim, dropout, out_channels=ch, up=True, **res_kw)
                        layers.append(up)
                    else:
                        layers.append(Upsample(ch, conv_resample, dims=dims, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
                self._feature_size += ch

        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(conv_nd(dims, input_ch, out_channels, 3, padding=1)),
        )

    def convert_to_fp16(self):
        """Convert the convolutions of the torso (input, middle, output blocks) to float16."""
        self.input_blocks.apply(convert_module_to_f16)
        self.middle_block.apply(convert_module_to_f16)
        self.output_blocks.apply(convert_module_to_f16)

    def convert_to_fp32(self):
        """Convert the convolutions of the torso back to float32."""
        self.input_blocks.apply(convert_module_to_f32)
        self.middle_block.apply(convert_module_to_f32)
        self.output_blocks.apply(convert_module_to_f32)

    def forward(self, x, timesteps, y=None):
        """
        Apply the model to an input batch.

        :param x: an [N x C x ...] tensor of inputs.
        :param timesteps: a 1-D batch of timesteps.
        :param y: an [N] tensor of labels, if class-conditional.
        :return: an [N x C_out x ...] tensor of outputs.
        """
        if self.num_classes is None and y is not None:
            raise ValueError("y (class labels) was given but the model is not class-conditional")
        if self.num_classes is not None:
            if y is None:
                raise ValueError(
                    f"the model is class-conditional ({self.num_classes} classes) and needs y labels"
                )
            if tuple(y.shape) != (x.shape[0],):
                raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")

        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))  # [N, 4mc]
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)

        hs = []
        h = x.type(self.dtype)
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = th.cat([h, hs.pop()], dim=1)
            h = module(h, emb)
        h = h.type(x.dtype)
        return self.out(h)


class SuperResModel(UNetModel):
    """
    A UNet that performs super-resolution: conditioned on a low-resolution image that is
    bilinearly upsampled to the input size and concatenated on channels.
    Constructor arguments are those of UNetModel, with in_channels the image channels.
    """

    def __init__(self, image_size, in_channels, *args, **kwargs):
        super().__init__(image_size, in_channels * 2, *args, **kwargs)

    def forward(self, x, timesteps, low_res=None, **kwargs):
        """
        :param x: an [N x C x H x W] tensor of noisy high-resolution inputs.
        :param timesteps: a 1-D batch of timesteps.
        :param low_res: an [N x C x h x w] tensor of low-resolution images.
        """
        if low_res is None:
            raise ValueError("SuperResModel needs the low_res keyword argument")
        _, _, new_height, new_width = x.shape
        upsampled = F.interpolate(low_res, (new_height, new_width), mode="bilinear")
        x = th.cat([x, upsampled], dim=1)
        return super().forward(x, timesteps, **kwargs)

