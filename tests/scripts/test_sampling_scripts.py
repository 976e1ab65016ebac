"""
End-to-end tests of image_sample.py, classifier_sample.py and super_res_sample.py on tiny
randomly initialised checkpoints. The reference runs are real subprocesses (under `mpiexec -n 1`
and `-n 2`); the others run the script as __main__ in-process to keep the suite fast.
"""

import functools
import json
import os
import shutil
import time

import numpy as np
import pytest
import torch as th

from guided_diffusion.data.pixels import to_uint8_nhwc as images_to_uint8
from guided_diffusion.runtime.cli import INTERRUPTED_EXIT_CODE
from guided_diffusion.sampling import runner
from guided_diffusion.sampling.samplers import run_sampler
from guided_diffusion.sampling.guidance import classifier_log_probs
from guided_diffusion.sampling.seeds import PerSampleNoise, random_labels
from sample_helpers import (
    CLASSIFIER_FLAGS, MODEL_FLAGS, SR_FLAGS, build_classifier, build_model, build_sr, flag_list, one_thread,
    run_in_process, run_script, save_perturbed,
)

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)

SEED = 3
N = 8
GUIDED_SCALE = 10.0
MPIEXEC = shutil.which("mpiexec")
# a model trained with label dropout: 4 classes and the null label 4; learned sigma, so that the
# variance channels take part
CFG_MODEL = dict(class_cond=True, num_classes=4, class_dropout_prob=0.1, learn_sigma=True)


def _stopping_after(monkeypatch, shards):
    """Make the scripts' shard loop stop (as if killed) once this run wrote `shards` shards."""
    monkeypatch.setattr(runner, "sample_to_npz",
                        functools.partial(runner.sample_to_npz, should_stop=lambda written: written >= shards))


