"""CLI behaviour of scripts/image_train.py, classifier_train.py and super_res_train.py."""

import csv
import json
import os
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from PIL import Image

from guided_diffusion import logger
from guided_diffusion.training import state as train_state
from guided_diffusion.image_datasets import SuperResData, load_data
from flag_helpers import bad_flag_cases

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_UNET = ["--image_size", "8", "--num_channels", "32", "--num_res_blocks", "1", "--channel_mult", "1",
             "--attention_resolutions", "8", "--num_heads", "1", "--diffusion_steps", "40", "--batch_size", "4"]
TINY_CLF = ["--image_size", "8", "--classifier_width", "64", "--classifier_depth", "1",
            "--classifier_attention_resolutions", "8", "--classifier_channel_mult", "1", "--diffusion_steps", "40",
            "--batch_size", "4"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gd_cache"))


@pytest.fixture
def run_script(monkeypatch, cache_dir, capsys):
    """Run a script's __main__ in this process; returns (exit code, stdout+stderr)."""
    prev = logger.Logger.CURRENT

    def run(name, args, logdir):
        monkeypatch.setenv("OPENAI_LOGDIR", str(logdir))
        monkeypatch.setenv("OPENAI_LOG_FORMAT", "stdout,log,csv")
        monkeypatch.setenv("GUIDED_DIFFUSION_CACHE", cache_dir)
        monkeypatch.delenv("GUIDED_DIFFUSION_DEBUG", raising=False)
        monkeypatch.setattr(sys, "argv", [name] + [str(a) for a in args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            runpy.run_path(os.path.join(REPO, "scripts", name), run_name="__main__")
        out = capsys.readouterr()
        if logger.Logger.CURRENT is not prev and logger.Logger.CURRENT is not None:
            logger.Logger.CURRENT.close()
        logger.Logger.CURRENT = prev
        return exc.value.code, out.out + out.err

    return run


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _env(tmp_path, cache_dir, **extra):
    env = dict(os.environ, OPENAI_LOGDIR=str(tmp_path), OPENAI_LOG_FORMAT="log,csv",
               GUIDED_DIFFUSION_CACHE=cache_dir, PYTHONPATH=REPO)
    env.update(extra)
    return env


TRAIN_SCRIPTS = ("image_train.py", "classifier_train.py", "super_res_train.py")


@pytest.mark.parametrize("script", TRAIN_SCRIPTS)
def test_every_numeric_flag_is_checked_before_any_work(run_script, tmp_path, script):
    cases = bad_flag_cases(os.path.join("scripts", script))
    assert {"batch_size", "microbatch", "log_interval", "save_interval"} <= {flag for flag, _ in cases}
    for flag, bad in cases:
        code, out = run_script(script, [f"--{flag}", bad], tmp_path / "log")
        lines = out.strip().splitlines()
        assert code == 2 and len(lines) == 1, (flag, bad, out)
        assert lines[0].startswith(f"{script}: error: --{flag} ") and float(lines[0].rsplit("got ", 1)[1]) == float(bad), lines[0]
        assert not os.path.exists(tmp_path / "log"), (flag, "work started before the flag check")
    if script != "classifier_train.py":
        code, out = run_script(script, ["--ema_rate", "0.9,fast"], tmp_path / "log")
        assert code == 2 and "--ema_rate" in out and not os.path.exists(tmp_path / "log")


def test_batch_size_zero_exits_2_with_one_line(tmp_path, cache_dir):
    out = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "image_train.py"), "--batch_size", "0"],
                         capture_output=True, text=True, env=_env(tmp_path / "log", cache_dir), timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("image_train.py: error: --batch_size ") and out.stderr.endswith(", got 0\n")
    assert out.stderr.count("\n") == 1
    assert not os.path.exists(tmp_path / "log")


def test_image_train_on_digits_writes_checkpoints_args_and_quartile_losses(run_script, tmp_path):
    code, out = run_script("image_train.py", TINY_UNET + ["--lr_anneal_steps", 2, "--log_interval", 1,
                                                          "--save_interval", 100, "--class_cond", True], tmp_path)
    assert code == 0, out
    assert "embedded digits (train split, 1497 images, 8x8" in out
    names = set(os.listdir(tmp_path))
    assert {"model000000.pt", "model000002.pt", "ema_0.9999_000002.pt", "opt000002.pt", "train_state000002.json"} <= names
    args = json.loads((tmp_path / "args.json").read_text())
    assert args["data_source"] == "embedded-digits" and args["random_flip"] is False
    assert isinstance(args["seed"], int) and args["seed"] >= 0 and args["class_cond"] is True
    assert args["data_dir"].endswith(os.path.join("digits", "train_8px")) and args["world_size"] == 1
    assert args["class_names"] == [str(d) for d in range(10)]  # the class mapping: label d is digit d
    rows = _csv(tmp_path / "progress.csv")
    assert [r["step"] for r in rows] == ["0", "1"] and [r["samples"] for r in rows] == ["4", "8"]
    keys = set(rows[0])
    assert {"loss", "mse", "grad_norm", "param_norm"} <= keys
    assert any(k.startswith("loss_q") for k in keys)


def test_label_dropout_run_records_the_flag_and_saves_the_null_row(run_script, tmp_path):
    code, out = run_script("image_train.py", TINY_UNET + ["--lr_anneal_steps", 1, "--class_cond", True,
                                                          "--num_classes", 10, "--class_dropout_prob", 0.2], tmp_path)
    assert code == 0, out
    args = json.loads((tmp_path / "args.json").read_text())
    assert args["class_dropout_prob"] == 0.2 and args["num_classes"] == 10
    state = th.load(tmp_path / "model000001.pt", weights_only=True)
    assert state["label_emb.weight"].shape[0] == 11


def test_label_dropout_without_labels_is_refused(run_script, tmp_path):
    code, out = run_script("image_train.py", TINY_UNET + ["--class_dropout_prob", 0.2], tmp_path / "log")
    assert code == 2 and "--class_dropout_prob 0.2" in out and "add --class_cond True" in out


def test_same_seed_gives_same_checkpoint(run_script, tmp_path):
    for name in ("a", "b"):
        code, out = run_script("image_train.py", TINY_UNET + ["--lr_anneal_steps", 1, "--seed", 7], tmp_path / name)
        assert code == 0, out
    a = th.load(tmp_path / "a" / "model000001.pt", weights_only=True)
    b = th.load(tmp_path / "b" / "model000001.pt", weights_only=True)
    assert all(th.equal(a[k], b[k]) for k in a)


def test_missing_data_dir_exits_nonzero_with_message(tmp_path, cache_dir):
    out = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "image_train.py"), *TINY_UNET,
                          "--data_dir", str(tmp_path / "no_such_dir")],
                         capture_output=True, text=True, env=_env(tmp_path / "log", cache_dir), timeout=300)
    assert out.returncode == 2
    assert "no_such_dir" in out.stderr and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_empty_data_dir_message(run_script, tmp_path):
    (tmp_path / "empty").mkdir()
    code, out = run_script("image_train.py", TINY_UNET + ["--data_dir", tmp_path / "empty"], tmp_path / "log")
    assert code == 2 and "contains no images" in out


