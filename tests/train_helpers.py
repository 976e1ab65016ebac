"""Tiny models, data and loops shared by the training tests."""

import os
import signal

import numpy as np
import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.data import digits
from guided_diffusion.script_util import create_model_and_diffusion, model_and_diffusion_defaults

TINY = dict(image_size=8, num_channels=32, num_res_blocks=1, channel_mult="1", attention_resolutions="8",
            num_head_channels=-1, num_heads=1, diffusion_steps=40)


@pytest.fixture
def digits8(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "digits_cache"
    return digits.materialize_digits("heldout", 8, root=root)[0]


@pytest.fixture
def logdir(tmp_path):
    prev = logger.Logger.CURRENT
    logger.configure(dir=str(tmp_path / "log"), format_strs=["log", "csv"])
    yield str(tmp_path / "log")
    logger.Logger.CURRENT.close()
    logger.Logger.CURRENT = prev


def setup_model(seed=0, dropout=0.0, **over):
    """:return: (tiny UNet, its diffusion, the flags that built them)."""
    th.manual_seed(seed)
    np.random.seed(seed)
    flags = model_and_diffusion_defaults()
    flags.update(TINY, dropout=dropout, **over)
    model, diffusion = create_model_and_diffusion(**flags)
    return model, diffusion, flags


def make_loop(cls, model, diffusion, data, **kw):
    """A loop of class `cls` with small test defaults, overridden by `kw`."""
    args = dict(model=model, diffusion=diffusion, data=data, batch_size=4, microbatch=-1, lr=1e-3,
                ema_rate="0.9", log_interval=100, save_interval=100, resume_checkpoint="")
    args.update(kw)
    return cls(**args)


class StopAfter:
    """Data wrapper that sends this process `signum` when batch number `n` is taken."""

    def __init__(self, data, n, signum=signal.SIGTERM):
        self.data, self.n, self.count, self.signum = data, n, 0, signum

    def __iter__(self):
        return self

    def __next__(self):
        self.count += 1
        if self.count == self.n:
            os.kill(os.getpid(), self.signum)
        return next(self.data)

    def state_dict(self):
        return self.data.state_dict()

    def load_state_dict(self, s):
        self.data.load_state_dict(s)


def params(model):
    return [p.detach().clone() for p in model.parameters()]


def straight_and_split(tmp_path, train, total, k):
    """
    Train `total` steps in one go (logs in tmp_path/straight), then the same run stopped by
    SIGTERM at batch `k` and resumed with "auto" (tmp_path/split).

    :param train: `train(total, stop_after=None, resume="")` -> the loop after `run_loop()`.
    :return: (straight, first, resumed) loops.
    """
    logger.configure(dir=str(tmp_path / "straight"), format_strs=[])
    straight = train(total)
    logger.configure(dir=str(tmp_path / "split"), format_strs=[])
    first = train(total, stop_after=k)
    resumed = train(total, resume="auto")
    return straight, first, resumed
