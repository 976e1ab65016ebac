"""The run record: what keys a run, and finding a finished run with the same record."""

import argparse
import json

from guided_diffusion.sampling.record import find_finished, run_config
from guided_diffusion.sampling.shards import config_key


def _args(**kw):
    base = dict(seed=3, output_dir="/x", progress=True, num_samples=4, model_path="")
    base.update(kw)
    return argparse.Namespace(**base)


def test_run_config_ignores_where_and_how_loudly_but_keeps_everything_else():
    a = run_config("image_sample", _args())
    assert a == run_config("image_sample", _args(output_dir="/y", progress=False))
    assert a != run_config("image_sample", _args(num_samples=5))
    assert a != run_config("classifier_sample", _args())
    assert a["seed"] == 3 and "output_dir" not in a["flags"]


def test_negative_seed_means_unseeded():
    assert run_config("image_sample", _args(seed=-1))["seed"] is None


def _finish(tmp_path, config, n=4):
    stem = tmp_path / f"samples_{n}x8x8x3"
    (tmp_path / f"{stem.name}.npz").write_bytes(b"")
    (tmp_path / f"{stem.name}.json").write_text(json.dumps({"config": config, "seed": config["seed"]}))
    return str(tmp_path / f"{stem.name}.npz")


def test_find_finished_matches_only_the_same_seeded_config(tmp_path):
    config = run_config("image_sample", _args())
    npz = _finish(tmp_path, config)
    assert find_finished(str(tmp_path), config, 4) == npz
    assert find_finished(str(tmp_path), run_config("image_sample", _args(seed=4)), 4) is None
    assert find_finished(str(tmp_path), config, 5) is None
    assert find_finished(str(tmp_path / "missing"), config, 4) is None


def test_unseeded_runs_are_never_finished(tmp_path):
    config = run_config("image_sample", _args(seed=-1))
    _finish(tmp_path, config)
    assert find_finished(str(tmp_path), config, 4) is None


def test_the_sampler_keys_the_shards():
    ddim = run_config("image_sample", _args(sampler="ddim"))
    assert ddim["flags"]["sampler"] == "ddim"
    assert config_key(ddim) != config_key(run_config("image_sample", _args(sampler="dpm++2m")))
