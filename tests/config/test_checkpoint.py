"""Strict checkpoint loading and the mismatch diagnostics."""

import json
import pickle
from pathlib import Path

import pytest
import torch as th

from guided_diffusion.config import checkpoint, defaults, factory
from guided_diffusion.config.checkpoint import (
    CheckpointMismatchError,
    load_model_checkpoint,
    state_dict_from_file,
)
from guided_diffusion.runtime.fileio import atomic_torch_save


BASE = {**defaults.model_and_diffusion_defaults(), "image_size": 32, "num_channels": 32,
        "num_res_blocks": 1, "attention_resolutions": "8"}  # fmt: skip
CLF = {**defaults.classifier_defaults(), "image_size": 32, "classifier_width": 64, "classifier_depth": 1}


LAYOUT_DIR = Path(__file__).parents[1] / "data" / "checkpoints"


def model_from(flags):
    return factory.create_model(**{k: v for k, v in flags.items() if k not in defaults.diffusion_defaults()
                              or k == "learn_sigma"})  # fmt: skip


def test_save_and_load_round_trip_strict(tmp_path):
    th.manual_seed(0)
    src = model_from({**BASE, "class_cond": True, "learn_sigma": True})
    with th.no_grad():
        for p in src.parameters():
            p.normal_()
    path = tmp_path / "model000010.pt"
    atomic_torch_save(src.state_dict(), str(path))
    dst = model_from({**BASE, "class_cond": True, "learn_sigma": True})
    assert load_model_checkpoint(dst, str(path)) is dst
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert th.equal(a, b), k


def test_loads_float32_checkpoint_into_fp16_model():
    src = model_from(BASE)
    dst = model_from({**BASE, "use_fp16": True})
    dst.convert_to_fp16()
    load_model_checkpoint(dst, src.state_dict())
    assert dst.input_blocks[0][0].weight.dtype == th.float16
    assert th.equal(dst.input_blocks[0][0].weight, src.input_blocks[0][0].weight.half())


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model_checkpoint(model_from(BASE), str(tmp_path / "nope.pt"))


def test_state_dict_from_file_is_the_weights_only_reader(tmp_path, monkeypatch):
    th.save({"obj": object()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        state_dict_from_file(tmp_path / "evil.pt")
    calls = []
    real = checkpoint.load_state_dict
    monkeypatch.setattr(checkpoint, "load_state_dict", lambda *a, **k: calls.append(k) or real(*a, **k))
    th.save({"w": th.ones(2)}, tmp_path / "ok.pt")
    assert th.equal(state_dict_from_file(tmp_path / "ok.pt")["w"], th.ones(2))
    assert calls == [{"map_location": "cpu"}]


def test_state_dict_from_file_rejects_non_state_dicts(tmp_path):
    path = tmp_path / "list.pt"
    th.save([th.zeros(1)], str(path))
    with pytest.raises(ValueError, match="plain state dict"):
        state_dict_from_file(str(path))


def test_unknown_kind():
    with pytest.raises(ValueError, match="'unet'.*model.*classifier"):
        load_model_checkpoint(model_from(BASE), {}, kind="unet")


def _error(model, ckpt, flags=None, kind="model"):
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_checkpoint(model, ckpt.state_dict() if hasattr(ckpt, "state_dict") else ckpt,
                              flags=flags, kind=kind)  # fmt: skip
    assert isinstance(info.value, ValueError)
    return info.value


def test_error_lists_keys_shapes_and_flags():
    err = _error(model_from(BASE), model_from({**BASE, "class_cond": True, "learn_sigma": True}), BASE)
    msg = str(err)
    assert err.unexpected == ["label_emb.weight"] and not err.missing
    assert ("out.2.weight", (6, 32, 3, 3), (3, 32, 3, 3)) in err.mismatched
    assert "label_emb.weight" in msg and "out.2.weight checkpoint [6, 32, 3, 3] vs model [3, 32, 3, 3]" in msg
    assert "--class_cond True" in msg and "--learn_sigma True" in msg
    assert "matches the checkpoint exactly: --class_cond True --learn_sigma True" in msg


def test_error_without_flags_still_names_flags():
    msg = str(_error(model_from(BASE), model_from({**BASE, "class_cond": True})))
    assert "--class_cond True" in msg and "label_emb" in msg


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"learn_sigma": True}, "--learn_sigma True"),
        ({"use_scale_shift_norm": False}, "--use_scale_shift_norm False"),
        ({"resblock_updown": True}, "--resblock_updown True"),
        ({"num_channels": 64}, "--num_channels 64"),
        ({"num_res_blocks": 2}, "--num_res_blocks 2"),
        ({"channel_mult": "1,2,4"}, "--channel_mult 1,2,4"),
        ({"attention_resolutions": "16,8"}, "--attention_resolutions 16,8"),
    ],
)
def test_suggests_the_differing_flag(change, expected):
    err = _error(model_from(BASE), model_from({**BASE, **change}), BASE)
    assert f"matches the checkpoint exactly: {expected}" in str(err)
    assert len(err.suggestions) == 1


