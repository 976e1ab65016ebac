"""The resumable shard loop: stop and resume give the uninterrupted result; failures stop every rank."""

import os
import signal

import numpy as np
import pytest

from guided_diffusion import logger
from guided_diffusion.data.pixels import to_uint8_nhwc
from guided_diffusion.runtime.cli import RunInterrupted, StoppedBySignal
from guided_diffusion.sampling.seeds import PerSampleNoise
from guided_diffusion.sampling.sharded import run_sharded


def _fake_batch(calls, interrupt_on_call=None):
    def make_batch(indices, seed):
        calls.append(indices.tolist())
        if len(calls) == interrupt_on_call:
            raise KeyboardInterrupt
        noise = PerSampleNoise(seed, indices).initial_noise((len(indices), 3, 2, 2))
        return {"arr_0": to_uint8_nhwc(noise.clamp(-1, 1)), "arr_1": indices * 10}

    return make_batch


@pytest.fixture()
def quiet_logger(tmp_path):
    with logger.scoped_configure(dir=str(tmp_path), format_strs=[]):
        yield


def test_run_sharded_resumes_to_the_uninterrupted_result(tmp_path, quiet_logger):
    config = {"seed": 4, "flags": {"x": 1}}
    full_calls = []
    full, store = run_sharded(str(tmp_path / "a"), config, 7, 3, _fake_batch(full_calls), progress=False)
    assert full["arr_0"].shape == (7, 2, 2, 3) and full["arr_1"].tolist() == [i * 10 for i in range(7)]

    calls = []
    out_b = str(tmp_path / "b")
    with pytest.raises(RunInterrupted, match="1 of 3 shards kept"):
        run_sharded(out_b, config, 7, 3, _fake_batch(calls), progress=False, should_stop=lambda n: n >= 1)
    assert not any(f.startswith("samples_") for f in os.listdir(out_b))
    resumed, _ = run_sharded(out_b, config, 7, 3, _fake_batch(calls), progress=False)
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]  # shard 0 not redone
    for k in full:
        assert np.array_equal(full[k], resumed[k])


def test_should_stop_is_asked_after_each_round_but_the_last(tmp_path, quiet_logger):
    asked = []
    arrays, _ = run_sharded(str(tmp_path), {"seed": 0}, 6, 2, _fake_batch([]), progress=False,
                            should_stop=lambda n: asked.append(n) and False)
    assert asked == [1, 2]  # a run with nothing left to do is never "stopped"
    assert len(arrays["arr_0"]) == 6


def test_ctrl_c_keeps_finished_shards_and_says_how_to_resume(tmp_path, quiet_logger):
    config = {"seed": 1}
    calls = []
    with pytest.raises(StoppedBySignal) as info:
        run_sharded(str(tmp_path), config, 6, 2, _fake_batch(calls, interrupt_on_call=3), progress=False)
    assert info.value.signum == signal.SIGINT
    message = str(info.value)
    assert "2 of 3 shards kept" in message and "rerun the same command to resume" in message
    assert "\n" not in message
    resumed, _ = run_sharded(str(tmp_path), config, 6, 2, _fake_batch(calls), progress=False)
    assert calls[3:] == [[4, 5]]  # only the interrupted shard was redone
    assert resumed["arr_1"].tolist() == [i * 10 for i in range(6)]


_FAILING_RANK_SCRIPT = """
import numpy as np
from guided_diffusion import dist_util, logger
from guided_diffusion.sampling.sharded import run_sharded
comm = dist_util.mpi_comm()
logger.configure(dir={out!r}, format_strs=[])

def make_batch(indices, seed):
    if comm.Get_rank() == 1:
        raise OSError("disk on fire")
    return {{"arr_0": np.zeros((len(indices), 2, 2, 3), np.uint8)}}

run_sharded({out!r}, {{"seed": 0}}, 8, 2, make_batch, progress=False)
"""


@pytest.mark.slow
@pytest.mark.skipif(__import__("shutil").which("mpiexec") is None, reason="mpiexec not installed")
def test_failure_on_one_rank_stops_every_rank(tmp_path):
    import shutil
    import subprocess
    import sys

    script = tmp_path / "fail.py"
    script.write_text(_FAILING_RANK_SCRIPT.format(out=str(tmp_path)))
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    assert "rank 1: OSError: disk on fire" in proc.stderr + proc.stdout
    assert not [f for f in os.listdir(tmp_path) if f.startswith("samples_")]
