"""Test-session setup shared by every test module."""

import os
import sys

# `make test` runs .venv/bin/python without activating the venv: put the interpreter's folder first
# on PATH so that `mpiexec` from the venv's mpich (and nothing from another install) is found by
# the MPI tests and by the subprocesses they start.
_BIN = os.path.dirname(sys.executable)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BIN:
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
