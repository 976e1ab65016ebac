"""
The diffusion UNet (`UNetModel`) and its super-resolution variant (`SuperResModel`).

State-dict keys and their order equal the original's (see tests/data/checkpoints).
"""

import torch as th
import torch.nn as nn
import torch.nn.functional as F

from .attention import AttentionBlock
from .blocks import ResBlock, TimestepEmbedSequential, Upsample
from .fp16 import convert_module_to_f16, convert_module_to_f32
from .layers import conv_nd, normalization, timestep_embedding, zero_module
from .torso import init_torso, torso_args


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
    :param null_class: with num_classes, add the null label `num_classes` (a last label embedding
        row, for classifier-free guidance): labels then lie in [0, num_classes], and
        `self.null_label` is num_classes (None otherwise).
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
        null_class=False,
    ):
        super().__init__()
        if null_class and num_classes is None:
            raise ValueError("null_class needs a class-conditional model (num_classes)")
        rows = num_classes + 1 if null_class else num_classes
        input_block_chans, ch, ds = init_torso(self, **torso_args(dict(locals(), num_classes=rows)))
        self.num_classes = num_classes
        self.null_label = num_classes if null_class else None
        ch = self._build_output_blocks(
            input_block_chans, ch, ds, dims=dims, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown, use_new_attention_order=use_new_attention_order,
        )
        self.out = nn.Sequential(
            normalization(ch),
            nn.SiLU(),
            zero_module(conv_nd(dims, ch, out_channels, 3, padding=1)),
        )

    def _build_output_blocks(
        self, input_block_chans, ch, ds, *, dims, use_scale_shift_norm, resblock_updown,
        use_new_attention_order,
    ):
        """
        Add `output_blocks`, the mirror of the input blocks: each level takes num_res_blocks + 1
        ResBlocks over the skip connection (popped from `input_block_chans`), attention where
        the downsample rate `ds` is listed, and an upsample at the end of every level but the
        last. The other settings are those `init_torso` recorded on self.

        :return: the channels of the last output block.
        """
        res_kw = dict(dims=dims, use_checkpoint=self.use_checkpoint, use_scale_shift_norm=use_scale_shift_norm)
        time_embed_dim = self.model_channels * 4
        dropout = self.dropout
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(self.channel_mult))[::-1]:
            for i in range(self.num_res_blocks + 1):
                ich = input_block_chans.pop()
                out_ch = int(self.model_channels * mult)
                layers = [ResBlock(ch + ich, time_embed_dim, dropout, out_channels=out_ch, **res_kw)]
                ch = out_ch
                if ds in self.attention_resolutions:
                    layers.append(
                        AttentionBlock(
                            ch,
                            use_checkpoint=self.use_checkpoint,
                            num_heads=self.num_heads_upsample,
                            num_head_channels=self.num_head_channels,
                            use_new_attention_order=use_new_attention_order,
                        )
                    )
                if level and i == self.num_res_blocks:
                    if resblock_updown:
                        up = ResBlock(ch, time_embed_dim, dropout, out_channels=ch, up=True, **res_kw)
                        layers.append(up)
                    else:
                        layers.append(Upsample(ch, self.conv_resample, dims=dims, out_channels=ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
                self._feature_size += ch
        return ch

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

