"""EncoderUNetModel (the classifier): pooling heads and fp16."""

import pytest
import torch as th

from guided_diffusion.models.encoder import EncoderUNetModel
from model_helpers import TINY, randomize

ENC = dict(TINY, out_channels=7)  # 7 classes


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_encoder_pools_give_logits(pool):
    th.manual_seed(0)
    model = randomize(EncoderUNetModel(**ENC, pool=pool))
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
