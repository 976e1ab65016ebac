"""Upsample, Downsample, ResBlock and TimestepEmbedSequential."""

import pytest
import torch as th
import torch.nn as nn
import torch.nn.functional as F

from guided_diffusion.models.blocks import Downsample, ResBlock, TimestepEmbedSequential, Upsample
from model_helpers import randomize


def test_upsample_nearest_then_conv_and_downsample_pool():
    x = th.arange(8, dtype=th.float32).reshape(1, 2, 2, 2)
    up = Upsample(2, use_conv=False)
    assert th.equal(up(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    down = Downsample(2, use_conv=False)
    assert th.equal(down(up(x)), x)
    conv_down = Downsample(2, use_conv=True, out_channels=4)
    assert conv_down(th.randn(1, 2, 8, 8)).shape == (1, 4, 4, 4)


def test_resblock_scale_shift_formula():
    th.manual_seed(0)
    block = randomize(ResBlock(32, 16, 0.0, out_channels=64, use_scale_shift_norm=True))
    assert block.emb_layers[1].out_features == 128
    x, emb = th.randn(2, 32, 4, 4), th.randn(2, 16)
    h = block.in_layers(x)
    scale, shift = block.emb_layers(emb)[..., None, None].chunk(2, dim=1)
    h = block.out_layers[0](h) * (1 + scale) + shift
    h = block.out_layers[3](F.silu(h))
    ref = block.skip_connection(x) + h
    assert isinstance(block.skip_connection, nn.Conv2d) and block.skip_connection.kernel_size == (1, 1)
    assert th.allclose(block(x, emb), ref, atol=1e-5)


def test_resblock_additive_embedding_formula():
    block = randomize(ResBlock(32, 16, 0.0))
    assert isinstance(block.skip_connection, nn.Identity)
    x, emb = th.randn(2, 32, 4, 4), th.randn(2, 16)
    ref = x + block.out_layers(block.in_layers(x) + block.emb_layers(emb)[..., None, None])
    assert th.allclose(block(x, emb), ref, atol=1e-5)


@pytest.mark.parametrize("up,down,side", [(True, False, 8), (False, True, 2)])
def test_resblock_updown_resamples_both_paths(up, down, side):
    block = randomize(ResBlock(32, 16, 0.0, up=up, down=down))
    x, emb = th.randn(1, 32, 4, 4), th.randn(1, 16)
    resample = (lambda z: F.interpolate(z, scale_factor=2, mode="nearest")) if up else (
        lambda z: F.avg_pool2d(z, 2)
    )
    h = block.in_layers[2](resample(block.in_layers[1](block.in_layers[0](x))))
    ref = resample(x) + block.out_layers(h + block.emb_layers(emb)[..., None, None])
    out = block(x, emb)
    assert out.shape == (1, 32, side, side)
    assert th.allclose(out, ref, atol=1e-5)


def test_resblock_checkpoint_same_gradients_with_dropout():
    th.manual_seed(0)
    plain = randomize(ResBlock(32, 16, 0.3, out_channels=64, use_scale_shift_norm=True))
    ckpt = ResBlock(32, 16, 0.3, out_channels=64, use_scale_shift_norm=True, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x1, e1 = th.randn(2, 32, 4, 4, requires_grad=True), th.randn(2, 16, requires_grad=True)
    x2, e2 = (z.detach().clone().requires_grad_(True) for z in (x1, e1))
    th.manual_seed(7)
    plain(x1, e1).pow(2).sum().backward()
    th.manual_seed(7)
    ckpt(x2, e2).pow(2).sum().backward()
    assert th.allclose(x1.grad, x2.grad, atol=1e-5)
    assert th.allclose(e1.grad, e2.grad, atol=1e-5)
    for (name, p1), p2 in zip(plain.named_parameters(), ckpt.parameters()):
        assert th.allclose(p1.grad, p2.grad, atol=1e-5), name


def test_timestep_embed_sequential_routes_emb():
    block = randomize(ResBlock(32, 16, 0.0))
    seq = TimestepEmbedSequential(block, nn.Identity())
    x, emb = th.randn(1, 32, 4, 4), th.randn(1, 16)
    assert th.equal(seq(x, emb), block(x, emb))
