"""benchmarks/bench_trade_off.py: per-item outcomes, paired changes, pairing checks and the feature cache."""

import json
import os

import numpy as np
import pytest
from bench_helpers import PixelFeatures, load_benchmark

from guided_diffusion.data.digits import digits_images, write_reference_npz
from guided_diffusion.scoring.paired import paired_difference
from guided_diffusion.scoring.pixel_judge import digits_judge


bench = load_benchmark("bench_trade_off")


class CountingFeatures(PixelFeatures):
    calls = 0

    def __call__(self, images):
        CountingFeatures.calls += 1
        return super().__call__(images)


def _batches(tmp_path):
    """Real training digits, and the same requests with every other image replaced by noise."""
    images, labels, _ = digits_images("train", 8)
    images, labels = images[:200], labels[:200]
    noisy = images.copy()
    noisy[::2] = np.random.RandomState(0).randint(0, 256, noisy[::2].shape, dtype=np.uint8)
    paths = []
    for name, batch in (("real", images), ("half_noise", noisy)):
        os.makedirs(tmp_path / name)
        paths.append(str(tmp_path / name / "samples.npz"))
        np.savez(paths[-1], arr_0=batch, arr_1=labels)
    return paths, images, noisy, labels


def test_changes_are_paired_differences_of_the_outcomes_and_features_are_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "FeatureExtractor", CountingFeatures)
    reference = str(tmp_path / "heldout.npz")
    write_reference_npz(reference, 8)
    (real, noisy), images, noisy_images, labels = _batches(tmp_path)
    out = tmp_path / "out"
    bench.main(["--reference", reference, real, noisy, "--output_dir", str(out), "--threads", "1"])
    rates = json.loads((out / "results.json").read_text())["rates"]
    judge = digits_judge(8)
    correct = [judge.score(x, labels).predicted == labels for x in (images, noisy_images)]
    assert rates["real"]["judge"] == correct[0].mean() and rates["half_noise"]["judge"] == correct[1].mean()
    # noise is off the digits' manifold: precision falls by about half of the real batch's
    assert rates["half_noise"]["precision"] < rates["real"]["precision"] - 0.3
    diff, se = paired_difference(*correct)
    table = (out / "results.md").read_text()
    assert f"| real -> half_noise | " in table and f"{diff:+.3f} ± {se:.3f} ({diff / se:+.1f} SE)" in table
    assert CountingFeatures.calls == 3  # reference and two batches
    bench.main(["--reference", reference, real, noisy, "--output_dir", str(out), "--threads", "1"])
    assert CountingFeatures.calls == 3  # unchanged files: the cached features


def test_batches_of_other_labels_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "FeatureExtractor", PixelFeatures)
    reference = str(tmp_path / "heldout.npz")
    write_reference_npz(reference, 8)
    (real, _), images, _, labels = _batches(tmp_path)
    shuffled = str(tmp_path / "shuffled.npz")
    np.savez(shuffled, arr_0=images, arr_1=np.roll(labels, 1))
    with pytest.raises(ValueError, match="not paired"):
        bench.main(["--reference", reference, real, shuffled, "--output_dir", str(tmp_path / "out")])
