"""image_nll.py on a tiny random model and a folder of 8x8 PNGs."""

import csv
import os

import numpy as np
import pytest
from PIL import Image

from sample_helpers import MODEL_FLAGS, build_model, flag_list, one_thread, perturb_and_save, run_in_process

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)

STEPS = int(MODEL_FLAGS["timestep_respacing"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("nll")
    data = d / "images"
    data.mkdir()
    rng = np.random.RandomState(0)
    for i in range(4):
        Image.fromarray(rng.randint(0, 256, size=(8, 8, 3)).astype(np.uint8)).save(str(data / f"img_{i}.png"))
    model_path = str(d / "model.pt")
    perturb_and_save(build_model()[0], model_path, 0, 0.02)
    return str(data), model_path


def _run(setup, out_dir, monkeypatch, capsys, **extra):
    data, model_path = setup
    flags = dict(MODEL_FLAGS, model_path=model_path, data_dir=data, num_samples=3, batch_size=2, seed=1,
                 output_dir=out_dir)
    flags.update(extra)
    code, out, err = run_in_process("image_nll.py", flag_list(flags), monkeypatch, capsys)
    return code, out, err


def _logged(out_dir):
    with open(os.path.join(out_dir, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    return {k: float(v) for k, v in rows[0].items()}


def test_image_nll_terms_and_total(setup, tmp_path, monkeypatch, capsys):
    code, out, err = _run(setup, str(tmp_path), monkeypatch, capsys)
    assert code == 0, err[-2000:]
    terms = {}
    for name in ("vb", "mse", "xstart_mse"):
        with np.load(str(tmp_path / f"{name}_terms.npz"), allow_pickle=False) as f:
            terms[name] = f["arr_0"]
        assert terms[name].shape == (STEPS,)
        assert np.all(np.isfinite(terms[name]))
    assert np.all(terms["vb"] >= 0)  # KL terms and the decoder NLL are non-negative
    logged = _logged(str(tmp_path))
    assert logged["samples"] == 3  # exactly num_samples, though batches hold 2
    # total bits/dim = prior term + sum over t of the bound terms (means over the same samples)
    assert logged["bpd"] == pytest.approx(logged["prior_bpd"] + terms["vb"].sum(), rel=1e-5)
    assert logged["vb"] == pytest.approx(terms["vb"].sum(), rel=1e-5)
    # the bar follows every timestep of both rounds of batches (2 + 1 images)
    assert "bpd timesteps" in err and f"{2 * STEPS}/{2 * STEPS}" in err
    assert "done 3 samples" in out


def test_image_nll_seed_makes_it_reproducible(setup, tmp_path, monkeypatch, capsys):
    values = []
    for name in ("a", "b"):
        code, _, err = _run(setup, str(tmp_path / name), monkeypatch, capsys)
        assert code == 0, err[-2000:]
        values.append(_logged(str(tmp_path / name))["bpd"])
    assert values[0] == values[1]


def test_image_nll_bad_data_dir(setup, tmp_path, monkeypatch, capsys):
    code, _, err = _run(setup, str(tmp_path), monkeypatch, capsys, data_dir=str(tmp_path / "missing"))
    assert code == 2 and "--data_dir" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", ["batch_size", "num_samples"])
def test_image_nll_zero_count_is_refused_before_any_work(setup, tmp_path, monkeypatch, capsys, flag):
    out_dir = tmp_path / "out"
    code, _, err = _run(setup, str(out_dir), monkeypatch, capsys, **{flag: 0})
    assert code == 2 and f"--{flag} must be a positive integer, got 0" in err and "Traceback" not in err
    assert not out_dir.exists()  # refused before the output folder was made
