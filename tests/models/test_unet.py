"""UNetModel and SuperResModel."""

import pytest
import torch as th
import torch.nn as nn
import torch.nn.functional as F

from guided_diffusion.models.attention import AttentionBlock
from guided_diffusion.models.blocks import ResBlock
from guided_diffusion.models.unet import SuperResModel, UNetModel
from model_helpers import TINY, randomize


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
    model = randomize(UNetModel(**{**TINY, "use_fp16": True}))
    x, t = th.randn(2, 3, 16, 16), th.tensor([1, 400])
    ref = UNetModel(**TINY)
    ref.load_state_dict(model.state_dict())
    model.convert_to_fp16()
    a, b = model(x, t), ref(x, t)
    assert th.allclose(a, b, atol=5e-2 * b.abs().max().item())


def test_class_conditional_adds_label_embedding():
    th.manual_seed(0)
    model = randomize(UNetModel(**{**TINY, "num_classes": 4}))
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
    a = randomize(UNetModel(**TINY))
    b = UNetModel(**{**TINY, "use_checkpoint": True})
    b.load_state_dict(a.state_dict())
    x, t = th.randn(2, 3, 16, 16), th.tensor([1, 500])
    a(x, t).pow(2).mean().backward()
    b(x, t).pow(2).mean().backward()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert th.allclose(p.grad, q.grad, atol=1e-5, rtol=1e-4), name


def test_superres_upsamples_low_res_bilinearly():
    th.manual_seed(0)
    sr = randomize(SuperResModel(**TINY))
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


def test_null_class_adds_one_label_row_that_conditions_like_any_label():
    kw = dict(image_size=8, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
              attention_resolutions=(2,), channel_mult=(1, 2), num_heads=1, num_classes=4)
    th.manual_seed(0)
    model = randomize(UNetModel(null_class=True, **kw))
    assert model.label_emb.weight.shape == (5, 128) and model.num_classes == 4 and model.null_label == 4
    assert UNetModel(**kw).null_label is None
    x, t = th.randn(2, 3, 8, 8), th.tensor([3, 7])
    null, real = th.full((2,), 4), th.zeros(2, dtype=th.long)
    with th.no_grad():
        before_null, before_real = model(x, t, null), model(x, t, real)
        model.label_emb.weight[4] += 1.0  # the null label reads the last row, and only it does
        assert not th.allclose(model(x, t, null), before_null) and th.equal(model(x, t, real), before_real)
    with pytest.raises(ValueError, match="null_class needs a class-conditional model"):
        UNetModel(null_class=True, **dict(kw, num_classes=None))
