"""
Building blocks of the UNet: timestep-aware sequential container, up/downsampling and
the residual block.
"""

from abc import abstractmethod

import torch as th
import torch.nn as nn
import torch.nn.functional as F

from .layers import avg_pool_nd, checkpoint, conv_nd, linear, normalization, zero_module


class TimestepBlock(nn.Module):
    """Any module whose forward() takes timestep embeddings as a second argument."""

    @abstractmethod
    def forward(self, x, emb):
        """Apply the module to `x` given `emb` timestep embeddings."""


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    """A sequential module that passes timestep embeddings to the children that take them."""

    def forward(self, x, emb):
        for layer in self:
            if isinstance(layer, TimestepBlock):
                x = layer(x, emb)
            else:
                x = layer(x)
        return x


class _Resample(nn.Module):
    """Shared settings of Upsample and Downsample (see there)."""

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims


class Upsample(_Resample):
    """
    Nearest-neighbour x2 upsampling with an optional 3x3 convolution.

    :param channels: channels in the inputs and outputs.
    :param use_conv: whether a convolution is applied after upsampling.
    :param dims: 1, 2 or 3. With 3, upsampling happens in the inner two dimensions.
    :param out_channels: output channels (defaults to channels).
    """

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        super().__init__(channels, use_conv, dims, out_channels)
        if use_conv:
            self.conv = conv_nd(dims, self.channels, self.out_channels, 3, padding=1)

    def forward(self, x):
        assert x.shape[1] == self.channels
        if self.dims == 3:
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        if self.use_conv:
            x = self.conv(x)
        return x


class Downsample(_Resample):
    """
    x2 downsampling: a stride-2 3x3 convolution, or 2x2 average pooling.

    :param channels: channels in the inputs and outputs.
    :param use_conv: whether to use a convolution (else average pooling).
    :param dims: 1, 2 or 3. With 3, downsampling happens in the inner two dimensions.
    :param out_channels: output channels (defaults to channels; must equal it without conv).
    """

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        super().__init__(channels, use_conv, dims, out_channels)
        stride = 2 if dims != 3 else (1, 2, 2)
        if use_conv:
            self.op = conv_nd(dims, self.channels, self.out_channels, 3, stride=stride, padding=1)
        else:
            if self.channels != self.out_channels:
                raise ValueError(
                    f"average-pool downsampling keeps channels: got {channels} -> {out_channels}"
                )
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x):
        assert x.shape[1] == self.channels
        return self.op(x)


class ResBlock(TimestepBlock):
    """
    A residual block conditioned on the timestep embedding.

    Keys: `in_layers` (norm, SiLU, conv3x3), `emb_layers` (SiLU, Linear),
    `out_layers` (norm, SiLU, Dropout, zero conv3x3), `skip_connection`.

    :param channels: number of input channels.
    :param emb_channels: number of timestep embedding channels.
    :param dropout: dropout rate.
    :param out_channels: number of output channels (defaults to channels).
    :param use_conv: with a channel change, use a 3x3 (not 1x1) conv on the skip path.
    :param use_scale_shift_norm: use AdaGN: norm(h) * (1 + scale) + shift.
    :param dims: 1, 2 or 3.
    :param use_checkpoint: use gradient checkpointing.
    :param up: upsample inside the block (BigGAN style).
    :param down: downsample inside the block (BigGAN style).
    """

    def __init__(
        self,
        channels,
        emb_channels,
        dropout,
        out_channels=None,
        use_conv=False,
        use_scale_shift_norm=False,
        dims=2,
        use_checkpoint=False,
        up=False,
        down=False,
    ):
        super().__init__()
        self.channels = channels
        self.emb_channels = emb_channels
        self.dropout = dropout
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm

        self.in_layers = nn.Sequential(
            normalization(channels),
            nn.SiLU(),
            conv_nd(dims, channels, self.out_channels, 3, padding=1),
        )
        self.updown = up or down
        if up:
            self.h_upd = Upsample(channels, False, dims)
            self.x_upd = Upsample(channels, False, dims)
        elif down:
            self.h_upd = Downsample(channels, False, dims)
            self.x_upd = Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()

        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            linear(emb_channels, 2 * self.out_channels if use_scale_shift_norm else self.out_channels),
        )
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x, emb):
        """
        :param x: an [N x C x ...] tensor of features.
        :param emb: an [N x emb_channels] tensor of timestep embeddings.
        :return: an [N x C_out x ...] tensor of outputs.
        """
        return checkpoint(self._forward, (x, emb), self.parameters(), self.use_checkpoint)

    def _forward(self, x, emb):
        if self.updown:
            in_rest, in_conv = self.in_layers[:-1], self.in_layers[-1]
            h = in_rest(x)
            h = self.h_upd(h)
            x = self.x_upd(x)
            h = in_conv(h)
        else:
            h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        while emb_out.dim() < h.dim():
            emb_out = emb_out[..., None]
        if self.use_scale_shift_norm:
            out_norm, out_rest = self.out_layers[0], self.out_layers[1:]
            scale, shift = th.chunk(emb_out, 2, dim=1)
            h = out_norm(h) * (1 + scale) + shift
            h = out_rest(h)
        else:
            h = h + emb_out
            h = self.out_layers(h)
        return self.skip_connection(x) + h