def test_missing_keys_listed_with_truncation():
    err = _error(model_from({**BASE, "resblock_updown": True}), model_from(BASE), {**BASE, "resblock_updown": True})
    assert err.missing and err.unexpected
    assert "missing from the checkpoint: input_blocks.2.0.in_layers.0.weight" in str(err)
    assert "more)" in str(err)
    assert "--resblock_updown False" in str(err)


@pytest.mark.parametrize(
    "change,expected",
    [
        ({"classifier_depth": 2}, "--classifier_depth 2"),
        ({"classifier_pool": "adaptive"}, "--classifier_pool adaptive"),
        ({"classifier_resblock_updown": False}, "--classifier_resblock_updown False"),
        ({"classifier_width": 128}, "--classifier_width 128"),
    ],
)
def test_classifier_suggestions(change, expected):
    model = factory.create_classifier(**CLF)
    ckpt = factory.create_classifier(**{**CLF, **change})
    err = _error(model, ckpt, CLF, kind="classifier")
    assert f"matches the checkpoint exactly: {expected}" in str(err)


def test_superres_checkpoint_into_base_model_names_kind():
    sr_flags = {**defaults.sr_model_and_diffusion_defaults(), "large_size": 32, "small_size": 8,
                "num_channels": 32, "num_res_blocks": 1, "attention_resolutions": "8"}  # fmt: skip
    sr, _ = factory.sr_create_model_and_diffusion(**sr_flags)
    err = _error(model_from({**BASE, "channel_mult": "1,2,2,2"}), sr)
    assert "takes 6 channels" in str(err) and "sr" in str(err)


def test_released_layout_diagnosed_from_default_flags():
    """The 256x256 class-conditional layout against default flags: one rebuild confirms all."""
    layout = json.loads((LAYOUT_DIR / "256x256_diffusion.json").read_text())
    shapes = {k: th.empty(s, device="meta") for k, s, _ in layout["state_dict"]}
    flags = {**defaults.model_and_diffusion_defaults(), "image_size": 256}
    with th.device("meta"):
        model = model_from(flags)
    err = _error(model, shapes, flags)
    exact = str(err).split("exactly: ")[1]
    for part in ("--num_channels 256", "--class_cond True", "--learn_sigma True",
                 "--resblock_updown True", "--attention_resolutions 32,16,8"):  # fmt: skip
        assert part in exact
    # the released flags need no change (num_head_channels etc. do not change the layout)
    with th.device("meta"):
        released = model_from(layout["create_kwargs"])
    released.load_state_dict(shapes, strict=True, assign=True)


def test_superres_model_rebuilds_with_sr_factory():
    sr_flags = {**defaults.sr_model_and_diffusion_defaults(), "large_size": 32, "small_size": 8,
                "num_channels": 32, "num_res_blocks": 1, "attention_resolutions": "8"}  # fmt: skip
    model, _ = factory.sr_create_model_and_diffusion(**sr_flags)
    ckpt, _ = factory.sr_create_model_and_diffusion(**{**sr_flags, "class_cond": True})
    err = _error(model, ckpt, sr_flags)  # kind "model" given, SuperResModel detected
    assert "'sr' network" in str(err)
    assert "matches the checkpoint exactly: --class_cond True" in str(err)


# ---------------------------------------------------------------- the run record in the hint

# The demo's 8x8 digits model: nothing in its parameters says 8x8 or cosine.
DEMO = {**defaults.model_and_diffusion_defaults(), "image_size": 8, "num_channels": 64,
        "num_res_blocks": 1, "channel_mult": "1,2", "attention_resolutions": "4",
        "num_head_channels": 32, "learn_sigma": True, "noise_schedule": "cosine"}  # fmt: skip