def test_class_cond_without_prefixes_message(run_script, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(4):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / f"img{i}.png")
    code, out = run_script("image_train.py", TINY_UNET + ["--data_dir", d, "--class_cond", True], tmp_path / "log")
    assert code == 2 and "no '_' prefix" in out and "img0.png" in out


def test_undecodable_image_is_named(run_script, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / f"a_{i}.png")
    (d / "a_broken.png").write_bytes(b"not a png at all")
    code, out = run_script("image_train.py", TINY_UNET + ["--data_dir", d, "--lr_anneal_steps", 1], tmp_path / "log")
    assert code == 2 and "cannot decode image" in out and "a_broken.png" in out


def test_resume_path_that_does_not_exist(run_script, tmp_path):
    code, out = run_script("image_train.py", TINY_UNET + ["--resume_checkpoint", tmp_path / "model000100.pt"],
                           tmp_path / "log")
    assert code == 2 and "model000100.pt" in out and "does not exist" in out


def test_resume_with_different_flags_names_the_flag(run_script, tmp_path):
    code, out = run_script("image_train.py", TINY_UNET + ["--lr_anneal_steps", 1], tmp_path)
    assert code == 0, out
    code, out = run_script("image_train.py", TINY_UNET + ["--num_channels", 64, "--lr_anneal_steps", 2,
                                                          "--resume_checkpoint", tmp_path / "model000001.pt"], tmp_path)
    assert code == 2 and "model000001.pt" in out and "num_channels" in out


