"""The 15 released checkpoint layouts: names, order, shapes, dtypes and sizes match exactly."""

import inspect
import json
from pathlib import Path

import pytest
import torch as th

from guided_diffusion import script_util
from guided_diffusion.config.checkpoint import load_model_checkpoint

LAYOUT_DIR = Path(__file__).parent / "data" / "checkpoints"
LAYOUTS = sorted(LAYOUT_DIR.glob("*.json"))
# layouts whose create_fn also builds a diffusion (all but the classifiers)
WITH_DIFFUSION = [p for p in LAYOUTS if not p.stem.endswith("classifier")]

# The sampling scripts call *_and_diffusion factories; the network comes from these.
_MODEL_FN = {
    "guided_diffusion.script_util.create_model_and_diffusion": "create_model",
    "guided_diffusion.script_util.sr_create_model_and_diffusion": "sr_create_model",
    "guided_diffusion.script_util.create_classifier": "create_classifier",
}


def _load(path):
    with open(path) as f:
        return json.load(f)


def build_from_layout(layout):
    """Build the network of a layout JSON with its create_fn's model factory."""
    fn = getattr(script_util, _MODEL_FN[layout["create_fn"]])
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in layout["create_kwargs"].items() if k in params}
    return fn(**kwargs)


def test_there_are_fifteen_layouts():
    assert len(LAYOUTS) == 15


@pytest.mark.parametrize("path", LAYOUTS, ids=lambda p: p.stem)
def test_state_dict_keys_match_reference(path):
    layout = _load(path)
    with th.device("meta"):
        model = build_from_layout(layout)
    assert type(model).__name__ == layout["model_class"]
    sd = model.state_dict()
    got = [[k, list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in sd.items()]
    assert [r[0] for r in got] == [r[0] for r in layout["state_dict"]]  # names and order
    assert got == layout["state_dict"]  # shapes and dtypes
    assert sum(v.numel() for v in sd.values()) == layout["num_params"]
    assert len(sd) == layout["num_tensors"]
    # a checkpoint with exactly the released names and shapes loads strictly
    released = {k: th.empty(shape, device="meta") for k, shape, _ in layout["state_dict"]}
    assert load_model_checkpoint(model, released, kind=layout["kind"]) is model


@pytest.mark.parametrize("path", WITH_DIFFUSION, ids=lambda p: p.stem)
def test_full_factory_builds_same_layout(path):
    """The *_and_diffusion factory (what the scripts call) gives the same network layout."""
    layout = _load(path)
    fn_name = layout["create_fn"].split(".")[-1]
    assert fn_name.endswith("_and_diffusion")
    with th.device("meta"):
        model, diffusion = getattr(script_util, fn_name)(**layout["create_kwargs"])
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == [
        (r[0], r[1]) for r in layout["state_dict"]
    ]
    assert diffusion.original_num_steps == layout["create_kwargs"]["diffusion_steps"]


@pytest.mark.parametrize("name", ["64x64_classifier", "64_256_upsampler"])
def test_meta_state_dict_loads_back_strict_on_meta(name):
    """A state dict taken from one meta model loads strictly into another (assign=True)."""
    layout = _load(LAYOUT_DIR / f"{name}.json")
    with th.device("meta"):
        a = build_from_layout(layout)
        b = build_from_layout(layout)
    result = b.load_state_dict(a.state_dict(), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
