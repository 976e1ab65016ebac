"""
Self-attention layers of the UNet and the classifier's attention-pooling head.

Numerics follow the original guided-diffusion: q and k are each scaled by
1 / ch^(1/4) before the dot product and the softmax runs in float32.
For float32/float64/bfloat16 activations the product may be computed with
`torch.nn.functional.scaled_dot_product_attention` (the same function up to float
rounding, without the T x T weight matrix), wherever it measured faster than the einsum
formula for the device class and dtype (`runtime.kernels.SDPA_FASTER`, measured by
benchmarks/bench_speed.py). float16 always uses the explicit formula so that `--use_fp16`
results round exactly like the original. `USE_SDPA` overrides the choice (None: measured).

Two layouts of the 3*C qkv channels exist (see `qkv_heads_legacy` and
`qkv_heads_new`): the legacy order splits heads first, the new order splits
q, k, v first.
"""

import math

import torch as th
import torch.nn as nn
import torch.nn.functional as F

from ..runtime.kernels import sdpa_preferred
from .layers import checkpoint, conv_nd, normalization, zero_module

_SDPA_DTYPES = (th.float32, th.float64, th.bfloat16)

# None: SDPA where it measured faster (runtime.kernels); True/False: force on/off for those dtypes.
USE_SDPA = None


def qkv_heads_legacy(qkv, n_heads):
    """
    Split a [N x (H * 3 * C) x T] tensor in the legacy order (heads first).

    :return: q, k, v, each [N*H x C x T].
    """
    bs, width, length = qkv.shape
    ch = width // (3 * n_heads)
    return qkv.reshape(bs * n_heads, ch * 3, length).split(ch, dim=1)


def qkv_heads_new(qkv, n_heads):
    """
    Split a [N x (3 * H * C) x T] tensor in the new order (q, k, v first, then heads).

    :return: q, k, v, each [N*H x C x T].
    """
    bs, width, length = qkv.shape
    ch = width // (3 * n_heads)
    q, k, v = qkv.chunk(3, dim=1)
    return tuple(z.reshape(bs * n_heads, ch, length) for z in (q, k, v))


def attention_explicit(q, k, v):
    """
    Attention by the original formula: scale q and k by ch^(-1/4) each, softmax in float32.

    :param q, k, v: [B x C x T] tensors (B = batch * heads).
    :return: a [B x C x T] tensor.
    """
    ch = q.shape[1]
    scale = 1 / math.sqrt(math.sqrt(ch))
    weight = th.einsum("bct,bcs->bts", q * scale, k * scale)  # [B, T(query), S(key)]
    weight = th.softmax(weight.float(), dim=-1).type(weight.dtype)
    return th.einsum("bts,bcs->bct", weight, v)


def attention_sdpa(q, k, v):
    """
    Same result as `attention_explicit` (up to float rounding) via scaled_dot_product_attention.

    :param q, k, v: [B x C x T] tensors.
    :return: a [B x C x T] tensor.
    """
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)  # [B, T, C] -> [B, C, T]


def use_sdpa(x):
    """Whether `qkv_attention` uses SDPA for a tensor like `x` (see USE_SDPA)."""
    if x.dtype not in _SDPA_DTYPES:
        return False
    if USE_SDPA is None:
        return sdpa_preferred(x.device, x.dtype)
    return bool(USE_SDPA)


def qkv_attention(q, k, v):
    """
    Attention of [B x C x T] q, k, v: SDPA or the explicit formula (same result up to
    float32 rounding), see `use_sdpa`.
    """
    if use_sdpa(q):
        return attention_sdpa(q, k, v)
    return attention_explicit(q, k, v)


def count_flops_attn(model, _x, y):
    """
    A counter for the `thop` package to count the operations in an attention operation
    (the two matrix products: 2 * batch * T^2 * channels multiply-adds). Usage:

        macs, params = thop.profile(model, inputs=(inputs, timestamps),
                                    custom_ops={QKVAttention: QKVAttention.count_flops})
    """
    b, c, *spatial = y[0].shape
    num_spatial = int(math.prod(spatial))
    matmul_ops = 2 * b * (num_spatial**2) * c
    model.total_ops += th.DoubleTensor([matmul_ops])


def _check_width(width, n_heads):
    if width % (3 * n_heads) != 0:
        raise ValueError(f"qkv width {width} is not divisible by 3 * num_heads = {3 * n_heads}")


