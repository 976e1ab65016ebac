"""Unit tests of the sampling library parts: per-sample seeds, labels, shards, grid, driver loop."""

import os

import numpy as np
import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.sampling.grid import PAD, grid_layout, make_grid, save_grid
from guided_diffusion.sampling.labels import labels_for_indices, parse_class_labels
from guided_diffusion.sampling.seeds import PerSampleNoise, derive_seed, random_labels
from guided_diffusion.sampling.shards import ShardStore, config_key, shard_ranges
from guided_diffusion.sampling import runner as sample_util


# ---------------------------------------------------------------- seeds


def test_derived_seeds_differ_by_index_stream_and_seed():
    seeds = {derive_seed(s, i, k) for s in (0, 1) for i in range(50) for k in (0, 1)}
    assert len(seeds) == 200
    assert all(0 <= v < 2**63 for v in seeds)
    assert derive_seed(7, 3, 0) == derive_seed(7, 3, 0)


def test_sample_noise_independent_of_batch_composition():
    big = PerSampleNoise(5, range(6))
    x_big = big.initial_noise((6, 3, 4, 4))
    steps_big = [big.noise_fn(x_big) for _ in range(3)]
    small = PerSampleNoise(5, [3, 4])
    x_small = small.initial_noise((2, 3, 4, 4))
    steps_small = [small(x_small) for _ in range(3)]
    assert th.equal(x_small, x_big[3:5])
    for a, b in zip(steps_small, steps_big):
        assert th.equal(a, b[3:5])


def test_sample_noise_steps_are_fresh_and_standard_normal():
    noise = PerSampleNoise(0, range(4))
    x = noise.initial_noise((4, 3, 16, 16))
    s1, s2 = noise(x), noise(x)
    assert not th.equal(s1, s2) and not th.equal(x, s1)
    allv = th.cat([x.flatten(), s1.flatten(), s2.flatten()])
    assert abs(allv.mean().item()) < 0.05 and abs(allv.std().item() - 1) < 0.05
    assert s1.dtype == x.dtype and s1.shape == x.shape


def test_sample_noise_follows_dtype_and_rejects_wrong_batch():
    noise = PerSampleNoise(0, range(2))
    x = th.zeros(2, 3, 4, 4, dtype=th.float64)
    assert noise(x).dtype == th.float64
    with pytest.raises(ValueError, match="3"):
        noise(th.zeros(3, 3, 4, 4))


# ---------------------------------------------------------------- labels


def test_parse_class_labels_forms():
    assert parse_class_labels("", 10) is None
    assert parse_class_labels("balanced", 10) == "balanced"
    assert parse_class_labels(" 3, 1,4 ", 10) == (3, 1, 4)
    with pytest.raises(ValueError, match="outside"):
        parse_class_labels("3,10", 10)
    with pytest.raises(ValueError, match="'x'"):
        parse_class_labels("3,x", 10)