def _npz(out_dir, name=None):
    names = [f for f in os.listdir(out_dir) if f.startswith("samples_") and f.endswith(".npz")]
    assert len(names) == 1, names
    if name is not None:
        assert names[0] == name
    with np.load(os.path.join(out_dir, names[0]), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _ok_in_process(*args, **kwargs):
    code, out, err = run_in_process(*args, **kwargs)
    assert code == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpts")
    return save_perturbed(
        d,
        model=(build_model()[0], 0, 0.02),
        cond_model=(build_model(class_cond=True)[0], 1, 0.05),
        cfg_model=(build_model(**CFG_MODEL)[0], 4, 0.05),
        classifier=(build_classifier(num_classes=4), 2, 0.05),
        sr=(build_sr()[0], 3, 0.05),
    )


def _model_args(ckpts, **extra):
    flags = dict(MODEL_FLAGS, model_path=ckpts["model"], seed=SEED, num_samples=N, batch_size=4)
    flags.update(extra)
    return flag_list(flags)


def _guided_args(ckpts, scale, **extra):
    flags = dict(CLASSIFIER_FLAGS, classifier_path=ckpts["classifier"], classifier_scale=scale, num_classes=4)
    flags.update(extra)
    return _model_args(ckpts) + flag_list(flags)


@pytest.fixture(scope="module")
def unguided(ckpts, tmp_path_factory):
    """image_sample.py as a real subprocess under `mpiexec -n 1` (plain python without mpiexec)."""
    out = str(tmp_path_factory.mktemp("unguided"))
    launcher = (MPIEXEC, "-n", "1") if MPIEXEC else ()
    _ok(run_script("image_sample.py", _model_args(ckpts, output_dir=out), launcher=launcher))
    return out


@pytest.fixture()
def guided0(ckpts, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "guided0")
    _ok_in_process("classifier_sample.py", _guided_args(ckpts, 0.0, output_dir=out, batch_size=3),
                   monkeypatch, capsys)
    return out


def test_image_sample_npz_has_exact_layout_and_grid(unguided):
    arrays = _npz(unguided, f"samples_{N}x8x8x3.npz")
    assert sorted(arrays) == ["arr_0"]
    assert arrays["arr_0"].dtype == np.uint8 and arrays["arr_0"].shape == (N, 8, 8, 3)
    assert os.path.exists(os.path.join(unguided, f"samples_{N}x8x8x3.png"))
    with open(os.path.join(unguided, f"samples_{N}x8x8x3.json")) as f:
        record = json.load(f)
    assert record["seed"] == SEED and record["config"]["flags"]["num_samples"] == N
    assert record["config"]["flags"]["sampler"] == "ancestral"  # the original's default, recorded
    assert not [f for f in os.listdir(unguided) if f.startswith("sample_shards-")]  # shards cleaned up
    assert len({arrays["arr_0"][i].tobytes() for i in range(N)}) == N  # no duplicated noise


def test_seeded_rerun_of_a_finished_run_is_not_redone(ckpts, unguided, monkeypatch, capsys):
    npz = os.path.join(unguided, f"samples_{N}x8x8x3.npz")
    before = os.stat(npz).st_mtime_ns
    out = _ok_in_process("image_sample.py", _model_args(ckpts, output_dir=unguided), monkeypatch, capsys)
    assert "already complete" in out and os.stat(npz).st_mtime_ns == before
    assert not [f for f in os.listdir(unguided) if f.startswith("sample_shards-")]


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
def test_two_ranks_give_the_same_samples_as_one(ckpts, unguided, tmp_path):
    out = str(tmp_path)
    proc = _ok(run_script("image_sample.py", _model_args(ckpts, output_dir=out, batch_size=3),
                          launcher=(MPIEXEC, "-n", "2")))
    assert os.path.exists(os.path.join(out, "log-rank001.txt"))  # rank 1 took part, logging beside rank 0
    two = _npz(out, f"samples_{N}x8x8x3.npz")["arr_0"]
    assert np.array_equal(two, _npz(unguided)["arr_0"]), proc.stdout


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
def test_guided_dpm_solver_gives_identical_npz_files_on_one_and_two_ranks(ckpts, tmp_path):
    files = {}
    for ranks in (1, 2):
        out = tmp_path / f"n{ranks}"
        _ok(run_script("classifier_sample.py", _guided_args(ckpts, GUIDED_SCALE, output_dir=out, batch_size=3,
                                                            sampler="dpm++2m"),
                       launcher=(MPIEXEC, "-n", str(ranks))))
        with open(out / f"samples_{N}x8x8x3.json") as f:
            assert json.load(f)["config"]["flags"]["sampler"] == "dpm++2m"
        files[ranks] = (out / f"samples_{N}x8x8x3.npz").read_bytes()
    assert files[1] == files[2]


def test_class_cond_labels_recorded_are_the_labels_used(ckpts, tmp_path, monkeypatch, capsys):
    _ok_in_process("image_sample.py", _model_args(
        ckpts, model_path=ckpts["cond_model"], class_cond=True, class_labels="7,2", num_samples=3,
        output_dir=tmp_path), monkeypatch, capsys)
    arrays = _npz(str(tmp_path))
    assert arrays["arr_1"].dtype == np.int64 and arrays["arr_1"].tolist() == [7, 2, 7]
    # Rebuild sample 1 in-process with label 2 and with label 7: only label 2 reproduces it.
    model, diffusion = build_model(class_cond=True)
    model.load_state_dict(th.load(ckpts["cond_model"], weights_only=True))
    model.eval()
    rebuilt = {}
    for label in (2, 7):
        with th.no_grad():
            x = run_sampler(diffusion, "ancestral", model, (1, 3, 8, 8), PerSampleNoise(SEED, [1]),
                            model_kwargs={"y": th.tensor([label])})
        rebuilt[label] = images_to_uint8(x)[0].astype(int)
    assert np.abs(rebuilt[2] - arrays["arr_0"][1]).max() <= 1
    assert np.abs(rebuilt[7] - arrays["arr_0"][1]).max() > 1


def test_class_names_from_the_classifiers_run_record_give_the_same_npz_as_their_labels(ckpts, tmp_path, monkeypatch,
                                                                                      capsys):
    guide = tmp_path / "guide"
    guide.mkdir()
    shutil.copy(ckpts["classifier"], guide / "model000009.pt")
    (guide / "args.json").write_text(json.dumps({"class_names": ["ant", "bee", "cat", "dog"]}))
    npz = {}
    for spec in ("dog,ant", "3,0"):
        out = str(tmp_path / spec)
        _ok_in_process("classifier_sample.py", _guided_args(ckpts, GUIDED_SCALE, output_dir=out, num_samples=3,
                                                            batch_size=3, class_labels=spec,
                                                            classifier_path=guide / "model000009.pt"),
                       monkeypatch, capsys)
        npz[spec] = _npz(out)
    assert npz["dog,ant"]["arr_1"].tolist() == [3, 0, 3]
    assert np.array_equal(npz["dog,ant"]["arr_0"], npz["3,0"]["arr_0"])
    code, _, err = run_in_process("classifier_sample.py", _guided_args(
        ckpts, GUIDED_SCALE, output_dir=tmp_path / "emu", class_labels="emu",
        classifier_path=guide / "model000009.pt"), monkeypatch, capsys)
    assert code == 2 and err.strip().endswith("unknown class name 'emu'; the names in "
                                              f"{guide / 'args.json'} (beside --classifier_path) are: ant, bee, cat, dog")


def test_guidance_scale_zero_equals_unguided_for_same_seed(unguided, guided0):
    guided, plain = _npz(guided0), _npz(unguided)
    # Different batch sizes, and one run is a subprocess: float reductions may split differently,
    # so allow a rounding flip of one grey level, but nothing more.
    diff = np.abs(guided["arr_0"].astype(int) - plain["arr_0"].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    # default labels: uniform per sample from its own seeded stream
    assert guided["arr_1"].dtype == np.int64
    assert guided["arr_1"].tolist() == random_labels(SEED, range(N), 4).tolist()


def _mean_requested_log_prob(ckpts, arrays):
    classifier = build_classifier(num_classes=4)
    classifier.load_state_dict(th.load(ckpts["classifier"], weights_only=True))
    classifier.eval()
    x = th.from_numpy(arrays["arr_0"]).float().permute(0, 3, 1, 2) / 127.5 - 1
    with th.no_grad():
        lp = classifier_log_probs(classifier, x, th.zeros(len(x), dtype=th.long), th.from_numpy(arrays["arr_1"]))
    return lp.mean().item()


@pytest.mark.parametrize("use_ddim,sampler", [(False, "auto"), (True, "auto"), (False, "dpm++2m")])
def test_positive_scale_raises_requested_label_log_prob(ckpts, tmp_path, use_ddim, sampler, monkeypatch, capsys):
    lps = []
    for scale in (0.0, GUIDED_SCALE):
        out = str(tmp_path / f"scale{scale}")
        _ok_in_process("classifier_sample.py", _guided_args(ckpts, scale, output_dir=out, use_ddim=use_ddim,
                                                            sampler=sampler),
                       monkeypatch, capsys)
        arrays = _npz(out)
        assert arrays["arr_1"].tolist() == random_labels(SEED, range(N), 4).tolist()
        lps.append(_mean_requested_log_prob(ckpts, arrays))
    assert lps[1] > lps[0]


def test_use_ddim_true_is_the_ddim_sampler(ckpts, tmp_path, monkeypatch, capsys):
    outputs = {}
    for name, flags in (("use_ddim", dict(use_ddim=True)), ("sampler", dict(sampler="ddim"))):
        out = tmp_path / name
        _ok_in_process("image_sample.py", _model_args(ckpts, output_dir=out, **flags), monkeypatch, capsys)
        with open(out / f"samples_{N}x8x8x3.json") as f:
            record = json.load(f)["config"]
        assert record["flags"]["sampler"] == "ddim" and record["flags"]["use_ddim"] is True
        outputs[name] = _npz(str(out))["arr_0"]
    assert np.array_equal(outputs["use_ddim"], outputs["sampler"])


def test_interrupted_run_resumes_to_the_uninterrupted_npz(ckpts, unguided, tmp_path, monkeypatch, capsys):
    args = _model_args(ckpts, output_dir=tmp_path)
    with monkeypatch.context() as patch:
        _stopping_after(patch, 1)
        code, _, err = run_in_process("image_sample.py", args, monkeypatch, capsys)
    assert code == INTERRUPTED_EXIT_CODE, err[-2000:]
    assert not [f for f in os.listdir(tmp_path) if f.startswith("samples_")]  # nothing presented as final
    shard_dirs = [f for f in os.listdir(tmp_path) if f.startswith("sample_shards-")]
    assert len(shard_dirs) == 1
    assert sorted(os.listdir(tmp_path / shard_dirs[0])) == ["run.json", "shard_000000.npz"]
    out = _ok_in_process("image_sample.py", args, monkeypatch, capsys)
    assert "resuming: 1 of 2 shards" in out  # only the missing shard was sampled
    assert np.array_equal(_npz(str(tmp_path))["arr_0"], _npz(unguided)["arr_0"])


def test_ctrl_c_prints_one_line_with_the_kept_shards(ckpts, tmp_path, monkeypatch, capsys):
    from guided_diffusion.sampling.shards import ShardStore

    save = ShardStore.save

    def save_then_interrupt(self, k, *args):
        save(self, k, *args)
        if k == 0:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(ShardStore, "save", save_then_interrupt)
        code, _, err = run_in_process("image_sample.py", _model_args(ckpts, output_dir=tmp_path), monkeypatch,
                                      capsys)
    assert code == 130 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("image_sample.py:")]
    assert len(lines) == 1
    assert "1 of 2 shards kept" in lines[0] and "rerun the same command to resume" in lines[0]


def test_changed_config_does_not_reuse_shards(ckpts, tmp_path, monkeypatch, capsys):
    args = _model_args(ckpts, output_dir=tmp_path)
    with monkeypatch.context() as patch:
        _stopping_after(patch, 1)
        run_in_process("image_sample.py", args, monkeypatch, capsys)
    out = _ok_in_process("image_sample.py", _model_args(ckpts, output_dir=tmp_path, clip_denoised=False),
                         monkeypatch, capsys)
    assert "resuming" not in out
    # the first configuration's shards stay for its own rerun
    assert len([f for f in os.listdir(tmp_path) if f.startswith("sample_shards-")]) == 1


def test_super_res_sample_upsamples_base_samples_with_ddim(ckpts, unguided, tmp_path, monkeypatch, capsys):
    base = os.path.join(unguided, f"samples_{N}x8x8x3.npz")
    flags = dict(SR_FLAGS, model_path=ckpts["sr"], base_samples=base, num_samples=3, batch_size=2,
                 use_ddim=True, seed=SEED, output_dir=tmp_path)
    _ok_in_process("super_res_sample.py", flag_list(flags), monkeypatch, capsys)
    arrays = _npz(str(tmp_path), "samples_3x32x32x3.npz")
    assert sorted(arrays) == ["arr_0"] and arrays["arr_0"].dtype == np.uint8
    # Sample 1 is base sample 1 upsampled: rebuild it in-process from that input.
    model, diffusion = build_sr()
    model.load_state_dict(th.load(ckpts["sr"], weights_only=True))
    model.eval()
    with np.load(base) as f:
        low = th.from_numpy(f["arr_0"][1:2]).float().permute(0, 3, 1, 2) / 127.5 - 1
    with th.no_grad():
        x = diffusion.ddim_sample_loop(model, (1, 3, 32, 32), noise=PerSampleNoise(SEED, [1]).initial_noise((1, 3, 32, 32)),
                                       model_kwargs={"low_res": low})
    assert np.abs(images_to_uint8(x)[0].astype(int) - arrays["arr_0"][1]).max() <= 1


def test_user_error_exits_cleanly_without_traceback(ckpts, tmp_path):
    missing = str(tmp_path / "missing.pt")
    proc = run_script("image_sample.py", _model_args(ckpts, output_dir=tmp_path, model_path=missing))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--model_path" in proc.stderr and missing in proc.stderr
    assert not [f for f in os.listdir(tmp_path) if f.startswith("samples_")]


def _wait_for_first_shard(out_dir, timeout=120):
    """Poll until a shard file exists under `out_dir` (a pathlib.Path)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        dirs = [d for d in os.listdir(out_dir) if d.startswith("sample_shards-")]
        if dirs and any(f.startswith("shard_") for f in os.listdir(out_dir / dirs[0])):
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_real_kill_after_first_shard_resumes(ckpts, unguided, tmp_path):
    """SIGKILL the process once a shard file appears; the rerun completes the same npz."""
    import signal
    import subprocess
    import sys

    from sample_helpers import REPO

    args = [sys.executable, os.path.join(REPO, "scripts", "image_sample.py")] + _model_args(
        ckpts, output_dir=tmp_path, batch_size=1)
    proc = subprocess.Popen(args, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_first_shard(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not [f for f in os.listdir(tmp_path) if f.startswith("samples_")]
    _ok(run_script("image_sample.py", _model_args(ckpts, output_dir=tmp_path, batch_size=1)))
    assert np.array_equal(_npz(str(tmp_path))["arr_0"], _npz(unguided)["arr_0"])


@pytest.mark.slow
def test_real_ctrl_c_keeps_shards_says_so_in_one_line_and_the_rerun_resumes(ckpts, unguided, tmp_path):
    """SIGINT (what Ctrl-C sends) once a shard file appears: exit 130, one line, no traceback."""
    import signal
    import subprocess
    import sys

    from sample_helpers import REPO

    many = 5 * N  # enough shards that the run is still going when the signal lands
    args = [sys.executable, os.path.join(REPO, "scripts", "image_sample.py")] + _model_args(
        ckpts, output_dir=tmp_path, batch_size=1, progress=False, num_samples=many)
    proc = subprocess.Popen(args, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_first_shard(tmp_path)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("image_sample.py:")]
    assert len(lines) == 1 and "shards kept" in lines[0] and "rerun the same command to resume" in lines[0]
    kept = int(lines[0].split("interrupted: ")[1].split(" of ")[0])
    shard_dir = [d for d in os.listdir(tmp_path) if d.startswith("sample_shards-")][0]
    assert kept == len([f for f in os.listdir(tmp_path / shard_dir) if f.startswith("shard_")]) >= 1
    assert not [f for f in os.listdir(tmp_path / shard_dir) if f.startswith(".tmp-")]
    _ok(run_script("image_sample.py", _model_args(ckpts, output_dir=tmp_path, batch_size=1, num_samples=many)))
    assert np.array_equal(_npz(str(tmp_path))["arr_0"][:N], _npz(unguided)["arr_0"])  # per-sample seeds


# ------------------------------------------------------------------------------------------
# Classifier-free guidance and guidance intervals


def _cfg_run(script, ckpts, out, monkeypatch, capsys, classifier_scale=None, **flags):
    args = _model_args(ckpts, model_path=ckpts["cfg_model"], output_dir=out, **CFG_MODEL, **flags)
    if classifier_scale is not None:
        args += flag_list(dict(CLASSIFIER_FLAGS, classifier_path=ckpts["classifier"], classifier_scale=classifier_scale))
    log = _ok_in_process(script, args, monkeypatch, capsys)
    return _npz(str(out)), log


def test_guidance_scale_one_is_conditional_sampling_and_zero_is_the_null_label(ckpts, tmp_path, monkeypatch, capsys):
    run = functools.partial(_cfg_run, "image_sample.py", ckpts, monkeypatch=monkeypatch, capsys=capsys)
    plain, _ = run(out=tmp_path / "plain", class_labels="balanced")
    one, _ = run(out=tmp_path / "w1", class_labels="balanced", guidance_scale=1.0)
    zero, _ = run(out=tmp_path / "w0", class_labels="balanced", guidance_scale=0.0)
    null, _ = run(out=tmp_path / "null", class_labels="null")
    three, log = run(out=tmp_path / "w3", class_labels="balanced", guidance_scale=3.0)
    assert np.array_equal(one["arr_0"], plain["arr_0"]) and one["arr_1"].tolist() == [0, 1, 2, 3] * 2
    assert np.array_equal(zero["arr_0"], null["arr_0"]) and sorted(null) == ["arr_0"]  # null samples: no labels
    assert not np.array_equal(three["arr_0"], plain["arr_0"])
    assert "classifier-free w=3: 4 batched 2N passes, 0 conditional" in log  # per shard: one per step
    with open(tmp_path / "w3" / f"samples_{N}x8x8x3.json") as f:
        flags = json.load(f)["config"]["flags"]
    assert flags["guidance_scale"] == 3.0 and flags["class_dropout_prob"] == 0.1


def test_classifier_guides_the_null_branch_of_a_dropout_model(ckpts, tmp_path, monkeypatch, capsys):
    null, _ = _cfg_run("image_sample.py", ckpts, tmp_path / "null", monkeypatch, capsys, class_labels="null")
    base, _ = _cfg_run("classifier_sample.py", ckpts, tmp_path / "s0", monkeypatch, capsys, classifier_scale=0.0)
    assert np.array_equal(base["arr_0"], null["arr_0"])  # unguided, it is the unconditional model
    guided, _ = _cfg_run("classifier_sample.py", ckpts, tmp_path / "s10", monkeypatch, capsys,
                         classifier_scale=GUIDED_SCALE)
    assert _mean_requested_log_prob(ckpts, guided) > _mean_requested_log_prob(ckpts, base)
    both, log = _cfg_run("classifier_sample.py", ckpts, tmp_path / "both", monkeypatch, capsys,
                         classifier_scale=GUIDED_SCALE, guidance_scale=3.0)
    assert not np.array_equal(both["arr_0"], guided["arr_0"]) and "classifier gradients" not in log


def test_classifier_at_guidance_scale_one_guides_the_conditional_branch(ckpts, tmp_path, monkeypatch, capsys):
    # the demo's trade-off reads classifier scale 0 on this branch off its free_1 row (w = 1)
    plain, _ = _cfg_run("image_sample.py", ckpts, tmp_path / "w1", monkeypatch, capsys, class_labels="balanced",
                        guidance_scale=1.0)
    base, _ = _cfg_run("classifier_sample.py", ckpts, tmp_path / "c0", monkeypatch, capsys, classifier_scale=0.0,
                       class_labels="balanced", guidance_scale=1.0)
    assert np.array_equal(base["arr_0"], plain["arr_0"]) and base["arr_1"].tolist() == plain["arr_1"].tolist()
    guided, log = _cfg_run("classifier_sample.py", ckpts, tmp_path / "c10", monkeypatch, capsys,
                           classifier_scale=GUIDED_SCALE, class_labels="balanced", guidance_scale=1.0)
    assert _mean_requested_log_prob(ckpts, guided) > _mean_requested_log_prob(ckpts, base)
    assert "0 batched 2N passes" in log  # w = 1: one conditional pass per step, no null-label pass


def test_interval_between_the_sampled_steps_takes_no_classifier_gradient(ckpts, tmp_path, monkeypatch, capsys):
    # 4 respaced steps of 100: training timesteps 0, 33, 66, 99; "34,65" holds none of them
    base, _ = _cfg_run("classifier_sample.py", ckpts, tmp_path / "s0", monkeypatch, capsys, classifier_scale=0.0)
    empty, log = _cfg_run("classifier_sample.py", ckpts, tmp_path / "empty", monkeypatch, capsys,
                          classifier_scale=GUIDED_SCALE, guidance_interval="34,65")
    assert np.array_equal(empty["arr_0"], base["arr_0"])
    assert "classifier gradients computed at 0 steps, skipped at 4" in log
    part, log = _cfg_run("classifier_sample.py", ckpts, tmp_path / "part", monkeypatch, capsys,
                         classifier_scale=GUIDED_SCALE, guidance_interval="30,70")
    assert "classifier gradients computed at 2 steps, skipped at 2" in log
    assert not np.array_equal(part["arr_0"], base["arr_0"])


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not installed")
def test_classifier_free_dpm_solver_npz_is_the_same_on_one_and_two_ranks(ckpts, tmp_path):
    files = {}
    for ranks in (1, 2):
        out = tmp_path / f"n{ranks}"
        args = _model_args(ckpts, model_path=ckpts["cfg_model"], output_dir=out, batch_size=3, sampler="dpm++2m",
                           guidance_scale=3.0, guidance_interval="20,99", **CFG_MODEL)
        _ok(run_script("image_sample.py", args, launcher=(MPIEXEC, "-n", str(ranks))))
        files[ranks] = (out / f"samples_{N}x8x8x3.npz").read_bytes()
    assert files[1] == files[2]
