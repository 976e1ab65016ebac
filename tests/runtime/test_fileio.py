"""Atomic writes."""

import os

import numpy as np
import pytest
import torch

from guided_diffusion.runtime.fileio import atomic_savez, atomic_torch_save, atomic_write


def test_atomic_torch_save_round_trip(tmp_path):
    path = tmp_path / "model000001.pt"
    sd = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    atomic_torch_save(sd, path)
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["w"], sd["w"])
    assert os.listdir(tmp_path) == ["model000001.pt"]


def test_atomic_savez_keeps_exact_name(tmp_path):
    path = tmp_path / "shard.npz.part"
    atomic_savez(path, arr_0=np.arange(4, dtype=np.uint8))
    with np.load(path, allow_pickle=False) as f:
        assert f["arr_0"].tolist() == [0, 1, 2, 3]


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"old")

    def broken(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.bin"]


def test_atomic_write_gives_umask_permissions_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "samples.npz"
        atomic_savez(path, arr_0=np.zeros(2, dtype=np.uint8))
    finally:
        os.umask(old)
    assert (os.stat(path).st_mode & 0o777) == 0o644
