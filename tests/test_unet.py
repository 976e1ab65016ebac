"""Properties of the UNet, its blocks, the super-resolution model and the classifier."""

import pytest
import torch as th
import torch.nn as nn
import torch.nn.functional as F

from guided_diffusion.nn import timestep_embedding
from guided_diffusion.unet import (
    AttentionBlock,
    Downsample,
    EncoderUNetModel,
    ResBlock,
    SuperResModel,
    TimestepEmbedSequential,
    UNetModel,
    Upsample,
)

TINY = dict(
    image_size=16,
    in_channels=3,
    model_channels=32,
    out_channels=3,
    num_res_blocks=1,
    attention_resolutions=(2,),
    channel_mult=(1, 2),
    num_head_channels=16,
)


def _randomize(model, seed=0):
    """Give zero-initialised layers random weights so outputs depend on every parameter."""
    g = th.Generator().manual_seed(seed)
    with th.no_grad():
        for p in model.parameters():
            p.copy_(th.randn(p.shape, generator=g) * 0.1)
    return model


# ---------------------------------------------------------------------- blocks


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
    block = _randomize(ResBlock(32, 16, 0.0, out_channels=64, use_scale_shift_norm=True))
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
    block = _randomize(ResBlock(32, 16, 0.0))
    assert isinstance(block.skip_connection, nn.Identity)
    x, emb = th.randn(2, 32, 4, 4), th.randn(2, 16)
    ref = x + block.out_layers(block.in_layers(x) + block.emb_layers(emb)[..., None, None])
    assert th.allclose(block(x, emb), ref, atol=1e-5)


@pytest.mark.parametrize("up,down,side", [(True, False, 8), (False, True, 2)])
def test_resblock_updown_resamples_both_paths(up, down, side):
    block = _randomize(ResBlock(32, 16, 0.0, up=up, down=down))
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
    plain = _randomize(ResBlock(32, 16, 0.3, out_channels=64, use_scale_shift_norm=True))
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
    block = _randomize(ResBlock(32, 16, 0.0))
    seq = TimestepEmbedSequential(block, nn.Identity())
    x, emb = th.randn(1, 32, 4, 4), th.randn(1, 16)
    assert th.equal(seq(x, emb), block(x, emb))


# ---------------------------------------------------------------------- UNet


def test_zero_initialised_layers_are_zero():
    model = UNetModel(**TINY)
    zeros = [model.out[2]]
    for m in model.modules():
        if isinstance(m, ResBlock):
            zeros.append(m.out_layers[3])
        if isinstance(m, AttentionBlock):
            zeros.append(m.proj_out)
    assert len(zeros) == 1 + 8 + 4  # out conv, ResBlocks (in 2, mid 2, out 4), attention (1, 1, 2)
    for m in zeros:
        assert all((p == 0).all() for p in m.parameters())
    # hence the fresh model outputs exactly zero
    out = model(th.randn(2, 3, 16, 16), th.tensor([0, 10]))
    assert th.equal(out, th.zeros_like(out))


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_unet_output_shape(learn_sigma):
    model = UNetModel(**{**TINY, "out_channels": 6 if learn_sigma else 3})
    out = model(th.randn(2, 3, 16, 16), th.tensor([3, 999]))
    assert out.shape == (2, 6 if learn_sigma else 3, 16, 16)


def test_convert_to_fp16_converts_exactly_torso_convs():
    model = UNetModel(**{**TINY, "use_fp16": True, "num_classes": 10})
    expected = set()
    for part in ("input_blocks", "middle_block", "output_blocks"):
        for name, m in getattr(model, part).named_modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                expected |= {f"{part}.{name}.weight", f"{part}.{name}.bias"}
    model.convert_to_fp16()
    half = {n for n, p in model.named_parameters() if p.dtype == th.float16}
    assert half == expected
    assert "out.2.weight" not in half and "time_embed.0.weight" not in half
    assert model.dtype == th.float16
    out = model(th.randn(1, 3, 16, 16), th.tensor([5]), y=th.tensor([3]))
    assert out.dtype == th.float32
    model.convert_to_fp32()
    assert all(p.dtype == th.float32 for p in model.parameters())


def test_fp16_forward_close_to_fp32():
    th.manual_seed(0)
    model = _randomize(UNetModel(**{**TINY, "use_fp16": True}))
    x, t = th.randn(2, 3, 16, 16), th.tensor([1, 400])
    ref = UNetModel(**TINY)
    ref.load_state_dict(model.state_dict())
    model.convert_to_fp16()
    a, b = model(x, t), ref(x, t)
    assert th.allclose(a, b, atol=5e-2 * b.abs().max().item())


