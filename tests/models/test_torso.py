"""The shared half of UNet and classifier: time MLP, label embedding, input and middle blocks."""

import torch as th
import torch.nn.functional as F

from guided_diffusion.models.layers import timestep_embedding
from guided_diffusion.models.torso import init_torso, torso_args
from guided_diffusion.models.unet import UNetModel
from model_helpers import TINY, randomize


def test_time_embedding_feeds_mlp():
    model = randomize(UNetModel(**TINY))
    t = th.tensor([7, 300])
    emb = model.time_embed(timestep_embedding(t, 32))
    assert emb.shape == (2, 128)
    ref = model.time_embed[2](F.silu(model.time_embed[0](timestep_embedding(t, 32))))
    assert th.allclose(emb, ref)


def test_init_torso_builds_in_state_dict_order_and_records_arguments():
    holder = th.nn.Module()
    kwargs = dict(TINY)
    kwargs.update(dropout=0.0, conv_resample=True, dims=2, use_checkpoint=False, use_fp16=False,
                  num_heads=2, num_heads_upsample=-1, use_scale_shift_norm=True,
                  resblock_updown=False, use_new_attention_order=False, num_classes=5)
    chans, ch, ds = init_torso(holder, **kwargs)
    assert [name for name, _ in holder.named_children()] == [
        "time_embed", "label_emb", "input_blocks", "middle_block"]
    assert holder.label_emb.weight.shape == (5, 128)
    assert holder.num_heads_upsample == 2 and holder.dtype == th.float32
    # input conv (32), level 0 ResBlock (32), downsample (32), level 1 ResBlock (64)
    assert chans == [32, 32, 32, 64] and ch == 64 and ds == 2


def test_torso_args_picks_the_init_torso_arguments():
    def constructor(self, image_size, pool="adaptive", num_classes=None, **rest):
        return torso_args(locals())

    assert constructor(None, 8) == {"image_size": 8, "num_classes": None}
