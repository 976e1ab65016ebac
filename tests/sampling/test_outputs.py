"""The final files: exact npz layout and dtypes, grid and run record beside it."""

import json
import os

import numpy as np
import pytest

from guided_diffusion import logger
from guided_diffusion.sampling.outputs import save_samples


@pytest.fixture()
def quiet_logger(tmp_path):
    with logger.scoped_configure(dir=str(tmp_path), format_strs=[]):
        yield


def test_save_samples_writes_exact_npz_and_grid(tmp_path, quiet_logger):
    arrays = {"arr_0": np.zeros((5, 4, 4, 3), np.uint8), "arr_1": np.arange(5, dtype=np.int32)}
    path = save_samples(str(tmp_path), arrays)
    assert os.path.basename(path) == "samples_5x4x4x3.npz"
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["arr_0", "arr_1"]
        assert f["arr_1"].dtype == np.int64 and f["arr_0"].dtype == np.uint8
    assert os.path.exists(str(tmp_path / "samples_5x4x4x3.png"))


def test_unlabelled_samples_and_the_record(tmp_path, quiet_logger):
    images = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3)
    path = save_samples(str(tmp_path), {"arr_0": images}, grid=False, description=json.dumps({"seed": 5}))
    with np.load(path, allow_pickle=False) as f:
        assert f.files == ["arr_0"] and np.array_equal(f["arr_0"], images)
    assert not os.path.exists(str(tmp_path / "samples_2x3x3x3.png"))
    with open(str(tmp_path / "samples_2x3x3x3.json")) as f:
        assert json.load(f) == {"seed": 5}
