"""What the training scripts do around the loop: seeding, data choice, args.json, exit status."""

import argparse
import json
import os
import random
import signal

import numpy as np
import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.runtime.cli import StoppedBySignal
from guided_diffusion.training import setup as train_setup
from guided_diffusion.training import state as train_state
from train_helpers import logdir  # noqa: F401


def test_seed_everything_is_per_rank_and_reproducible():
    assert train_setup.seed_everything(11, rank=0) == 11
    first = (th.rand(2), np.random.rand(2), random.random())
    train_setup.seed_everything(11, rank=0)
    again = (th.rand(2), np.random.rand(2), random.random())
    train_setup.seed_everything(11, rank=1)
    other_rank = th.rand(2)
    assert th.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
    assert not th.equal(first[0], other_rank)
    drawn = train_setup.seed_everything(-1)
    assert 0 <= drawn < 2**31 - 1


def test_resolve_flip_auto_is_off_for_the_digits_only():
    assert train_setup.resolve_flip("auto", embedded=True) is False
    assert train_setup.resolve_flip("AUTO", embedded=False) is True
    assert train_setup.resolve_flip("false", embedded=False) is False
    with pytest.raises(argparse.ArgumentTypeError, match="boolean"):
        train_setup.resolve_flip("sometimes", embedded=False)


def test_choose_data_with_a_folder_keeps_it_and_its_validation_folder(logdir):
    args = argparse.Namespace(data_dir="/data/train", val_data_dir="", random_flip="auto", seed=3)
    assert train_setup.choose_data(args, 8, with_val=True) == dict(
        data_dir="/data/train", val_data_dir="", random_flip=True, data_source="data_dir", class_names=None)


def _folder(path, names):
    path.mkdir(parents=True)
    for name in names:
        (path / name).write_bytes(b"")  # listing reads names only
    return str(path)


def test_choose_data_records_the_class_mapping_of_a_labelled_run(tmp_path, logdir):
    train = _folder(tmp_path / "train", ["dog_1.png", "cat_2.png", "ant_3.png", "dog_4.png"])
    args = argparse.Namespace(data_dir=train, val_data_dir="", random_flip="auto", seed=3)
    assert train_setup.choose_data(args, 8, labelled=True)["class_names"] == ["ant", "cat", "dog"]
    assert train_setup.choose_data(args, 8)["class_names"] is None
    # A validation folder without a class would number "dog" 1 instead of 2: refused.
    args.val_data_dir = _folder(tmp_path / "val", ["cat_7.png", "dog_8.png"])
    with pytest.raises(ValueError, match=r"only in --data_dir: \['ant'\]; only in --val_data_dir: \[\]"):
        train_setup.choose_data(args, 8, with_val=True, labelled=True)


def test_choose_data_maps_the_embedded_digits_to_their_own_names(tmp_path, logdir, monkeypatch):
    monkeypatch.setenv("GUIDED_DIFFUSION_CACHE", str(tmp_path / "cache"))
    args = argparse.Namespace(data_dir="", val_data_dir="", random_flip="auto", seed=3)
    chosen = train_setup.choose_data(args, 8, with_val=True, labelled=True)
    assert chosen["class_names"] == [str(d) for d in range(10)]  # label d is the digit d
    assert chosen["data_source"] == "embedded-digits" and chosen["val_data_dir"]


def test_write_args_json_records_flags_and_extras(logdir):
    args = argparse.Namespace(lr=0.5, seed=4)
    doc = train_setup.write_args_json(args, data_source="data_dir", script="x.py")
    on_disk = json.loads(open(os.path.join(logdir, "args.json")).read())
    assert on_disk == doc == {"lr": 0.5, "seed": 4, "data_source": "data_dir", "script": "x.py", "world_size": 1}


class _Loop:
    def __init__(self, stopped_by, step, finished=False):
        self.stopped_by, self.global_step, self._finished = stopped_by, step, finished

    def blob_logdir(self):
        return "/runs/a"

    def finished(self):
        return self._finished


def test_finish_is_zero_or_a_signal_stop_naming_the_saved_step():
    assert train_setup.finish(_Loop(None, 5)) == 0
    with pytest.raises(StoppedBySignal, match="SIGTERM: step 5 is saved in /runs/a.*resume_checkpoint auto") as e:
        train_setup.finish(_Loop(signal.SIGTERM, 5))
    assert e.value.signum == signal.SIGTERM
    with pytest.raises(StoppedBySignal, match="end of the run: step 9 is saved in /runs/a, complete"):
        train_setup.finish(_Loop(signal.SIGINT, 9, finished=True))


