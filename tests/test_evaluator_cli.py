"""End-to-end runs of evaluations/evaluator.py on tiny batches, and its user-error handling."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest

from evaluations.batch_stats import BatchStats
from evaluations.evaluator import _metrics, main
from evaluations.fid import compute_statistics, frechet_distance_from_features
from evaluations.precision_recall import precision_recall
from test_evaluator_helpers import needs_weights, write_full_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "evaluations", "evaluator.py")
LABELS = ["Inception Score", "FID", "sFID", "Precision", "Recall"]


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 12, 12, 3), dtype=np.uint8)


def _parse(stdout):
    lines = stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == LABELS
    return {label: float(line.split(": ", 1)[1]) for label, line in zip(LABELS, lines)}


# The end-to-end runs are slow on CPU: each Fréchet distance at D = 2048 takes 10-100 s.
@pytest.mark.slow
@needs_weights
def test_cli_end_to_end_and_cached_reference(tmp_path, capsys):
    ref, sample = str(tmp_path / "ref.npz"), str(tmp_path / "sample.npz")
    np.savez(ref, arr_0=_images(5, 0))
    np.savez_compressed(sample, arr_0=np.concatenate([_images(5, 0)[:3], _images(2, 1)]))
    weights, stats = str(tmp_path / "full.pt"), str(tmp_path / "ref_stats.npz")
    write_full_weights(weights)

    assert main([ref, sample, "--inception", weights, "--save_ref_stats", stats, "--batch_size", "4"]) == 0
    first = _parse(capsys.readouterr().out)
    assert 1.0 <= first["Inception Score"] <= 1008.0
    assert first["FID"] > 0 and first["sFID"] > 0
    assert 0 <= first["Precision"] <= 1 and 0 <= first["Recall"] <= 1

    with np.load(stats, allow_pickle=False) as cached:
        assert set(cached.files) == {"mu", "sigma", "mu_s", "sigma_s", "pool_features"}
        mu, sigma = compute_statistics(cached["pool_features"])
        np.testing.assert_allclose(cached["mu"], mu, rtol=1e-6)
        np.testing.assert_allclose(cached["sigma"], sigma, rtol=1e-6, atol=1e-9)
        assert cached["mu_s"].shape == (2023,) and cached["sigma_s"].shape == (2023, 2023)

    # Cached reference, default (pool-only) weights: same FID/sFID/precision/recall, IS is nan.
    assert main([stats, sample]) == 0
    captured = capsys.readouterr()
    second = _parse(captured.out)
    assert math.isnan(second["Inception Score"]) and "--inception" in captured.err
    for key in ("FID", "sFID"):
        assert second[key] == pytest.approx(first[key], rel=1e-6, abs=1e-6)
    assert (second["Precision"], second["Recall"]) == (first["Precision"], first["Recall"])


@needs_weights
def test_cli_identical_batches_give_zero_fid_and_full_precision_recall(tmp_path, capsys):
    ref = str(tmp_path / "ref.npz")
    np.savez(ref, arr_0=_images(4, 3))
    assert main([ref, ref, "--fid_method", "fast"]) == 0
    captured = capsys.readouterr()
    result = _parse(captured.out)
    # a bar per batch's features (4 images each) and one over the 3 metrics (no softmax: no IS)
    assert "reference: 100%" in captured.err and "samples: 100%" in captured.err and "4/4" in captured.err
    assert "evaluations: 100%" in captured.err and "3/3" in captured.err
    assert (result["Precision"], result["Recall"]) == (1.0, 1.0)
    assert abs(result["FID"]) < 1e-6 and abs(result["sFID"]) < 1e-6


def _batch(features):
    return BatchStats(features, compute_statistics(features), compute_statistics(features[:, :64]),
                      spatial=features[:, :64], stats_from_features=True)


def test_metrics_follow_a_bar_of_one_step_per_metric_or_none(capsys):
    rng = np.random.default_rng(0)
    ref, sample = _batch(rng.normal(size=(6, 2048))), _batch(rng.normal(size=(5, 2048)) + 0.5)
    shown = _metrics(sample, ref, None, "fast", print, progress=True)
    err = capsys.readouterr().err
    assert "evaluations: 100%" in err and "3/3" in err and "sFID (fast)" in err  # no softmax: no IS step
    hidden = _metrics(sample, ref, None, "fast", print, progress=False)
    assert capsys.readouterr().err == ""
    assert shown["fid"] == hidden["fid"] == pytest.approx(frechet_distance_from_features(sample.pool, ref.pool))
    assert (shown["precision"], shown["recall"]) == precision_recall(ref.pool, sample.pool)
    assert math.isnan(shown["inception_score"])


def _run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd="/")


@pytest.mark.parametrize(
    "make, pattern",
    [
        (None, "file not found"),
        (lambda p: np.savez(p, arr_0=_images(3, 0).astype(np.float32) / 255), "convert float images to uint8"),
    ],
)
def test_script_from_checkout_reports_bad_input_without_traceback(tmp_path, make, pattern):
    bad = str(tmp_path / "bad.npz")
    if make is not None:
        make(bad)
    proc = _run_script(bad, bad)  # run as a file from another directory: script-mode imports
    assert proc.returncode != 0
    assert pattern in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"images": _images(3, 0)}, "no images (arr_0)"),
        ({"arr_0": _images(1, 0)}, "at least 2"),
        ({"arr_0": _images(3, 0)[..., :2]}, "expected 3"),
        ({"arr_0": _images(3, 0), "mu": np.zeros(4), "sigma": np.eye(5), "mu_s": np.zeros(4),
          "sigma_s": np.eye(4)}, "do not match"),
        ({"arr_0": _images(3, 0), "mu": np.full(4, np.nan), "sigma": np.eye(4), "mu_s": np.zeros(4),
          "sigma_s": np.eye(4)}, "NaN"),
    ],
)
def test_main_reports_bad_input_with_nonzero_exit(tmp_path, capsys, arrays, pattern):
    bad = str(tmp_path / "bad.npz")
    np.savez(bad, **arrays)
    assert main([bad, bad]) != 0
    captured = capsys.readouterr()
    assert pattern in captured.err and captured.out == ""


@pytest.mark.slow
@needs_weights
def test_several_sample_batches_in_one_call_equal_one_call_each(tmp_path, capsys):
    ref, a, b = (str(tmp_path / f"{n}.npz") for n in ("ref", "a", "b"))
    np.savez(ref, arr_0=_images(6, 0))
    np.savez(a, arr_0=_images(6, 1))
    np.savez(b, arr_0=np.concatenate([_images(6, 0)[:4], _images(2, 2)]))
    singles = []
    for sample in (a, b):
        assert main([ref, sample, "--fid_method", "fast", "--progress", "False"]) == 0
        singles.append(_parse(capsys.readouterr().out))
    assert main([ref, a, b, "--fid_method", "fast", "--progress", "False"]) == 0
    blocks = capsys.readouterr().out.strip().split("== ")[1:]
    assert [block.splitlines()[0] for block in blocks] == [a, b]
    for block, single in zip(blocks, singles):
        together = _parse("\n".join(block.splitlines()[1:]))
        for key in ("FID", "sFID", "Precision", "Recall"):
            assert together[key] == pytest.approx(single[key], rel=1e-6, abs=1e-9)