def test_class_conditional_adds_label_embedding():
    th.manual_seed(0)
    model = _randomize(UNetModel(**{**TINY, "num_classes": 4}))
    x, t = th.randn(2, 3, 16, 16), th.tensor([3, 3])
    out_a = model(x, t, y=th.tensor([0, 0]))
    out_b = model(x, t, y=th.tensor([1, 0]))
    assert not th.allclose(out_a[0], out_b[0]) and th.equal(out_a[1], out_b[1])


def test_y_validation_errors():
    uncond = UNetModel(**TINY)
    cond = UNetModel(**{**TINY, "num_classes": 4})
    x, t = th.randn(2, 3, 16, 16), th.tensor([1, 2])
    with pytest.raises(ValueError, match="not class-conditional"):
        uncond(x, t, y=th.tensor([0, 1]))
    with pytest.raises(ValueError, match="4 classes"):
        cond(x, t)
    with pytest.raises(ValueError, match=r"\(2,\)"):
        cond(x, t, y=th.tensor([0, 1, 2]))


def test_unet_head_channels_error_names_both_values():
    with pytest.raises(ValueError, match=r"channels 64 .* num_head_channels 24"):
        UNetModel(**{**TINY, "num_head_channels": 24})


def test_unet_gradient_checkpointing_same_gradients():
    th.manual_seed(0)
    a = _randomize(UNetModel(**TINY))
    b = UNetModel(**{**TINY, "use_checkpoint": True})
    b.load_state_dict(a.state_dict())
    x, t = th.randn(2, 3, 16, 16), th.tensor([1, 500])
    a(x, t).pow(2).mean().backward()
    b(x, t).pow(2).mean().backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert th.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name


def test_superres_upsamples_low_res_bilinearly():
    th.manual_seed(0)
    sr = _randomize(SuperResModel(**TINY))
    assert sr.input_blocks[0][0].in_channels == 6
    unet = UNetModel(**{**TINY, "in_channels": 6})
    unet.load_state_dict(sr.state_dict())
    x, t = th.randn(2, 3, 16, 16), th.tensor([4, 40])
    same = th.randn(2, 3, 16, 16)  # same size: bilinear resize is the identity
    assert th.allclose(sr(x, t, low_res=same), unet(th.cat([x, same], 1), t), atol=1e-6)
    const = th.full((2, 3, 4, 4), 0.7)  # constant image upsamples to a constant
    assert th.allclose(
        sr(x, t, low_res=const), unet(th.cat([x, th.full_like(x, 0.7)], 1), t), atol=1e-5
    )
    low = th.randn(2, 3, 8, 8)
    up = F.interpolate(low, (16, 16), mode="bilinear", align_corners=False)
    assert th.allclose(sr(x, t, low_res=low), unet(th.cat([x, up], 1), t), atol=1e-6)


# ---------------------------------------------------------------------- classifier

ENC = dict(
    image_size=16,
    in_channels=3,
    model_channels=32,
    out_channels=7,
    num_res_blocks=1,
    attention_resolutions=(2,),
    channel_mult=(1, 2),
    num_head_channels=16,
)


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_encoder_pools_give_logits(pool):
    th.manual_seed(0)
    model = _randomize(EncoderUNetModel(**ENC, pool=pool))
    out = model(th.randn(3, 3, 16, 16), th.tensor([0, 1, 2]))
    assert out.shape == (3, 7)
    if pool.startswith("spatial"):
        # means of 4 input blocks (32, 32, 32, 64) and the middle block (64)
        assert model.out[0].in_features == 32 * 3 + 64 + 64


def test_encoder_adaptive_pool_conv_zero_initialised():
    model = EncoderUNetModel(**ENC, pool="adaptive")
    assert (model.out[3].weight == 0).all() and (model.out[3].bias == 0).all()


def test_encoder_unknown_pool_lists_choices():
    with pytest.raises(ValueError, match=r"'max'.*adaptive, attention, spatial, spatial_v2"):
        EncoderUNetModel(**ENC, pool="max")


def test_encoder_attention_pool_needs_head_channels():
    with pytest.raises(ValueError, match="num_head_channels"):
        EncoderUNetModel(**{**ENC, "num_head_channels": -1}, pool="attention")


def test_encoder_fp16_converts_only_torso_convs():
    model = EncoderUNetModel(**ENC, pool="attention", use_fp16=True)
    model.convert_to_fp16()
    half = {n.split(".")[0] for n, p in model.named_parameters() if p.dtype == th.float16}
    assert half == {"input_blocks", "middle_block"}
    assert model.out[2].qkv_proj.weight.dtype == th.float32
    assert model(th.randn(1, 3, 16, 16), th.tensor([5])).dtype == th.float32


def test_time_embedding_feeds_mlp():
    model = _randomize(UNetModel(**TINY))
    t = th.tensor([7, 300])
    emb = model.time_embed(timestep_embedding(t, 32))
    assert emb.shape == (2, 128)
    ref = model.time_embed[2](F.silu(model.time_embed[0](timestep_embedding(t, 32))))
    assert th.allclose(emb, ref)
