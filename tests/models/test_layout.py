"""Reading flags off a state dict's layout."""

import json
from pathlib import Path

from guided_diffusion.models.layout import infer_flags


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
