"""
Small neural-network helpers shared by the networks and the diffusion process.

Names and numerics follow the original guided-diffusion `nn.py`:
GroupNorm32 computes in float32, `timestep_embedding` puts cos before sin,
and `checkpoint` is gradient checkpointing (here built on
`torch.utils.checkpoint` in its non-reentrant mode, so parameter gradients
flow without the hand-written autograd function of the original).
"""

import math

import torch as th
import torch.nn as nn
from torch.utils.checkpoint import checkpoint as _torch_checkpoint


class SiLU(nn.Module):
    """SiLU activation kept for API compatibility (the networks use `nn.SiLU`)."""

    def forward(self, x):
        return x * th.sigmoid(x)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm that normalises in float32 and casts the result back to the input dtype."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


def _module_nd(classes, dims, args, kwargs):
    if dims not in (1, 2, 3):
        raise ValueError(f"unsupported dimensions: {dims!r} (allowed: 1, 2, 3)")
    return classes[dims - 1](*args, **kwargs)


def conv_nd(dims, *args, **kwargs):
    """
    Create a 1D, 2D or 3D convolution module.

    :param dims: 1, 2 or 3.
    """
    return _module_nd((nn.Conv1d, nn.Conv2d, nn.Conv3d), dims, args, kwargs)


def linear(*args, **kwargs):
    """Create a linear module."""
    return nn.Linear(*args, **kwargs)


def avg_pool_nd(dims, *args, **kwargs):
    """
    Create a 1D, 2D or 3D average pooling module.

    :param dims: 1, 2 or 3.
    """
    return _module_nd((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), dims, args, kwargs)


def update_ema(target_params, source_params, rate=0.99):
    """
    Move target parameters towards source parameters with an exponential moving average:
    target = rate * target + (1 - rate) * source, in place.

    :param target_params: the target parameter sequence.
    :param source_params: the source parameter sequence (same shapes).
    :param rate: the EMA rate (closer to 1 means slower).
    """
    with th.no_grad():
        for targ, src in zip(target_params, source_params):
            targ.detach().mul_(rate).add_(src.detach().to(targ.dtype), alpha=1 - rate)


def zero_module(module):
    """Zero out the parameters of a module in place and return it."""
    with th.no_grad():
        for p in module.parameters():
            p.detach().zero_()
    return module


def scale_module(module, scale):
    """Scale the parameters of a module in place and return it."""
    with th.no_grad():
        for p in module.parameters():
            p.detach().mul_(scale)
    return module


def mean_flat(tensor):
    """
    Take the mean over all non-batch dimensions.

    :param tensor: an [N x ...] tensor.
    :return: an [N] tensor.
    """
    return tensor.mean(dim=list(range(1, tensor.dim())))


def normalization(channels):
    """
    Make the standard normalization layer: GroupNorm with 32 groups, computed in float32.

    :param channels: number of input channels (a multiple of 32).
    :return: an nn.Module for normalization.
    """
    return GroupNorm32(32, channels)


def timestep_embedding(timesteps, dim, max_period=10000):
    """
    Create sinusoidal timestep embeddings.

    Frequencies are exp(-ln(max_period) * i / half) for i in [0, half), half = dim // 2;
    the output is [cos(t * freqs), sin(t * freqs)] (cos first), zero-padded by one
    column when `dim` is odd.

    :param timesteps: a 1-D tensor of N indices, one per batch element (may be fractional).
    :param dim: the dimension of the output.
    :param max_period: controls the minimum frequency of the embeddings.
    :return: an [N x dim] float32 tensor of positional embeddings.
    """
    half = dim // 2
    # computed on the CPU then moved, like the original, so the values agree to the bit
    freqs = th.exp(-math.log(max_period) * th.arange(start=0, end=half, dtype=th.float32) / half)
    freqs = freqs.to(device=timesteps.device)
    args = timesteps[:, None].float() * freqs[None]
    embedding = th.cat([th.cos(args), th.sin(args)], dim=-1)
    if dim % 2:
        embedding = th.cat([embedding, th.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


def checkpoint(func, inputs, params, flag):
    """
    Evaluate `func(*inputs)`, optionally with gradient checkpointing: intermediate
    activations are not stored and are recomputed in the backward pass, trading
    compute for memory. Gradients (w.r.t. inputs and parameters) are identical.

    :param func: the function to evaluate.
    :param inputs: the sequence of arguments to pass to `func`.
    :param params: the parameters `func` depends on. Kept for API compatibility; the
                   non-reentrant checkpoint finds them through autograd by itself.
    :param flag: if False, disable checkpointing and just call `func`.
    """
    del params  # tracked by autograd in non-reentrant mode
    if flag and th.is_grad_enabled():
        return _torch_checkpoint(func, *inputs, use_reentrant=False)
    return func(*inputs)