def _args(**kw):
    args = dict(output_dir="", resume_checkpoint="", seed=-1, lr_anneal_steps=0)
    args.update(kw)
    return argparse.Namespace(**args)


def _checkpoint(folder, step, rate=0.9999):
    folder.mkdir(parents=True, exist_ok=True)
    for name in (train_state.model_filename(step), train_state.ema_filename(rate, step),
                 train_state.opt_filename(step), train_state.state_filename(step)):
        (folder / name).write_bytes(b"x")


def test_output_dir_flag_wins_over_the_environment_which_wins_over_a_new_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_LOGDIR", str(tmp_path / "env"))
    assert train_setup.choose_output_dir(str(tmp_path / "flag")) == (str(tmp_path / "flag"), True)
    assert train_setup.choose_output_dir("") == (str(tmp_path / "env"), True)
    monkeypatch.delenv("OPENAI_LOGDIR")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    folder, given = train_setup.choose_output_dir("")
    assert not given and os.path.dirname(folder) == str(tmp_path) and not os.path.exists(folder)


def test_start_run_configures_the_logger_and_records_the_seed(tmp_path, monkeypatch, restore_logger):
    monkeypatch.setenv("OPENAI_LOGDIR", str(tmp_path / "env"))
    args = _args(output_dir=str(tmp_path / "run"))
    run = train_setup.start_run(args, "lr_anneal_steps")
    assert run == (str(tmp_path / "run"), "", False)
    assert logger.get_dir() == str(tmp_path / "run") and args.seed >= 0
    assert not os.path.exists(tmp_path / "env")


def test_finished_run_does_nothing_and_touches_no_file(tmp_path, capsys, restore_logger):
    _checkpoint(tmp_path, 5)
    (tmp_path / "progress.csv").write_text("step\n0\n")
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    for total in (5, 3):
        run = train_setup.start_run(_args(output_dir=str(tmp_path), resume_checkpoint="auto", lr_anneal_steps=total),
                                    "lr_anneal_steps", [0.9999])
        assert run.finished and run.resume_checkpoint == str(tmp_path / "model000005.pt")
        out = capsys.readouterr().out
        assert out.startswith("nothing to do: step 5 reached")
        if total == 3:
            assert "raise --lr_anneal_steps above 5" in out
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()} == before


def test_auto_in_a_new_default_folder_says_there_is_nothing_to_resume(tmp_path, monkeypatch, restore_logger):
    monkeypatch.delenv("OPENAI_LOGDIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    run = train_setup.start_run(_args(resume_checkpoint="auto"), "lr_anneal_steps")
    assert run.resume_checkpoint == "" and not run.finished
    text = open(os.path.join(run.output_dir, "log.txt")).read()
    assert "no --output_dir and no $OPENAI_LOGDIR" in text and "pass --output_dir" in text


def test_auto_names_other_runs_files_and_a_fresh_run_warns_before_replacing(tmp_path, restore_logger):
    _checkpoint(tmp_path, 4, rate=0.5)
    (tmp_path / "samples_4x8x8x3.npz").write_bytes(b"x")
    train_setup.start_run(_args(output_dir=str(tmp_path), resume_checkpoint="auto"), "lr_anneal_steps", [0.9999])
    train_setup.start_run(_args(output_dir=str(tmp_path)), "lr_anneal_steps", [0.9999])
    text = (tmp_path / "log.txt").read_text()
    assert "found no complete checkpoint" in text and "samples_4x8x8x3.npz" in text
    assert "lacks ema_0.9999_000004.pt" in text
    assert "holds checkpoints of an earlier run (up to step 4)" in text


def test_start_run_clears_partial_files_of_killed_saves(tmp_path, restore_logger):
    _checkpoint(tmp_path, 2)
    (tmp_path / ".tmp-opt000004.pt-k1ll3d").write_bytes(b"half")
    (tmp_path / ".tmp-notes.txt-abc").write_bytes(b"not ours")
    run = train_setup.start_run(_args(output_dir=str(tmp_path), resume_checkpoint="auto"), "lr_anneal_steps",
                                [0.9999])
    assert run.resume_checkpoint == str(tmp_path / "model000002.pt")
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith(".tmp-")) == [".tmp-notes.txt-abc"]
    assert "removed .tmp-opt000004.pt-k1ll3d" in (tmp_path / "log.txt").read_text()
