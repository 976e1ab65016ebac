"""Test-session setup shared by every test module."""

import os
import signal
import subprocess
import sys

import pytest

from guided_diffusion.runtime import logger

# `make test` runs .venv/bin/python without activating the venv: put the interpreter's folder first
# on PATH so that `mpiexec` from the venv's mpich (and nothing from another install) is found by
# the MPI tests and by the subprocesses they start.
_BIN = os.path.dirname(sys.executable)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

# A suite started as a background job (CI) inherits SIGINT ignored: Python then installs no
# KeyboardInterrupt handler, and the ignored disposition passes on to every subprocess. The tests
# of Ctrl-C handling, in this process and in the scripts they start, need the interactive default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def restore_logger():
    """Put back the logger a test found, closing any the test configured."""
    prev = logger.Logger.CURRENT
    yield
    if logger.Logger.CURRENT is not prev and logger.Logger.CURRENT is not None:
        logger.Logger.CURRENT.close()
    logger.Logger.CURRENT = prev


def run_quick_demo(out, *extra):
    """scripts/demo.py --quick into `out`. :return: the CompletedProcess (text output captured)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, os.path.join(repo, "scripts", "demo.py"), "--quick", "--output_dir", out,
                           *extra], cwd=repo, capture_output=True, text=True, timeout=3600)


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """
    One quick demo for the session (it takes minutes): (its output folder, the first run's
    CompletedProcess). Tests that write into the folder write only new files beside the demo's.
    """
    out = str(tmp_path_factory.mktemp("quick_demo") / "demo_out")
    first = run_quick_demo(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, first
