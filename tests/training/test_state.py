"""Checkpoint names, discovery, and the side file that makes resuming exact."""

import json
import os
import random

import numpy as np
import pytest
import torch as th

from guided_diffusion.resample import LossSecondMomentResampler
from guided_diffusion.training import state as train_state


def test_parse_resume_step_reads_number_and_rejects_other_names():
    assert train_state.parse_resume_step_from_filename("/a/b/model012345.pt") == 12345
    for bad in ["/a/ema_0.9999_000100.pt", "/a/mymodel.pt", "/a/model.pt", "checkpoint"]:
        with pytest.raises(ValueError, match="model<step>.pt"):
            train_state.parse_resume_step_from_filename(bad)


def test_file_names_follow_the_original():
    assert train_state.model_filename(12) == "model000012.pt"
    assert train_state.ema_filename("0.9999", 500) == "ema_0.9999_000500.pt"
    assert train_state.opt_filename(3) == "opt000003.pt"
    assert train_state.state_filename(3) == "train_state000003.json"


def test_is_checkpoint_file():
    for name in ("model000001.pt", "ema_0.9999_000001.pt", "opt000001.pt", "train_state000001.json"):
        assert train_state.is_checkpoint_file(name)
    for name in ("args.json", "progress.csv", "model.pt", "samples_4x8x8x3.npz", "opt000001.pt.bak"):
        assert not train_state.is_checkpoint_file(name)


def test_auto_resume_skips_incomplete_newest_checkpoint(tmp_path):
    d = tmp_path
    for step in (5, 10):
        for name in [train_state.model_filename(step), train_state.ema_filename(0.9999, step),
                     train_state.opt_filename(step), train_state.state_filename(step)]:
            (d / name).write_bytes(b"x")
    os.remove(d / train_state.opt_filename(10))
    (d / ".tmp-opt000010.pt-abc").write_bytes(b"partial")
    assert train_state.find_latest_checkpoint(str(d), [0.9999]) == str(d / "model000005.pt")
    assert train_state.find_latest_checkpoint(str(tmp_path / "none"), [0.9999]) is None


def test_auto_resume_accepts_original_checkpoint_dirs_without_side_files(tmp_path):
    for name in ["model000100.pt", "ema_0.9999_000100.pt", "opt000100.pt"]:
        (tmp_path / name).write_bytes(b"x")
    assert train_state.find_latest_checkpoint(str(tmp_path), [0.9999]) == str(tmp_path / "model000100.pt")


def test_sampler_state_round_trip():
    class D:
        num_timesteps = 5

    a, b = LossSecondMomentResampler(D()), LossSecondMomentResampler(D())
    a.update_with_all_losses([0, 1, 1, 4], [0.5, 1.0, 2.0, 3.0])
    state = json.loads(json.dumps(train_state.sampler_state(a)))
    train_state.load_sampler_state(b, state)
    assert np.array_equal(a._loss_history, b._loss_history) and np.array_equal(a._loss_counts, b._loss_counts)
    assert b._loss_counts.dtype == np.int64


def test_rng_state_round_trip_through_json():
    s = json.loads(json.dumps(train_state.capture_rng_state()))
    expected = (th.rand(3), np.random.rand(3), random.random())
    th.rand(5), np.random.rand(2), random.random()
    train_state.restore_rng_state(s)
    got = (th.rand(3), np.random.rand(3), random.random())
    assert th.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_side_file_round_trip_and_world_size_change(tmp_path):
    path = str(tmp_path / train_state.state_filename(7))
    states = train_state.gather_rank_states({"consumed": 3})
    train_state.write_train_state(path, 7, states, lg_loss_scale=18.5)
    doc = train_state.read_train_state(path)
    assert doc["step"] == 7 and doc["world_size"] == 1 and doc["lg_loss_scale"] == 18.5
    expected = th.rand(2)
    assert train_state.restore_rank_state(doc, 0, 1) == {"consumed": 3}
    assert th.equal(th.rand(2), expected)
    told = []
    assert train_state.restore_rank_state(doc, 0, 2, log=told.append) is None and "1 ranks, now 2" in told[0]
    assert train_state.read_train_state(str(tmp_path / "missing.json")) is None