def test_classifier_train_logs_accuracy_val_and_resumes(run_script, tmp_path):
    code, out = run_script("classifier_train.py", TINY_CLF + ["--iterations", 2, "--log_interval", 1,
                                                               "--eval_interval", 1, "--save_interval", 100], tmp_path)
    assert code == 0, out
    assert {"model000002.pt", "opt000002.pt", "train_state000002.json", "args.json"} <= set(os.listdir(tmp_path))
    args = json.loads((tmp_path / "args.json").read_text())
    assert args["val_data_dir"].endswith(os.path.join("digits", "heldout_8px"))
    keys = set(_csv(tmp_path / "progress.csv")[0])
    assert {"train_loss", "train_acc@1", "train_acc@5", "val_loss", "val_acc@1", "val_acc@5"} <= keys
    code, out = run_script("classifier_train.py", TINY_CLF + ["--iterations", 3, "--resume_checkpoint", "auto",
                                                               "--log_interval", 1], tmp_path)
    assert code == 0, out
    assert "model000002.pt... at 2 step" in out and os.path.exists(tmp_path / "model000003.pt")
    assert [r["step"] for r in _csv(tmp_path / "progress.csv")] == ["0", "1", "2"]  # appended: each step once


def test_clean_classifier_trains_at_t0_only(run_script, tmp_path):
    code, out = run_script("classifier_train.py", TINY_CLF + ["--iterations", 1, "--noised", False,
                                                               "--eval_interval", 1], tmp_path)
    assert code == 0, out
    keys = {k for k in _csv(tmp_path / "progress.csv")[0] if "_q" in k}
    assert keys and all(k.endswith("_q0") for k in keys)


