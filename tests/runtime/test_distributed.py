"""Distributed helpers: single process, state-dict reading, MPI ranks."""

import os
import pickle
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from guided_diffusion.runtime import distributed as dist_util


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _mpiexec():
    exe = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return exe if os.path.exists(exe) else None


def test_single_process_setup_without_mpi(monkeypatch):
    for v in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMIX_SIZE"):
        monkeypatch.delenv(v, raising=False)
    dist_util.setup_dist()
    dist_util.setup_dist()  # idempotent
    assert dist.get_rank() == 0 and dist.get_world_size() == 1
    assert dist_util.dev() == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))


def test_load_state_dict_round_trip(tmp_path):
    sd = {"w": torch.randn(3, 4), "b": torch.zeros(2)}
    torch.save(sd, tmp_path / "m.pt")
    out = dist_util.load_state_dict(tmp_path / "m.pt", map_location="cpu")
    assert out.keys() == sd.keys() and all(torch.equal(out[k], sd[k]) for k in sd)


def test_load_state_dict_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        dist_util.load_state_dict(tmp_path / "nope.pt")


@pytest.mark.parametrize("kwargs", [{}, {"weights_only": False}])
def test_load_state_dict_refuses_pickled_objects(tmp_path, kwargs):
    torch.save({"obj": object()}, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        dist_util.load_state_dict(tmp_path / "evil.pt", **kwargs)


def test_find_free_port_is_bindable():
    import socket

    port = dist_util._find_free_port()
    s = socket.socket()
    try:
        s.bind(("localhost", port))
    finally:
        s.close()


_TWO_RANK_SCRIPT = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    from guided_diffusion.runtime import distributed as dist_util
    dist_util.setup_dist()
    r = dist.get_rank()
    p = torch.full((4,), float(r + 1))
    dist_util.sync_params([p])
    sd = dist_util.load_state_dict(sys.argv[1], map_location="cpu")
    # One file per rank: lines that mpiexec forwards from two ranks' stdout can get lost or mixed.
    with open(sys.argv[2] + "/result_rank%d.txt" % r, "w") as f:
        f.write(" ".join(str(v) for v in (r, dist.get_world_size(), p.tolist(), sd["w"].tolist())))
    """
)


@pytest.mark.skipif(_mpiexec() is None, reason="mpiexec not installed")
def test_mpiexec_two_ranks_sync_params_and_broadcast_load(tmp_path):
    torch.save({"w": torch.tensor([1.5, -2.0])}, tmp_path / "w.pt")
    script = tmp_path / "two.py"
    script.write_text(_TWO_RANK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run(
        [_mpiexec(), "-n", "2", sys.executable, str(script), str(tmp_path / "w.pt"), str(tmp_path)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, out.stderr
    results = sorted((tmp_path / f"result_rank{r}.txt").read_text() for r in range(2))
    assert results == [
        "0 2 [1.0, 1.0, 1.0, 1.0] [1.5, -2.0]",
        "1 2 [1.0, 1.0, 1.0, 1.0] [1.5, -2.0]",
    ]
