"""benchmarks/bench_solvers.py on a tiny fake `make demo` folder (random networks, no Inception)."""

import json
import os

import numpy as np
import pytest
import torch as th
from PIL import Image
from bench_helpers import PixelFeatures, load_benchmark
from sample_helpers import CLASSIFIER_FLAGS, MODEL_FLAGS, one_thread, perturb

from guided_diffusion.config.defaults import classifier_defaults, model_and_diffusion_defaults
from guided_diffusion.config.factory import create_classifier, create_model_and_diffusion
from guided_diffusion.data.digits import digits_images, write_reference_npz
from guided_diffusion.scoring.pixel_judge import digits_judge

bench = load_benchmark("bench_solvers")
single_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def write_run_dir(folder):
    """A `make demo`-shaped folder: diffusion/ (class-conditional, label dropout), guide/, held-out npz."""
    model_flags = dict(model_and_diffusion_defaults(), **MODEL_FLAGS)
    model_flags.update(timestep_respacing="", learn_sigma=True, class_cond=True, num_classes=10,
                       class_dropout_prob=0.15)
    guide_flags = dict(classifier_defaults(), image_size=8, **CLASSIFIER_FLAGS, num_classes=10)
    th.manual_seed(0)
    for name, net, flags, files in (
        ("diffusion", create_model_and_diffusion(**model_flags)[0], dict(model_flags, ema_rate="0.995"),
         ("ema_0.995_000004.pt", "ema_0.995_000010.pt", "model000010.pt")),
        ("guide", create_classifier(**guide_flags), guide_flags, ("model000006.pt",)),
    ):
        os.makedirs(folder / name)
        with open(folder / name / "args.json", "w") as f:
            json.dump(flags, f)
        for file in files:
            th.save(perturb(net, 1, 0.02).state_dict(), folder / name / file)
    write_reference_npz(str(folder / "reference_heldout_8px.npz"), 8, split="heldout")
    return folder


def test_latest_checkpoint_picks_the_largest_step_of_the_pattern(tmp_path):
    for name in ("ema_0.995_000010.pt", "ema_0.995_000200.pt", "ema_0.9999_000300.pt", "model000500.pt"):
        (tmp_path / name).write_bytes(b"")
    assert bench.latest_checkpoint(str(tmp_path), "ema_0.995_%06d.pt") == str(tmp_path / "ema_0.995_000200.pt")
    assert bench.latest_checkpoint(str(tmp_path), "model%06d.pt") == str(tmp_path / "model000500.pt")
    with pytest.raises(ValueError, match="--run_dir: no ema_0.99_NNNNNN.pt"):
        bench.latest_checkpoint(str(tmp_path), "ema_0.99_%06d.pt")


