"""Test-session setup shared by every test module."""

import os
import sys

import pytest

from guided_diffusion.runtime import logger

# `make test` runs .venv/bin/python without activating the venv: put the interpreter's folder first
# on PATH so that `mpiexec` from the venv's mpich (and nothing from another install) is found by
# the MPI tests and by the subprocesses they start.
_BIN = os.path.dirname(sys.executable)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture
def restore_logger():
    """Put back the logger a test found, closing any the test configured."""
    prev = logger.Logger.CURRENT
    yield
    if logger.Logger.CURRENT is not prev and logger.Logger.CURRENT is not None:
        logger.Logger.CURRENT.close()
    logger.Logger.CURRENT = prev
