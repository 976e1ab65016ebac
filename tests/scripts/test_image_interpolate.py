"""
image_interpolate.py end to end on a tiny checkpoint: the rows it writes, swapping the sources,
every source flag, and bad input (exit 2, one line naming the flag). In-process like
test_sampling_errors.py; one real `mpiexec -n 2` run is marked slow.
"""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from sample_helpers import MODEL_FLAGS, build_model, flag_list, one_thread, perturb_and_save, run_in_process, run_script

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)

STEPS = int(MODEL_FLAGS["timestep_respacing"])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("interp")
    paths = {"model": str(d / "model.pt"), "cond": str(d / "cond.pt")}
    perturb_and_save(build_model()[0], paths["model"], 0, 0.02)
    perturb_and_save(build_model(class_cond=True, num_classes=3)[0], paths["cond"], 1, 0.05)
    rng = np.random.default_rng(0)
    paths["npz"] = str(d / "base.npz")
    np.savez(paths["npz"], rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8))
    paths["big_npz"] = str(d / "big.npz")
    np.savez(paths["big_npz"], np.zeros((2, 16, 16, 3), np.uint8))
    for name, sizes in (("folder", [8, 8, 8]), ("mixed", [8, 16]), ("big", [16, 16])):
        os.makedirs(d / name)
        for i, s in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (s, s, 3), dtype=np.uint8)).save(d / name / f"{i}.png")
        paths[name] = str(d / name)
    return paths


def _interpolate(files, out_dir, monkeypatch, capsys, model="model", **flags):
    flags = dict(dict(MODEL_FLAGS, model_path=files[model], seed=1, num_lambdas=4, progress=False,
                      output_dir=out_dir), **flags)
    return run_in_process("image_interpolate.py", flag_list(flags), monkeypatch, capsys)


def _rows(out_dir, mode="ddpm", rows=6):
    stem = os.path.join(out_dir, f"interp_{mode}_{rows}x8x8x3")
    with np.load(stem + ".npz") as f:
        arrays = {k: f[k] for k in f.files}
    with open(stem + ".json") as f:
        return arrays, json.load(f)


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_sources_are_the_first_and_last_rows_and_swapping_them_reverses_the_rows(files, tmp_path, monkeypatch,
                                                                                 capsys, mode):
    with np.load(files["npz"]) as f:
        base = f["arr_0"]
    runs = {}
    for indices in ("2,0", "0,2"):
        out = str(tmp_path / indices.replace(",", "_"))
        code, _, err = _interpolate(files, out, monkeypatch, capsys, mode=mode, base_samples=files["npz"],
                                    indices=indices)
        assert code == 0, err[-2000:]
        runs[indices], record = _rows(out, mode)
    rows = runs["2,0"]["arr_0"]
    assert rows.dtype == np.uint8 and np.array_equal(rows[[0, -1]], base[[2, 0]])
    assert runs["2,0"]["lambdas"].tolist() == [0, 1 / 3, 2 / 3, 1]
    assert np.abs(rows.astype(int) - runs["0,2"]["arr_0"][::-1].astype(int)).max() <= 1
    assert record["seed"] == 1 and record["interp_t"] == (STEPS // 2 if mode == "ddpm" else STEPS - 1)


def test_a_folder_and_the_models_own_samples_as_sources(files, tmp_path, monkeypatch, capsys):
    code, _, err = _interpolate(files, str(tmp_path / "dir"), monkeypatch, capsys, data_dir=files["folder"],
                                indices="1,2", num_lambdas=2)
    assert code == 0, err[-2000:]
    rows, record = _rows(str(tmp_path / "dir"), rows=4)
    expected = [np.asarray(Image.open(os.path.join(files["folder"], f"{i}.png"))) for i in (1, 2)]
    assert np.array_equal(rows["arr_0"][0], expected[0]) and np.array_equal(rows["arr_0"][-1], expected[1])
    assert [os.path.basename(p) for p in record["sources"]["data_dir"]] == ["1.png", "2.png"]
    # a class-conditional model with no sources: its own samples, all rows with label 2
    code, _, err = _interpolate(files, str(tmp_path / "own"), monkeypatch, capsys, model="cond", class_cond=True,
                                num_classes=3, class_labels="2", num_lambdas=2)
    assert code == 0, err[-2000:]
    rows, record = _rows(str(tmp_path / "own"), rows=4)
    assert record["label"] == 2 and "sampled" in record["sources"]


@pytest.mark.parametrize("flags, names", [
    (dict(num_lambdas=1), "--num_lambdas"),
    (dict(interp_t=STEPS), "--interp_t"),
    (dict(interp_t=-3), "--interp_t"),
    (dict(mode="ddim", interp_t=1), "--interp_t"),
    (dict(mode="slerp"), "--mode"),
    (dict(data_dir="mixed"), "--data_dir"),
    (dict(data_dir="big"), "--data_dir"),
    (dict(base_samples="big_npz"), "--base_samples"),
    (dict(base_samples="npz", indices="0,9"), "--indices"),
    (dict(base_samples="npz", data_dir="folder"), "--data_dir"),
    (dict(class_labels="1"), "--class_labels"),
])
def test_bad_input_exits_2_with_one_line_naming_the_flag(files, tmp_path, monkeypatch, capsys, flags, names):
    flags = {k: files.get(v, v) if isinstance(v, str) else v for k, v in flags.items()}
    out = str(tmp_path / "bad")
    code, _, err = _interpolate(files, out, monkeypatch, capsys, **flags)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and names in lines[0], err
    assert not os.path.isdir(out) or not [f for f in os.listdir(out) if f.startswith("interp_")]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec")
def test_two_ranks_write_the_rows_of_one(files, tmp_path):
    runs = {}
    for ranks in (1, 2):
        out = str(tmp_path / f"r{ranks}")
        flags = dict(MODEL_FLAGS, model_path=files["model"], seed=4, num_lambdas=5, progress=False, output_dir=out)
        proc = run_script("image_interpolate.py", flag_list(flags), launcher=("mpiexec", "-n", str(ranks)))
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[ranks] = _rows(out, rows=7)[0]["arr_0"].astype(int)
    assert np.abs(runs[1] - runs[2]).max() <= 1