def test_floor_batch_draws_training_digits_without_replacement():
    train, train_labels, _ = digits_images("train", 8)
    everything, labels = bench.floor_batch(8, len(train), seed=3)
    order = lambda imgs: np.lexsort(imgs.reshape(len(imgs), -1).T)  # noqa: E731
    assert np.array_equal(everything[order(everything)], train[order(train)])
    assert np.array_equal(np.bincount(labels, minlength=10), np.bincount(train_labels, minlength=10))
    a, b, c = (bench.floor_batch(8, 50, seed)[0] for seed in (0, 0, 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match=f"--num_samples {len(train) + 1}"):
        bench.floor_batch(8, len(train) + 1, seed=0)


def test_floor_batch_is_the_demos_floor_batch(tmp_path, monkeypatch):
    from guided_diffusion.demo.pipeline import prepare_data
    from guided_diffusion.demo.recipe import SEED

    monkeypatch.setenv("GUIDED_DIFFUSION_CACHE", str(tmp_path / "cache"))
    (tmp_path / "demo").mkdir()
    _, _, floor_npz = prepare_data(str(tmp_path / "demo"), 40)
    images, labels = bench.floor_batch(8, 40, SEED)
    with np.load(floor_npz) as demo:
        assert np.array_equal(images, demo["arr_0"]) and np.array_equal(labels, demo["arr_1"])


def test_base_model_is_built_with_its_null_label_row(tmp_path):
    run = write_run_dir(tmp_path / "run")
    model, flags, path = bench.load_network(str(run / "diffusion"), "model", th.device("cpu"))
    assert path.endswith("ema_0.995_000010.pt")
    assert flags["class_dropout_prob"] == 0.15 and model.label_emb.weight.shape[0] == 11


def test_table_puts_the_floor_first_and_divides_by_the_baseline():
    base = dict(sampler="ancestral", grid="250", evaluations=250, fid=10.0, accuracy=0.9, accuracy_se=0.03,
                on_manifold=0.95, seconds_per_sample=2.0)
    fast = dict(base, sampler="dpm++2m", grid="logsnr20", evaluations=20, fid=10.5, seconds_per_sample=0.25)
    floor = dict(sampler="real vs real (100 train vs 300 held-out)", grid="-", evaluations=0, fid=4.0,
                 accuracy=0.96, accuracy_se=0.011, on_manifold=1.0)
    header, _, floor_line, base_line, fast_line = bench.format_table([base, fast], base, floor).splitlines()
    assert bench.JUDGE_LABEL in header
    assert floor_line == "| real vs real (100 train vs 300 held-out) | - | - | 4.000 | 0.960 ± 0.011 | 1.000 | - | 0.400 | - |"
    assert base_line.endswith("| 2.0000 | 1.000 | 1.000 |")
    assert fast_line == "| dpm++2m | logsnr20 | 20 | 10.500 | 0.900 ± 0.030 | 0.950 | 0.2500 | 1.050 | 0.125 |"


def test_dpm_samplers_run_on_every_listed_grid_and_the_others_evenly():
    points = bench.planned_points(["ancestral", "dpm++2m"], [10, 20], ["logsnr", "karras"])
    assert points == [("ancestral", 10, "uniform"), ("ancestral", 20, "uniform"), ("dpm++2m", 10, "logsnr"),
                      ("dpm++2m", 20, "logsnr"), ("dpm++2m", 10, "karras"), ("dpm++2m", 20, "karras")]
    assert [bench.respacing_for(s, n, g) for s, n, g in points] == ["10", "20", "logsnr10", "logsnr20",
                                                                    "karras10", "karras20"]
    assert bench.parse_args(["--dpm_grid", "karras,logsnr"]).dpm_grid == ["karras", "logsnr"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--dpm_grid", "logsnr,cosine"])


def test_plot_has_a_line_per_sampler_and_grid_only_where_grids_differ():
    rows = [dict(sampler=s, grid=g) for s, g in (("ancestral", "250"), ("dpm++2m", "logsnr20"),
                                                 ("dpm++2m", "karras20"), ("dpm++2m", "logsnr10"))]
    series = bench.plot_series(rows)
    assert [(label, len(members)) for label, _, members in series] == [
        ("ancestral", 1), ("dpm++2m logsnr", 2), ("dpm++2m karras", 1)]
    assert series[1][1] == bench.COLOURS["dpm++2m"] and series[2][1] != series[1][1]
    third = bench.plot_series(rows + [dict(sampler="dpm++2m", grid="20")])[3]
    assert third[0] == "dpm++2m even" and len({series[1][1], series[2][1], third[1]}) == 3


def test_baseline_is_the_longest_ancestral_run_whatever_was_asked_last():
    rows = [dict(sampler="ancestral", steps=n) for n in (20, 250, 50)] + [dict(sampler="ddim", steps=500)]
    assert bench.baseline_row(rows) is rows[1]
    assert bench.baseline_row(rows[3:]) is None


def test_bootstrap_errors_go_to_the_points_with_features_and_into_the_table(tmp_path):
    rng = np.random.default_rng(0)
    ref_pool, base_pool = rng.standard_normal((60, 8)), rng.standard_normal((80, 8)) + 0.5
    base = dict(sampler="ancestral", grid="250", evaluations=250, fid=10.0, accuracy=0.9, accuracy_se=0.03,
                on_manifold=0.95, seconds_per_sample=2.0)
    fast = dict(base, sampler="dpm++2m", grid="logsnr20", evaluations=20, fid=10.5, seconds_per_sample=0.25)
    lost = dict(base, sampler="dpm++3m", grid="logsnr20", evaluations=20, fid_se=1.0)  # its features are gone
    (tmp_path / "features").mkdir()
    np.save(bench.features_path(str(tmp_path), base), base_pool)
    np.save(bench.features_path(str(tmp_path), fast), base_pool + 0.1 * rng.standard_normal((80, 8)))
    bench.add_bootstrap_errors([base, fast, lost], base, ref_pool, str(tmp_path), num_draws=50)
    # pairing: the near-copy's ratio to the baseline moves less than its own FID does, relatively
    own_fid = bench.bootstrap_fids(ref_pool, [np.load(bench.features_path(str(tmp_path), fast))], 50)[:, 0].mean()
    assert base["fid_ratio_se"] == 0 and 0 < fast["fid_ratio_se"] < fast["fid_se"] / own_fid / 2
    assert "fid_se" not in lost and "fid_ratio_se" not in lost
    line = bench.format_row(fast, base)
    assert f"| 10.500 ± {fast['fid_se']:.3f} |" in line and f"| 1.050 ± {fast['fid_ratio_se']:.3f} |" in line
    bench.add_bootstrap_errors([base, fast], base, ref_pool, str(tmp_path), num_draws=0)
    assert "fid_se" not in fast and "± " not in bench.format_row(fast, base).split("|")[4]


@pytest.mark.slow  # three benchmark runs: about 10 s of CPU
def test_bench_scores_resumes_and_restarts_on_new_settings(tmp_path, monkeypatch):
    run = write_run_dir(tmp_path / "run")
    monkeypatch.setattr(bench, "FeatureExtractor", PixelFeatures)
    produced = []

    branches = []

    def counting(*args, **kwargs):
        branches.append(kwargs["guidance_scale"])
        produced.append(real(*args, **kwargs))
        return produced[-1]

    real = bench.generate_samples
    monkeypatch.setattr(bench, "generate_samples", counting)
    out = tmp_path / "out"
    common = ["--run_dir", str(run), "--output_dir", str(out), "--num_samples", "4", "--batch_size", "4",
              "--samplers", "ddim,dpm++2m", "--device", "cpu", "--threads", "1"]
    bench.main(common + ["--steps", "3,4"])
    first = json.loads((out / "results.json").read_text())
    assert [(r["sampler"], r["steps"], r["evaluations"]) for r in first["rows"]] == [
        ("ddim", 3, 3), ("ddim", 4, 4), ("dpm++2m", 3, 3), ("dpm++2m", 4, 4)]
    judge = digits_judge(8)
    for (images, labels), row in zip(produced, first["rows"]):
        assert np.array_equal(labels, np.arange(4) % 10)
        assert row["accuracy"] == judge.score(images, labels).accuracy
    held_out = np.load(run / "reference_heldout_8px.npz")
    assert first["floor"]["accuracy"] == judge.score(held_out["arr_0"], held_out["arr_1"]).accuracy
    table = (out / "results.md").read_text()
    assert bench.JUDGE_LABEL in table and "| real vs real (4 train vs 300 held-out) |" in table
    assert Image.open(out / "fid_vs_evaluations.png").size == (840, 480)

    bench.main(common + ["--steps", "3,4,5"])
    second = json.loads((out / "results.json").read_text())
    assert len(produced) == 6 and second["floor"] == first["floor"]
    assert [r for r in second["rows"] if r["steps"] != 5] == first["rows"]  # kept, bootstrap errors included
    # each point's FID error is the spread of its bootstrap draws over the kept pool features
    ref_pool = PixelFeatures()(held_out["arr_0"])["pool"]
    kept = [np.load(out / "features" / f"{r['sampler']}_{r['grid']}.npy") for r in second["rows"]]
    draws = bench.bootstrap_fids(ref_pool, kept, num_draws=200)
    assert [r["fid_se"] for r in second["rows"]] == pytest.approx(list(draws.std(axis=0, ddof=1)), rel=1e-9)
    assert all(r["fid_se"] > 0 and "fid_ratio_se" not in r for r in second["rows"])  # no ancestral baseline
    bench.main(common + ["--steps", "3", "--classifier_scale", "2"])
    assert len(produced) == 8 and len(json.loads((out / "results.json").read_text())["rows"]) == 2
    assert branches == [None] * 8  # the null label: classifier guidance alone
    bench.main(common + ["--steps", "3", "--classifier_scale", "2", "--branch", "conditional"])
    assert len(produced) == 10 and branches[-1] == 1.0  # the requested label's branch (ADM-G): a new run
    assert not np.array_equal(produced[-1][0], produced[-3][0])  # same sampler, steps and scale, other branch
    # a second grid adds only its own points to the same run, beside the same baseline
    bench.main(common + ["--steps", "3", "--classifier_scale", "2", "--branch", "conditional",
                         "--dpm_grid", "logsnr,karras"])
    grids = [(r["sampler"], r["grid"]) for r in json.loads((out / "results.json").read_text())["rows"]]
    assert len(produced) == 11 and grids == [("ddim", "3"), ("dpm++2m", "karras3"), ("dpm++2m", "logsnr3")]
