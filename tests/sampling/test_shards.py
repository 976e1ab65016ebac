"""Resumable sample shards: exact coverage, keys, atomic round trips, refusal of bad shards."""

import os

import numpy as np
import pytest

from guided_diffusion.sampling.shards import ShardStore, config_key, file_fingerprint, shard_ranges


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




def test_file_fingerprint_changes_when_the_file_is_rewritten(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"abc")
    first = file_fingerprint(str(path))
    os.utime(path, ns=(1, 1))
    assert file_fingerprint(str(path)) != first
    assert file_fingerprint("") is None
    assert file_fingerprint(str(tmp_path / "missing.pt")) == {"path": str(tmp_path / "missing.pt")}
