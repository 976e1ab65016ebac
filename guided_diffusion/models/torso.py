"""
The half of the network that the UNet and the classifier share: the timestep MLP, the optional
label embedding, the input blocks and the middle block, built in state-dict order.
"""

import inspect

import torch as th
import torch.nn as nn

from .attention import AttentionBlock
from .blocks import Downsample, ResBlock, TimestepEmbedSequential
from .layers import conv_nd, linear


def build_input_and_middle(
    *, in_channels, model_channels, time_embed_dim, num_res_blocks, attention_resolutions, dropout,
    channel_mult, conv_resample, dims, use_checkpoint, num_heads, num_head_channels,
    use_scale_shift_norm, resblock_updown, use_new_attention_order,
):
    """
    Build the encoder half of the UNet: `input_blocks` and `middle_block`.

    :return: (input_blocks ModuleList, middle_block, input_block_chans list,
              feature_size sum of block output channels, final channels ch, final ds).
    """
    res_kw = dict(dims=dims, use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm)
    attn_kw = dict(
        use_checkpoint=use_checkpoint,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        use_new_attention_order=use_new_attention_order,
    )
    ch = int(channel_mult[0] * model_channels)
    input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(dims, in_channels, ch, 3, padding=1))])
    feature_size = ch
    input_block_chans = [ch]
    ds = 1
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            out_ch = int(mult * model_channels)
            layers = [ResBlock(ch, time_embed_dim, dropout, out_channels=out_ch, **res_kw)]
            ch = out_ch
            if ds in attention_resolutions:
                layers.append(AttentionBlock(ch, **attn_kw))
            input_blocks.append(TimestepEmbedSequential(*layers))
            feature_size += ch
            input_block_chans.append(ch)
        if level != len(channel_mult) - 1:
            if resblock_updown:
                down = ResBlock(ch, time_embed_dim, dropout, out_channels=ch, down=True, **res_kw)
            else:
                down = Downsample(ch, conv_resample, dims=dims, out_channels=ch)
            input_blocks.append(TimestepEmbedSequential(down))
            input_block_chans.append(ch)
            ds *= 2
            feature_size += ch
    middle_block = TimestepEmbedSequential(
        ResBlock(ch, time_embed_dim, dropout, **res_kw),
        AttentionBlock(ch, **attn_kw),
        ResBlock(ch, time_embed_dim, dropout, **res_kw),
    )
    feature_size += ch
    return input_blocks, middle_block, input_block_chans, feature_size, ch, ds


def time_embed_mlp(model_channels, time_embed_dim):
    """The timestep MLP: Linear(mc, 4mc), SiLU, Linear(4mc, 4mc) (keys `.0`, `.2`)."""
    return nn.Sequential(
        linear(model_channels, time_embed_dim),
        nn.SiLU(),
        linear(time_embed_dim, time_embed_dim),
    )


def init_torso(
    module, *, image_size, in_channels, model_channels, out_channels, num_res_blocks,
    attention_resolutions, dropout, channel_mult, conv_resample, dims, use_checkpoint, use_fp16,
    num_heads, num_head_channels, num_heads_upsample, use_scale_shift_norm, resblock_updown,
    use_new_attention_order, num_classes=None,
):
    """
    Record the constructor arguments on `module` (a UNetModel or EncoderUNetModel being built)
    and add, in this order: `time_embed`, `label_emb` (an Embedding of num_classes x 4*mc, only
    when num_classes is not None), `input_blocks`, `middle_block`.

    Arguments are those of UNetModel; num_heads_upsample -1 means num_heads.
    :return: (input_block_chans list, final channels ch, final downsample rate ds).
    """
    if num_heads_upsample == -1:
        num_heads_upsample = num_heads
    module.image_size = image_size
    module.in_channels = in_channels
    module.model_channels = model_channels
    module.out_channels = out_channels
    module.num_res_blocks = num_res_blocks
    module.attention_resolutions = attention_resolutions
    module.dropout = dropout
    module.channel_mult = channel_mult
    module.conv_resample = conv_resample
    module.num_classes = num_classes
    module.use_checkpoint = use_checkpoint
    module.dtype = th.float16 if use_fp16 else th.float32
    module.num_heads = num_heads
    module.num_head_channels = num_head_channels
    module.num_heads_upsample = num_heads_upsample

    time_embed_dim = model_channels * 4
    module.time_embed = time_embed_mlp(model_channels, time_embed_dim)
    if num_classes is not None:
        module.label_emb = nn.Embedding(num_classes, time_embed_dim)
    (
        module.input_blocks, module.middle_block, input_block_chans, module._feature_size, ch, ds,
    ) = build_input_and_middle(
        in_channels=in_channels, model_channels=model_channels, time_embed_dim=time_embed_dim,
        num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
        dropout=dropout, channel_mult=channel_mult, conv_resample=conv_resample, dims=dims,
        use_checkpoint=use_checkpoint, num_heads=num_heads, num_head_channels=num_head_channels,
        use_scale_shift_norm=use_scale_shift_norm, resblock_updown=resblock_updown,
        use_new_attention_order=use_new_attention_order,
    )
    return input_block_chans, ch, ds


def torso_args(constructor_locals):
    """The `init_torso` keyword arguments among a constructor's `locals()`."""
    return {k: v for k, v in constructor_locals.items() if k in _TORSO_PARAMS}


_TORSO_PARAMS = frozenset(inspect.signature(init_torso).parameters) - {"module"}