def test_balanced_and_cycled_labels():
    idx = np.arange(7)
    assert labels_for_indices("balanced", 0, idx, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert labels_for_indices((5, 2), 0, idx, 10).tolist() == [5, 2, 5, 2, 5, 2, 5]
    assert labels_for_indices((5, 2), 0, idx, 10).dtype == np.int64


def test_random_labels_per_sample_and_in_range():
    a = random_labels(3, range(200), 10)
    b = np.concatenate([random_labels(3, range(0, 120), 10), random_labels(3, range(120, 200), 10)])
    assert np.array_equal(a, b)
    assert a.min() >= 0 and a.max() < 10 and len(np.unique(a)) == 10
    assert not np.array_equal(a, random_labels(4, range(200), 10))


# ---------------------------------------------------------------- shards


def test_shard_ranges_cover_exactly():
    r = shard_ranges(10, 4)
    assert r == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(8, 4) == [(0, 4), (4, 8)]
    for bad in [(0, 4), (-1, 4), (4, 0)]:
        with pytest.raises(ValueError):
            shard_ranges(*bad)


def test_config_key_depends_on_every_value():
    base = {"flags": {"a": 1, "b": "x"}, "seed": 3}
    assert config_key(base) == config_key({"seed": 3, "flags": {"b": "x", "a": 1}})
    assert config_key(base) != config_key({"flags": {"a": 2, "b": "x"}, "seed": 3})
    assert config_key(base) != config_key({"flags": {"a": 1, "b": "x"}, "seed": 4})


def _arrays(start, end):
    idx = np.arange(start, end)
    return {"arr_0": np.full((end - start, 2, 2, 3), idx[:, None, None, None], np.uint8), "arr_1": idx.astype(np.int64)}


def test_shard_store_round_trip_and_assembly(tmp_path):
    store = ShardStore(str(tmp_path), {"seed": 1})
    assert store.open(fresh_seed=99) == 1
    ranges = shard_ranges(5, 2)
    store.save(0, 0, 2, _arrays(0, 2))
    store.save(2, 4, 5, _arrays(4, 5))
    assert store.done(ranges) == [0, 2]
    with pytest.raises(RuntimeError, match="shard 1"):
        store.assemble(ranges)
    store.save(1, 2, 4, _arrays(2, 4))
    out = store.assemble(ranges)
    assert out["arr_1"].tolist() == [0, 1, 2, 3, 4]
    assert out["arr_0"][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    store.remove()
    assert not os.path.exists(store.dir)


def test_shard_store_rejects_corrupt_or_misplaced_shard(tmp_path):
    store = ShardStore(str(tmp_path), {"seed": 1})
    store.open(0)
    ranges = shard_ranges(4, 2)
    with open(store.shard_path(0), "wb") as f:
        f.write(b"not an npz")
    store.save(1, 0, 2, _arrays(0, 2))  # rows of shard 0 written as shard 1
    assert store.done(ranges) == []


def test_unseeded_store_keeps_its_first_seed_and_configs_do_not_share(tmp_path):
    s1 = ShardStore(str(tmp_path), {"seed": None, "flags": {"n": 1}})
    assert s1.open(fresh_seed=11) == 11
    assert ShardStore(str(tmp_path), {"seed": None, "flags": {"n": 1}}).open(fresh_seed=22) == 11
    other = ShardStore(str(tmp_path), {"seed": None, "flags": {"n": 2}})
    assert other.dir != s1.dir and other.open(fresh_seed=33) == 33


# ---------------------------------------------------------------- grid


def test_grid_cells_hold_the_upscaled_images_and_labels(tmp_path):
    rng = np.random.RandomState(0)
    imgs = rng.randint(0, 256, size=(10, 8, 8, 3)).astype(np.uint8)
    sheet, scale, cw, ch = make_grid(imgs, labels=np.arange(10), max_cols=4, min_cell=32)
    assert scale == 4 and cw == 32 and ch > 32
    rows, cols = grid_layout(10, 4)
    assert (rows, cols) == (3, 4)
    arr = np.asarray(sheet)
    assert arr.shape == (PAD + rows * (ch + PAD), PAD + cols * (cw + PAD), 3)
    for i in (0, 5, 9):
        r, c = divmod(i, cols)
        x0, y0 = PAD + c * (cw + PAD), PAD + r * (ch + PAD)
        cell = arr[y0 : y0 + 32, x0 : x0 + 32]
        assert np.array_equal(cell, imgs[i].repeat(4, 0).repeat(4, 1))
    path = str(tmp_path / "g.png")
    assert save_grid(path, imgs, np.arange(10) * 3) == 10
    from PIL import Image

    with Image.open(path) as im:
        assert im.text["labels"] == ",".join(str(3 * i) for i in range(10))


# ---------------------------------------------------------------- driver


def test_images_to_uint8_closed_form():
    x = th.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = sample_util.images_to_uint8(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 5, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 255, 255]


def _fake_batch(calls):
    def make_batch(indices, seed):
        calls.append(indices.tolist())
        noise = PerSampleNoise(seed, indices).initial_noise((len(indices), 3, 2, 2))
        return {"arr_0": sample_util.images_to_uint8(noise.clamp(-1, 1)), "arr_1": indices * 10}

    return make_batch


@pytest.fixture()
def quiet_logger(tmp_path):
    with logger.scoped_configure(dir=str(tmp_path), format_strs=[]):
        yield


def test_run_sharded_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, quiet_logger):
    config = {"seed": 4, "flags": {"x": 1}}
    full_calls = []
    full, store = sample_util.run_sharded(str(tmp_path / "a"), config, 7, 3, _fake_batch(full_calls), progress=False)
    assert full["arr_0"].shape == (7, 2, 2, 3) and full["arr_1"].tolist() == [i * 10 for i in range(7)]

    calls = []
    out_b = str(tmp_path / "b")
    monkeypatch.setenv(sample_util.STOP_AFTER_ENV, "1")
    with pytest.raises(sample_util.SamplingInterrupted):
        sample_util.run_sharded(out_b, config, 7, 3, _fake_batch(calls), progress=False)
    assert not any(f.startswith("samples_") for f in os.listdir(out_b))
    monkeypatch.delenv(sample_util.STOP_AFTER_ENV)
    resumed, _ = sample_util.run_sharded(out_b, config, 7, 3, _fake_batch(calls), progress=False)
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]  # shard 0 not redone
    for k in full:
        assert np.array_equal(full[k], resumed[k])


def test_save_samples_writes_exact_npz_and_grid(tmp_path, quiet_logger):
    arrays = {"arr_0": np.zeros((5, 4, 4, 3), np.uint8), "arr_1": np.arange(5, dtype=np.int32)}
    path = sample_util.save_samples(str(tmp_path), arrays)
    assert os.path.basename(path) == "samples_5x4x4x3.npz"
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["arr_0", "arr_1"]
        assert f["arr_1"].dtype == np.int64 and f["arr_0"].dtype == np.uint8
    assert os.path.exists(str(tmp_path / "samples_5x4x4x3.png"))


_FAILING_RANK_SCRIPT = """
import numpy as np
from guided_diffusion import dist_util, logger
from guided_diffusion.sampling import runner as sample_util
comm = dist_util.mpi_comm()
logger.configure(dir={out!r}, format_strs=[])

def make_batch(indices, seed):
    if comm.Get_rank() == 1:
        raise OSError("disk on fire")
    return {{"arr_0": np.zeros((len(indices), 2, 2, 3), np.uint8)}}

sample_util.run_sharded({out!r}, {{"seed": 0}}, 8, 2, make_batch, progress=False)
"""


@pytest.mark.slow
@pytest.mark.skipif(__import__("shutil").which("mpiexec") is None, reason="mpiexec not installed")
def test_failure_on_one_rank_stops_every_rank(tmp_path):
    import shutil
    import subprocess
    import sys

    script = tmp_path / "fail.py"
    script.write_text(_FAILING_RANK_SCRIPT.format(out=str(tmp_path)))
    proc = subprocess.run([shutil.which("mpiexec"), "-n", "2", sys.executable, str(script)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode != 0
    assert "rank 1: OSError: disk on fire" in proc.stderr + proc.stdout
    assert not [f for f in os.listdir(tmp_path) if f.startswith("samples_")]
