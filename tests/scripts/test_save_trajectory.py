"""
--save_trajectory on the sampling scripts: strips of the first samples beside the npz, the npz
itself bit-identical to a run without the flag, and a frame count above the steps refused.
"""

import os

import numpy as np
import pytest

from sample_helpers import MODEL_FLAGS, build_model, flag_list, one_thread, perturb_and_save, run_in_process

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)

STEPS = int(MODEL_FLAGS["timestep_respacing"])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("traj") / "model.pt")
    perturb_and_save(build_model()[0], path, 0, 0.02)
    return path


def _sample(ckpt, out_dir, monkeypatch, capsys, sampler, *extra):
    flags = dict(MODEL_FLAGS, model_path=ckpt, num_samples=5, batch_size=3, seed=2, sampler=sampler,
                 progress=False, output_dir=out_dir)
    return run_in_process("image_sample.py", flag_list(flags) + list(extra), monkeypatch, capsys)


@pytest.mark.parametrize("sampler", ["ancestral", "dpm++2m-sde"])
def test_the_flag_adds_strips_and_leaves_the_npz_bit_identical(ckpt, tmp_path, monkeypatch, capsys, sampler):
    from PIL import Image

    runs = {}
    for name, extra in (("plain", []), ("traj", ["--save_trajectory", "3"])):
        out = str(tmp_path / name)
        code, _, err = _sample(ckpt, out, monkeypatch, capsys, sampler, *extra)
        assert code == 0, err[-2000:]
        with np.load(os.path.join(out, "samples_5x8x8x3.npz")) as f:
            runs[name] = f["arr_0"]
    assert runs["plain"].tobytes() == runs["traj"].tobytes()
    assert not [f for f in os.listdir(tmp_path / "plain") if "trajectory" in f]
    stem = os.path.join(tmp_path, "traj", "samples_5x8x8x3_trajectory")
    with np.load(stem + ".npz") as f:
        # one row per sample of the first batch (3), one column per frame, the last the final sample
        assert f["x_t"].shape == f["pred_x0"].shape == (3, 3, 8, 8, 3)
        assert np.array_equal(f["x_t"][:, -1], runs["traj"][:3])
        ts = f["timesteps"].tolist()
        assert ts[-1] == 0 and all(a > b for a, b in zip(ts, ts[1:]))
    for part in ("x_t", "pred_x0"):
        with Image.open(f"{stem}_{part}.png") as im:
            assert len(im.text["labels"].split(",")) == 9


def test_more_frames_than_steps_exit_2_naming_the_flag(ckpt, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "bad")
    code, _, err = _sample(ckpt, out, monkeypatch, capsys, "ddim", "--save_trajectory", str(STEPS + 1))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--save_trajectory" in lines[0] and f"{STEPS} steps" in lines[0]
    assert not [f for f in os.listdir(out) if f.startswith("samples_")]
