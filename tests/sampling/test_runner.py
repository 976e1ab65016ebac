"""The sampling tail: final files from shards, and a finished seeded run is not redone."""

import json
import os

import numpy as np
import pytest

from guided_diffusion import logger
from guided_diffusion.sampling.runner import sample_to_npz


@pytest.fixture()
def quiet_logger(tmp_path):
    with logger.scoped_configure(dir=str(tmp_path), format_strs=[]):
        yield


def _batch(calls):
    def make_batch(indices, seed):
        calls.append(indices.tolist())
        return {"arr_0": np.full((len(indices), 2, 2, 3), seed % 256, np.uint8), "arr_1": indices}

    return make_batch


def test_final_files_and_no_redo_for_the_same_seeded_config(tmp_path, quiet_logger):
    config = {"script": "t", "flags": {"a": 1}, "seed": 7}
    calls = []
    path = sample_to_npz(str(tmp_path), config, 5, 2, _batch(calls), progress=False)
    assert os.path.basename(path) == "samples_5x2x2x3.npz" and calls == [[0, 1], [2, 3], [4]]
    with np.load(path) as f:
        assert f["arr_1"].tolist() == [0, 1, 2, 3, 4] and (f["arr_0"] == 7).all()
    with open(str(tmp_path / "samples_5x2x2x3.json")) as f:
        assert json.load(f) == {"config": config, "seed": 7}
    assert not [d for d in os.listdir(tmp_path) if d.startswith("sample_shards-")]
    assert sample_to_npz(str(tmp_path), config, 5, 2, _batch(calls), progress=False) == path
    assert len(calls) == 3


def test_unseeded_runs_draw_a_seed_and_always_sample_again(tmp_path, quiet_logger):
    config = {"script": "t", "flags": {}, "seed": None}
    calls = []
    sample_to_npz(str(tmp_path), config, 2, 2, _batch(calls), progress=False)
    sample_to_npz(str(tmp_path), config, 2, 2, _batch(calls), progress=False)
    assert len(calls) == 2
    with open(str(tmp_path / "samples_2x2x2x3.json")) as f:
        assert isinstance(json.load(f)["seed"], int)
