"""Finding the flags recorded beside a checkpoint."""

import json
import os

from guided_diffusion.config.run_record import find_run_record


def _write(path, doc):
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_args_json_beside_the_checkpoint_wins(tmp_path):
    ckpt = _write(tmp_path / "model000010.pt", "")
    args = _write(tmp_path / "args.json", {"image_size": 8, "noise_schedule": "cosine"})
    _write(tmp_path / "samples_4x8x8x3.json", {"config": {"flags": {"image_size": 16, "model_path": str(ckpt)}}})
    assert find_run_record(ckpt) == ({"image_size": 8, "noise_schedule": "cosine"}, str(args))


def test_sampling_record_counts_only_when_it_loaded_this_checkpoint(tmp_path):
    ckpt = _write(tmp_path / "ema_0.9999_000010.pt", "")
    other = _write(tmp_path / "samples_2x8x8x3.json", {"config": {"flags": {"image_size": 32, "model_path": "x.pt"}}})
    assert find_run_record(ckpt) == ({}, None)
    mine = _write(tmp_path / "samples_4x8x8x3.json",
                  {"config": {"flags": {"image_size": 8, "model_path": "ema_0.9999_000010.pt"}}})
    os.utime(other, (1, 1))  # the matching record is not simply the newest one
    flags, path = find_run_record(ckpt)
    assert flags["image_size"] == 8 and path == str(mine)


def test_unreadable_or_absent_records_give_nothing(tmp_path):
    ckpt = _write(tmp_path / "model000010.pt", "")
    assert find_run_record(ckpt) == ({}, None)
    _write(tmp_path / "args.json", "{not json")
    assert find_run_record(ckpt) == ({}, None)
    _write(tmp_path / "args.json", "[1, 2]")
    assert find_run_record(ckpt) == ({}, None)
    assert find_run_record("https://example.com/model.pt") == ({}, None)
