"""Bits per dimension over real images: exact sample counts, the bound's sum, the progress bar."""

import numpy as np
import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.script_util import create_gaussian_diffusion
from guided_diffusion.scoring.bpd import METRIC_KEYS, TERM_KEYS, run_bpd_evaluation, save_terms, summarize

STEPS = 5


def _data(batch, seed=0):
    g = th.Generator().manual_seed(seed)
    while True:
        yield th.rand(batch, 3, 4, 4, generator=g) * 2 - 1, {}


class _CountingModel:
    """eps = 0.1 * x: a fixed, cheap model whose calls are counted."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return 0.1 * x


@pytest.fixture()
def quiet_logger(tmp_path):
    with logger.scoped_configure(dir=str(tmp_path), format_strs=[]):
        yield


def test_exact_sample_count_and_total_is_prior_plus_terms(quiet_logger):
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing=str(STEPS))
    model = _CountingModel()
    results = run_bpd_evaluation(model, diffusion, _data(2), num_samples=3, device="cpu", progress=False)
    assert sorted(results) == sorted(METRIC_KEYS)
    assert results["total_bpd"].shape == (3,) and results["vb"].shape == (3, STEPS)
    assert model.calls == 2 * STEPS  # two batches of 2 for 3 samples, one call per timestep each
    assert np.allclose(results["total_bpd"], results["prior_bpd"] + results["vb"].sum(axis=1), rtol=1e-5)


def test_progress_bar_counts_every_timestep_of_every_batch(quiet_logger, capsys):
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing=str(STEPS))
    run_bpd_evaluation(_CountingModel(), diffusion, _data(2), num_samples=3, device="cpu", progress=True)
    err = capsys.readouterr().err
    assert f"{2 * STEPS}/{2 * STEPS}" in err and "bpd timesteps" in err


def test_summary_and_term_files(tmp_path):
    rng = np.random.RandomState(0)
    results = {"total_bpd": rng.rand(4), "prior_bpd": rng.rand(4)}
    results.update({k: rng.rand(4, STEPS) for k in TERM_KEYS})
    summary = summarize(results)
    assert summary["samples"] == 4
    assert summary["vb"] == pytest.approx(results["vb"].sum() / 4)
    assert summary["mse"] == pytest.approx(results["mse"].mean())
    assert summary["bpd"] == pytest.approx(results["total_bpd"].mean())
    for path, name in zip(save_terms(str(tmp_path), results), TERM_KEYS):
        with np.load(path) as f:
            assert np.allclose(f["arr_0"], results[name].mean(axis=0))