class _QKVAttention(nn.Module):
    """QKV attention over [N x 3*H*C x T] input; subclasses choose the qkv channel layout."""

    split_heads = None  # staticmethod (qkv, n_heads) -> q, k, v each [N*H x C x T]

    def __init__(self, n_heads):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv):
        """
        :param qkv: an [N x (3 * H * C) x T] tensor of Qs, Ks and Vs.
        :return: an [N x (H * C) x T] tensor after attention.
        """
        bs, width, length = qkv.shape
        _check_width(width, self.n_heads)
        q, k, v = self.split_heads(qkv, self.n_heads)
        return qkv_attention(q, k, v).reshape(bs, -1, length)

    @staticmethod
    def count_flops(model, _x, y):
        return count_flops_attn(model, _x, y)


class QKVAttentionLegacy(_QKVAttention):
    """QKV attention with the legacy channel layout (heads split first)."""

    split_heads = staticmethod(qkv_heads_legacy)


class QKVAttention(_QKVAttention):
    """QKV attention with the new channel layout (q, k, v split first, then heads)."""

    split_heads = staticmethod(qkv_heads_new)


def resolve_num_heads(channels, num_heads, num_head_channels):
    """
    Number of heads: channels // num_head_channels when that is set (!= -1), else num_heads.

    :raises ValueError: if channels is not divisible by num_head_channels or num_heads.
    """
    if num_head_channels == -1:
        if num_heads < 1 or channels % num_heads != 0:
            raise ValueError(f"channels {channels} are not divisible by num_heads {num_heads}")
        return num_heads
    if num_head_channels < 1 or channels % num_head_channels != 0:
        raise ValueError(
            f"channels {channels} are not divisible by num_head_channels {num_head_channels}"
        )
    return channels // num_head_channels


class AttentionBlock(nn.Module):
    """
    An attention block that lets spatial positions attend to each other.

    Keys: `norm`, `qkv` (Conv1d C -> 3C), `proj_out` (Conv1d C -> C, zero-initialised).

    :param channels: number of channels.
    :param num_heads: number of heads, used when num_head_channels == -1.
    :param num_head_channels: if not -1, a fixed channel width per head.
    :param use_checkpoint: use gradient checkpointing (off by default, unlike the
        original, which always checkpointed attention).
    :param use_new_attention_order: use QKVAttention instead of QKVAttentionLegacy.
    """

    def __init__(
        self,
        channels,
        num_heads=1,
        num_head_channels=-1,
        use_checkpoint=False,
        use_new_attention_order=False,
    ):
        super().__init__()
        self.channels = channels
        self.num_heads = resolve_num_heads(channels, num_heads, num_head_channels)
        self.use_checkpoint = use_checkpoint
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        if use_new_attention_order:
            self.attention = QKVAttention(self.num_heads)
        else:
            self.attention = QKVAttentionLegacy(self.num_heads)
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x):
        """
        :param x: an [N x C x ...] tensor.
        :return: an [N x C x ...] tensor (x plus the attention output).
        """
        return checkpoint(self._forward, (x,), self.parameters(), self.use_checkpoint)

    def _forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)  # [N, C, T]
        qkv = self.qkv(self.norm(x))  # [N, 3C, T]
        h = self.attention(qkv)
        h = self.proj_out(h)
        return (x + h).reshape(b, c, *spatial)


class AttentionPool2d(nn.Module):
    """
    Attention pooling (as in CLIP): the spatial mean token attends over all positions.

    Keys: `positional_embedding` [C x (HW + 1)], `qkv_proj`, `c_proj`. Always uses the
    new qkv order.

    :param spacial_dim: the side of the (square) input feature map.
    :param embed_dim: the channel count C.
    :param num_heads_channels: channels per head.
    :param output_dim: output channels (defaults to embed_dim).
    """

    def __init__(self, spacial_dim, embed_dim, num_heads_channels, output_dim=None):
        super().__init__()
        self.positional_embedding = nn.Parameter(
            th.randn(embed_dim, spacial_dim**2 + 1) / embed_dim**0.5
        )
        self.qkv_proj = conv_nd(1, embed_dim, 3 * embed_dim, 1)
        self.c_proj = conv_nd(1, embed_dim, output_dim or embed_dim, 1)
        self.num_heads = resolve_num_heads(embed_dim, 1, num_heads_channels)
        self.attention = QKVAttention(self.num_heads)

    def forward(self, x):
        """
        :param x: an [N x C x H x W] tensor.
        :return: an [N x output_dim] tensor.
        """
        b, c, *_spatial = x.shape
        x = x.reshape(b, c, -1)  # [N, C, HW]
        x = th.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)  # [N, C, HW+1]
        x = x + self.positional_embedding[None, :, :].to(x.dtype)
        x = self.qkv_proj(x)
        x = self.attention(x)
        x = self.c_proj(x)
        return x[:, :, 0]
