"""Reading flags off a state dict's layout."""

import json
from pathlib import Path

import pytest
import torch as th

from guided_diffusion.models.encoder import EncoderUNetModel
from guided_diffusion.models.layout import infer_flags
from guided_diffusion.models.unet import UNetModel
from model_helpers import TINY


LAYOUT_DIR = Path(__file__).parents[1] / "data" / "checkpoints"


def test_infer_flags_reads_released_layout():
    layout = json.loads((LAYOUT_DIR / "64x64_diffusion.json").read_text())
    shapes = {k: tuple(s) for k, s, _ in layout["state_dict"]}
    inferred = {k: v for k, (v, _) in infer_flags(shapes, image_size=64).items()}
    flags = layout["create_kwargs"]
    assert inferred["num_channels"] == flags["num_channels"] == 192
    assert inferred["num_res_blocks"] == 3 and inferred["channel_mult"] == (1, 2, 3, 4)
    assert inferred["attention_resolutions"] == "32,16,8"
    assert inferred["class_cond"] and inferred["learn_sigma"] and inferred["use_scale_shift_norm"]
    assert inferred["resblock_updown"] is True


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_infer_num_classes_of_every_classifier_head(pool):
    with th.device("meta"):
        clf = EncoderUNetModel(**dict(TINY, out_channels=7), pool=pool)
    inferred = infer_flags(clf.state_dict())
    assert inferred["pool"][0] == pool and inferred["num_classes"][0] == 7


def test_infer_num_classes_from_the_label_embedding():
    with th.device("meta"):
        cond = UNetModel(**TINY, num_classes=10)
        uncond = UNetModel(**TINY)
    assert infer_flags(cond.state_dict())["num_classes"][0] == 10
    assert "num_classes" not in infer_flags(uncond.state_dict())
    assert infer_flags(uncond.state_dict())["class_cond"][0] is False