def test_super_res_low_res_is_area_downsampling(tmp_path):
    for i in range(4):
        Image.fromarray(np.random.RandomState(i).randint(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}_x.png")
    data = SuperResData(load_data(data_dir=tmp_path, batch_size=2, image_size=16, shard=0, num_shards=1), 4)
    batch, cond = next(data)
    assert cond["low_res"].shape == (2, 3, 4, 4)
    th.testing.assert_close(cond["low_res"], F.avg_pool2d(batch, 4))
    assert data.state_dict()["consumed"] == 1


@pytest.mark.slow
def test_sigterm_saves_then_auto_resumes(tmp_path, cache_dir):
    script = os.path.join(REPO, "scripts", "image_train.py")
    args = [sys.executable, script, *TINY_UNET, "--lr_anneal_steps", "100000", "--save_interval", "100000", "--seed", "3"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(tmp_path, cache_dir))
    deadline = time.time() + 240
    while not os.path.exists(tmp_path / "train_state000000.json") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, out
    steps = [s for s in train_state.checkpoint_steps(str(tmp_path)) if s > 0]
    assert len(steps) == 1 and train_state.checkpoint_is_complete(str(tmp_path), steps[0], [0.9999])
    n = steps[0]
    assert f"received SIGTERM: saved step {n}" in (tmp_path / "log.txt").read_text()
    args[args.index("--lr_anneal_steps") + 1] = str(n + 1)
    out = subprocess.run(args + ["--resume_checkpoint", "auto"], capture_output=True, text=True,
                         env=_env(tmp_path, cache_dir), timeout=240)
    assert out.returncode == 0, out.stderr
    assert f"resuming from {tmp_path / train_state.model_filename(n)}" in (tmp_path / "log.txt").read_text()
    assert os.path.exists(tmp_path / train_state.model_filename(n + 1))


_KILL_DURING_SAVE = """
import io, os, signal, sys
import guided_diffusion.runtime.fileio as fio
orig = fio.atomic_write
def killing(path, write_fn, binary=True):
    if os.path.basename(path) == "opt000002.pt":
        def half(f):
            buf = io.BytesIO()
            write_fn(buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return orig(path, half, binary)
    return orig(path, write_fn, binary)
fio.atomic_write = killing
sys.argv = ["image_train.py"] + sys.argv[1:]
import runpy
runpy.run_path(os.path.join(os.environ["PYTHONPATH"], "scripts", "image_train.py"), run_name="__main__")
"""


def test_kill9_during_save_keeps_previous_checkpoint_and_auto_picks_it(tmp_path, cache_dir, run_script):
    driver = tmp_path / "driver.py"
    driver.write_text(_KILL_DURING_SAVE)
    logdir = tmp_path / "log"
    out = subprocess.run([sys.executable, str(driver), *TINY_UNET, "--lr_anneal_steps", "5", "--save_interval", "1"],
                         capture_output=True, text=True, env=_env(logdir, cache_dir), timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr
    names = os.listdir(logdir)
    assert "model000002.pt" in names and "opt000002.pt" not in names  # died while writing opt000002
    assert any(n.startswith(".tmp-opt000002.pt") for n in names)  # the partial bytes never got the real name
    assert train_state.find_latest_checkpoint(str(logdir), [0.9999]) == str(logdir / "model000001.pt")
    th.load(logdir / "opt000001.pt", weights_only=True)
    code, text = run_script("image_train.py", TINY_UNET + ["--lr_anneal_steps", 2, "--save_interval", 1,
                                                           "--resume_checkpoint", "auto"], logdir)
    assert code == 0, text
    assert f"resuming from {logdir / 'model000001.pt'}" in text
    assert train_state.checkpoint_is_complete(str(logdir), 2, [0.9999])


@pytest.mark.slow
def test_image_train_under_mpiexec_two_ranks(tmp_path, cache_dir):
    import shutil

    mpiexec = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("mpiexec not installed")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, os.path.join(REPO, "scripts", "image_train.py"),
                          *TINY_UNET, "--lr_anneal_steps", "2", "--log_interval", "1", "--seed", "1"],
                         capture_output=True, text=True, env=_env(tmp_path, cache_dir), timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    args = json.loads((tmp_path / "args.json").read_text())
    assert args["world_size"] == 2
    assert [r["samples"] for r in _csv(tmp_path / "progress.csv")] == ["8", "16"]  # 2 ranks x batch 4
    assert "log-rank001.txt" in os.listdir(tmp_path)
    assert train_state.checkpoint_is_complete(str(tmp_path), 2, [0.9999])
    doc = train_state.read_train_state(str(tmp_path / "train_state000002.json"))
    assert doc["world_size"] == 2 and [r["data"]["consumed"] for r in doc["ranks"]] == [2, 2]


# Runs a training script with hooks: KILL_AT_STEP sends SIGKILL before that update; SIGNAL_DURING
# names a checkpoint file during whose write two SIGTERMs arrive.
_DRIVER = """
import os, runpy, signal, sys
import guided_diffusion.runtime.fileio as fio
from guided_diffusion.training import loop
kill_at = int(os.environ.get("KILL_AT_STEP", "-1"))
run_step = loop.TrainLoopBase.run_step
def killing_step(self, batch, cond):
    if self.global_step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return run_step(self, batch, cond)
loop.TrainLoopBase.run_step = killing_step
write = fio.atomic_write
def signalled_write(path, write_fn, binary=True):
    def during(f):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        write_fn(f)
    hit = os.path.basename(path) == os.environ.get("SIGNAL_DURING")
    return write(path, during if hit else write_fn, binary)
fio.atomic_write = signalled_write
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(os.path.join(os.environ["PYTHONPATH"], "scripts", script), run_name="__main__")
"""


def _drive(tmp_path, cache_dir, script, args, **env):
    driver = tmp_path / "driver.py"
    driver.write_text(_DRIVER)
    return subprocess.run([sys.executable, str(driver), script, *[str(a) for a in args]], capture_output=True,
                          text=True, env=_env(tmp_path / "unused", cache_dir, OMP_NUM_THREADS="1", **env),
                          timeout=300)


def test_kill9_then_resume_logs_every_step_exactly_once(tmp_path, cache_dir):
    out_dir = tmp_path / "run"
    args = TINY_UNET + ["--lr_anneal_steps", 6, "--save_interval", 2, "--log_interval", 1, "--seed", 1,
                        "--resume_checkpoint", "auto", "--output_dir", out_dir]
    killed = _drive(tmp_path, cache_dir, "image_train.py", args, KILL_AT_STEP="5")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert [r["step"] for r in _csv(out_dir / "progress.csv")] == ["0", "1", "2", "3", "4"]  # row 4 > checkpoint 4
    assert train_state.find_latest_checkpoint(str(out_dir), [0.9999]) == str(out_dir / "model000004.pt")
    resumed = _drive(tmp_path, cache_dir, "image_train.py", args)
    assert resumed.returncode == 0, resumed.stderr
    with open(out_dir / "progress.csv") as f:
        lines = f.read().splitlines()
    assert "step" in lines[0].split(",") and not any("step" in line.split(",") for line in lines[1:])  # one header
    assert [r["step"] for r in _csv(out_dir / "progress.csv")] == [str(i) for i in range(6)]
    log = (out_dir / "log.txt").read_text()
    assert log.count("resuming from") == 1 and "Logging to" in log.splitlines()[0]


def test_finished_run_rerun_says_nothing_to_do_and_changes_no_file(run_script, tmp_path):
    args = TINY_UNET + ["--lr_anneal_steps", 2, "--log_interval", 1, "--resume_checkpoint", "auto"]
    code, out = run_script("image_train.py", args, tmp_path)
    assert code == 0, out

    def snapshot():
        return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}

    before = snapshot()
    code, out = run_script("image_train.py", args, tmp_path)
    assert code == 0 and out.strip() == (f"nothing to do: step 2 reached ({tmp_path / 'model000002.pt'} is the end "
                                         f"of this run, --lr_anneal_steps 2)")
    assert snapshot() == before
    code, out = run_script("image_train.py", args[:-4] + ["--lr_anneal_steps", 1, "--resume_checkpoint", "auto"],
                           tmp_path)
    assert code == 0 and "past the end of this run at --lr_anneal_steps 1" in out and snapshot() == before


