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
        data_dir="/data/train", val_data_dir="", random_flip=True, data_source="data_dir")


def test_write_args_json_records_flags_and_extras(logdir):
    args = argparse.Namespace(lr=0.5, seed=4)
    doc = train_setup.write_args_json(args, data_source="data_dir", script="x.py")
    on_disk = json.loads(open(os.path.join(logdir, "args.json")).read())
    assert on_disk == doc == {"lr": 0.5, "seed": 4, "data_source": "data_dir", "script": "x.py", "world_size": 1}


class _Loop:
    def __init__(self, stopped_by, step):
        self.stopped_by, self.global_step = stopped_by, step

    def blob_logdir(self):
        return "/runs/a"

    def finished(self):
        return False


def test_finish_is_zero_or_a_signal_stop_naming_the_saved_step():
    assert train_setup.finish(_Loop(None, 5)) == 0
    with pytest.raises(StoppedBySignal, match="SIGTERM: step 5 is saved in /runs/a.*resume_checkpoint auto") as e:
        train_setup.finish(_Loop(signal.SIGTERM, 5))
    assert e.value.signum == signal.SIGTERM


def test_start_run_configures_the_logger_and_records_the_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_LOGDIR", str(tmp_path / "run"))
    prev = logger.Logger.CURRENT
    try:
        args = argparse.Namespace(seed=-1)
        train_setup.start_run(args)
        assert logger.get_dir() == str(tmp_path / "run") and args.seed >= 0
    finally:
        logger.Logger.CURRENT.close()
        logger.Logger.CURRENT = prev