def _demo_checkpoint(folder, record=None, name="args.json"):
    folder.mkdir(exist_ok=True)
    path = folder / "model000100.pt"
    atomic_torch_save(model_from(DEMO).state_dict(), str(path))
    if record is not None:
        (folder / name).write_text(json.dumps(record))
    return path


def _hint(path, flags=None, **kwargs):
    flags = defaults.model_and_diffusion_defaults() if flags is None else flags
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_checkpoint(model_from(flags), str(path), flags=flags, **kwargs)
    return str(info.value)


def test_hint_for_8x8_checkpoint_with_its_args_json_names_image_size_8(tmp_path):
    path = _demo_checkpoint(tmp_path / "run", {**DEMO, "script": "image_train.py", "lr": 1e-4})
    msg = _hint(path)
    assert "--image_size 8  (recorded in" in msg and "args.json" in msg
    assert "--noise_schedule cosine" in msg
    assert "--attention_resolutions 4" in msg  # resolutions read at the recorded size
    exact = msg.split("matches the checkpoint exactly: ")[1].splitlines()[0].split()
    assert "--image_size" in exact and exact[exact.index("--image_size") + 1] == "8"
    assert "the run record gives --image_size 8, --noise_schedule cosine" in msg


def test_hint_without_a_record_names_image_size_and_schedule(tmp_path):
    msg = _hint(_demo_checkpoint(tmp_path / "run"))
    assert "cannot tell --image_size, --noise_schedule, --diffusion_steps" in msg
    assert "now --image_size 64, --noise_schedule linear, --diffusion_steps 1000" in msg
    assert "--attention_resolutions 32 " in msg and "at --image_size 64" in msg


def test_hint_reads_the_record_for_an_already_loaded_state_dict(tmp_path):
    path = _demo_checkpoint(tmp_path / "run", DEMO)
    flags = defaults.model_and_diffusion_defaults()
    with pytest.raises(CheckpointMismatchError, match="--image_size 8  \\(recorded in"):
        load_model_checkpoint(model_from(flags), th.load(path, weights_only=True), flags=flags, path=path)


def test_hint_reads_a_sampling_record_that_loaded_this_checkpoint(tmp_path):
    record = {"config": {"script": "image_sample", "flags": {**DEMO, "model_path": "model000100.pt"}}}
    path = _demo_checkpoint(tmp_path / "run", record, name="samples_4x8x8x3.json")
    assert "--image_size 8  (recorded in" in _hint(path)
    other = {"config": {"flags": {**DEMO, "model_path": "/elsewhere/other.pt"}}}
    path = _demo_checkpoint(tmp_path / "run2", other, name="samples_4x8x8x3.json")
    assert "cannot tell --image_size" in _hint(path)


# ---------------------------------------------------------------- num_classes


def test_ten_class_model_has_ten_rows_and_loads_strictly(tmp_path):
    ten = {**BASE, "class_cond": True, "num_classes": 10}
    src = model_from(ten)
    assert src.label_emb.weight.shape == (10, 128)
    path = tmp_path / "model000001.pt"
    atomic_torch_save(src.state_dict(), str(path))
    dst = load_model_checkpoint(model_from(ten), str(path), flags=ten)
    assert th.equal(dst.label_emb.weight, src.label_emb.weight)
    # Into the default 1000-class model it does not fit, and the hint names the count.
    with pytest.raises(CheckpointMismatchError, match="--num_classes 10  \\(label_emb.weight has 10 rows"):
        load_model_checkpoint(model_from({**ten, "num_classes": 1000}), str(path), flags={**ten, "num_classes": 1000})


def test_ten_class_classifier_has_ten_logits_and_loads_strictly(tmp_path):
    ten = {**CLF, "num_classes": 10}
    src = factory.create_classifier(**ten)
    assert src(th.randn(2, 3, 32, 32), th.tensor([0, 5])).shape == (2, 10)
    dst = load_model_checkpoint(factory.create_classifier(**ten), src.state_dict(), flags=ten, kind="classifier")
    assert th.equal(dst.out[2].c_proj.weight, src.out[2].c_proj.weight)
    with pytest.raises(CheckpointMismatchError, match="--num_classes 10"):
        load_model_checkpoint(factory.create_classifier(**CLF), src.state_dict(), flags=CLF, kind="classifier")