@pytest.mark.parametrize("steps,during", [(2, "opt000002.pt"), (4, "ema_0.9999_000002.pt")])
def test_sigterm_during_a_save_finishes_it_and_exits_with_a_message(tmp_path, cache_dir, steps, during):
    out_dir = tmp_path / "run"
    args = TINY_UNET + ["--lr_anneal_steps", steps, "--save_interval", 2, "--output_dir", out_dir]
    out = _drive(tmp_path, cache_dir, "image_train.py", args, SIGNAL_DURING=during)
    assert out.returncode == 128 + signal.SIGTERM, out.stderr
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith("image_train.py: ") and f"step 2 is saved in {out_dir}" in message
    assert ("end of the run" in message) == (steps == 2) and ("--resume_checkpoint auto" in message) == (steps == 4)
    assert not [n for n in os.listdir(out_dir) if n.startswith(".tmp-")]
    assert train_state.find_latest_checkpoint(str(out_dir), [0.9999]) == str(out_dir / "model000002.pt")
    for name in ("model000002.pt", "ema_0.9999_000002.pt", "opt000002.pt"):
        assert th.load(out_dir / name, weights_only=True)


def test_output_dir_wins_over_openai_logdir(run_script, tmp_path):
    code, out = run_script("classifier_train.py", TINY_CLF + ["--iterations", 1, "--output_dir", tmp_path / "flag"],
                           tmp_path / "env")
    assert code == 0, out
    assert {"model000001.pt", "args.json", "progress.csv"} <= set(os.listdir(tmp_path / "flag"))
    assert not os.path.exists(tmp_path / "env")
    recorded = json.loads((tmp_path / "flag" / "args.json").read_text())
    assert recorded["output_dir"] == str(tmp_path / "flag")
    assert recorded["class_names"] == [str(d) for d in range(10)]
