import json
import os
import signal

import numpy as np
import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.data import digits as digits
from guided_diffusion.training import state as train_state
from guided_diffusion.image_datasets import load_data
from guided_diffusion.resample import LossSecondMomentResampler
from guided_diffusion.script_util import create_model_and_diffusion, model_and_diffusion_defaults
from guided_diffusion.train_util import (
    TrainLoop,
    find_ema_checkpoint,
    log_loss_dict,
    parse_ema_rates,
    parse_resume_step_from_filename,
    resolve_resume_checkpoint,
)

TINY = dict(image_size=8, num_channels=32, num_res_blocks=1, channel_mult="1", attention_resolutions="8",
            num_head_channels=-1, num_heads=1, diffusion_steps=40)


@pytest.fixture
def digits8(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "digits_cache"
    return digits.materialize_digits("heldout", 8, root=root)[0]


@pytest.fixture
def logdir(tmp_path):
    prev = logger.Logger.CURRENT
    logger.configure(dir=str(tmp_path / "log"), format_strs=["log", "csv"])
    yield str(tmp_path / "log")
    logger.Logger.CURRENT.close()
    logger.Logger.CURRENT = prev


def _setup(seed=0, dropout=0.0, **over):
    th.manual_seed(seed)
    np.random.seed(seed)
    flags = model_and_diffusion_defaults()
    flags.update(TINY, dropout=dropout, **over)
    model, diffusion = create_model_and_diffusion(**flags)
    return model, diffusion, flags


def _loop(model, diffusion, data, **kw):
    args = dict(model=model, diffusion=diffusion, data=data, batch_size=4, microbatch=-1, lr=1e-3,
                ema_rate="0.9", log_interval=100, save_interval=100, resume_checkpoint="")
    args.update(kw)
    return TrainLoop(**args)


class _StopAfter:
    """Data wrapper that sends this process SIGTERM when batch number `n` is taken."""

    def __init__(self, data, n):
        self.data, self.n, self.count = data, n, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.count += 1
        if self.count == self.n:
            os.kill(os.getpid(), signal.SIGTERM)
        return next(self.data)

    def state_dict(self):
        return self.data.state_dict()

    def load_state_dict(self, s):
        self.data.load_state_dict(s)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_parse_resume_step_reads_number_and_rejects_other_names():
    assert parse_resume_step_from_filename("/a/b/model012345.pt") == 12345
    for bad in ["/a/ema_0.9999_000100.pt", "/a/mymodel.pt", "/a/model.pt", "checkpoint"]:
        with pytest.raises(ValueError, match="model<step>.pt"):
            parse_resume_step_from_filename(bad)


def test_parse_ema_rates():
    assert parse_ema_rates("0.9999") == [0.9999]
    assert parse_ema_rates("0.999, 0.9999") == [0.999, 0.9999]
    assert parse_ema_rates(0.5) == [0.5]
    with pytest.raises(ValueError, match="1.5"):
        parse_ema_rates("1.5")


def test_ema_update_formula(digits8, logdir):
    model, diffusion, _ = _setup()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    loop = _loop(model, diffusion, data, ema_rate="0.9,0.5")
    before = _params(model)
    loop.run_step(*next(data))
    after = _params(model)
    for rate, ema in zip([0.9, 0.5], loop.ema_params):
        for e, b, a in zip(ema, before, after):
            th.testing.assert_close(e, rate * b + (1 - rate) * a, rtol=0, atol=1e-6)
    assert any(not th.equal(b, a) for b, a in zip(before, after))


def test_lr_anneals_linearly_to_zero_and_run_stops_at_anneal_steps(digits8, logdir):
    model, diffusion, _ = _setup()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    loop = _loop(model, diffusion, data, lr=0.01, lr_anneal_steps=4, save_interval=1000)
    seen = []
    orig_step = loop.opt.step

    def spy(*a, **k):
        seen.append(loop.opt.param_groups[0]["lr"])
        return orig_step(*a, **k)

    loop.opt.step = spy
    loop.run_loop()
    assert seen == pytest.approx([0.01, 0.0075, 0.005, 0.0025])
    assert loop.step == 4
    names = set(os.listdir(logdir))
    assert {"model000000.pt", "model000004.pt", "opt000004.pt", "ema_0.9_000004.pt", "train_state000004.json"} <= names
    # checkpoints are plain float32 state dicts of the model, nothing else pickled
    for name in ["model000004.pt", "ema_0.9_000004.pt"]:
        sd = th.load(os.path.join(logdir, name), weights_only=True)
        assert list(sd.keys()) == list(model.state_dict().keys())
        assert all(v.dtype == th.float32 for v in sd.values())
    th.testing.assert_close(th.load(os.path.join(logdir, "model000004.pt"), weights_only=True), model.state_dict())


def test_microbatches_give_the_full_batch_update(digits8, tmp_path):
    results = []
    for micro in (-1, 2):
        model, diffusion, _ = _setup(seed=3)
        data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
        logger.configure(dir=str(tmp_path / str(micro)), format_strs=[])
        loop = _loop(model, diffusion, data, microbatch=micro)
        loop.run_step(*next(data))
        results.append((_params(model), logger.dumpkvs()))
    for a, b in zip(results[0][0], results[1][0]):
        th.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert results[0][1]["loss"] == pytest.approx(results[1][1]["loss"], rel=1e-5)


def test_log_loss_dict_means_per_quartile(logdir):
    class D:
        num_timesteps = 100

    logger.dumpkvs()
    ts = th.tensor([0, 24, 25, 99, 50])
    log_loss_dict(D(), ts, {"loss": th.tensor([1.0, 3.0, 5.0, 7.0, 9.0])})
    kv = logger.dumpkvs()
    assert kv["loss"] == pytest.approx(5.0)
    assert kv["loss_q0"] == pytest.approx(2.0) and kv["loss_q1"] == pytest.approx(5.0)
    assert kv["loss_q2"] == pytest.approx(9.0) and kv["loss_q3"] == pytest.approx(7.0)


def _run_until(digits8, logdir, total, stop_after=None, resume=""):
    model, diffusion, flags = _setup(seed=5, dropout=0.1)
    sampler = LossSecondMomentResampler(diffusion, history_per_term=1)
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, class_cond=False, random_crop=True)
    if stop_after:
        data = _StopAfter(data, stop_after)
    loop = _loop(model, diffusion, data, lr_anneal_steps=total, save_interval=1000, schedule_sampler=sampler,
                 resume_checkpoint=resume, ema_rate="0.9,0.99", model_flags=flags)
    loop.run_loop()
    return loop


def test_exact_resume_k_plus_k_equals_2k(digits8, tmp_path):
    k = 2
    logger.configure(dir=str(tmp_path / "straight"), format_strs=[])
    straight = _run_until(digits8, None, 2 * k)

    logger.configure(dir=str(tmp_path / "split"), format_strs=[])
    first = _run_until(digits8, None, 2 * k, stop_after=k)
    assert first.stopped_by == signal.SIGTERM and first.step == k
    assert os.path.exists(tmp_path / "split" / f"train_state{k:06d}.json")
    resumed = _run_until(digits8, None, 2 * k, resume="auto")
    assert resumed.resume_step == k and resumed.step == k

    for a, b in zip(_params(straight.model), _params(resumed.model)):
        assert th.equal(a, b)
    for ema_a, ema_b in zip(straight.ema_params, resumed.ema_params):
        for a, b in zip(ema_a, ema_b):
            assert th.equal(a, b)
    assert np.array_equal(straight.schedule_sampler._loss_history, resumed.schedule_sampler._loss_history)
    assert straight.data.consumed == resumed.data.consumed == 2 * k


def test_auto_resume_skips_incomplete_newest_checkpoint(tmp_path):
    d = tmp_path
    for step in (5, 10):
        for name in [train_state.model_filename(step), train_state.ema_filename(0.9999, step),
                     train_state.opt_filename(step), train_state.state_filename(step)]:
            (d / name).write_bytes(b"x")
    os.remove(d / train_state.opt_filename(10))
    (d / ".tmp-opt000010.pt-abc").write_bytes(b"partial")
    assert train_state.find_latest_checkpoint(str(d), [0.9999]) == str(d / "model000005.pt")
    assert train_state.find_latest_checkpoint(str(tmp_path / "none"), [0.9999]) is None


def test_auto_resume_accepts_original_checkpoint_dirs_without_side_files(tmp_path):
    for name in ["model000100.pt", "ema_0.9999_000100.pt", "opt000100.pt"]:
        (tmp_path / name).write_bytes(b"x")
    assert train_state.find_latest_checkpoint(str(tmp_path), [0.9999]) == str(tmp_path / "model000100.pt")


def test_missing_resume_path_is_a_clear_error(logdir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        resolve_resume_checkpoint(str(tmp_path / "model000010.nothere.pt"))
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="weights.pt"):
        resolve_resume_checkpoint(str(tmp_path / "weights.pt"))


def test_auto_with_empty_logdir_starts_fresh(logdir):
    assert resolve_resume_checkpoint("auto", [0.9999]) is None


def test_resume_with_different_flags_fails_naming_checkpoint(digits8, logdir):
    model, diffusion, _ = _setup()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    _loop(model, diffusion, data, lr_anneal_steps=1).run_loop()
    other, diffusion2, flags2 = _setup(num_channels=64)
    with pytest.raises(ValueError, match="model000001.pt"):
        _loop(other, diffusion2, data, resume_checkpoint=os.path.join(logdir, "model000001.pt"), model_flags=flags2)


def test_find_ema_checkpoint(tmp_path):
    (tmp_path / "ema_0.9999_000007.pt").write_bytes(b"x")
    main = str(tmp_path / "model000007.pt")
    assert find_ema_checkpoint(main, 7, 0.9999) == str(tmp_path / "ema_0.9999_000007.pt")
    assert find_ema_checkpoint(main, 7, 0.99) is None and find_ema_checkpoint(None, 7, 0.9) is None


def test_sampler_state_round_trip():
    class D:
        num_timesteps = 5

    a, b = LossSecondMomentResampler(D()), LossSecondMomentResampler(D())
    a.update_with_all_losses([0, 1, 1, 4], [0.5, 1.0, 2.0, 3.0])
    state = json.loads(json.dumps(train_state.sampler_state(a)))
    train_state.load_sampler_state(b, state)
    assert np.array_equal(a._loss_history, b._loss_history) and np.array_equal(a._loss_counts, b._loss_counts)
    assert b._loss_counts.dtype == np.int64


def test_rng_state_round_trip_through_json():
    import random

    s = json.loads(json.dumps(train_state.capture_rng_state()))
    expected = (th.rand(3), np.random.rand(3), random.random())
    th.rand(5), np.random.rand(2), random.random()
    train_state.restore_rng_state(s)
    got = (th.rand(3), np.random.rand(3), random.random())
    assert th.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


# ---------------------------------------------------------------------------------------------
# Two ranks under mpiexec (gloo on CPU)

_TOY = '''
import sys, torch as th, numpy as np
from guided_diffusion import dist_util, logger
from guided_diffusion.image_datasets import load_data
from guided_diffusion.train_util import TrainLoop

class ToyModel(th.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = th.nn.Conv2d(3, 3, 3, padding=1)
    def forward(self, x, t, **kw):
        return self.conv(x)

class ToyDiffusion:
    """Loss independent of t and noise, so batches split over ranks can be compared exactly."""
    num_timesteps = 4
    def training_losses(self, model, x, t, model_kwargs=None, noise=None):
        return {"loss": ((model(x, t) - x.flip(-1)) ** 2).mean(dim=(1, 2, 3))}

def train(data_dir, logdir, batch_size, shard=None, num_shards=None, steps=3):
    logger.configure(dir=logdir, format_strs=["csv"] if shard is None else [])
    th.manual_seed(dist_util.get_rank() if shard is None else 0)  # ranks start different: sync must fix it
    model = ToyModel()
    data = load_data(data_dir=data_dir, batch_size=batch_size, image_size=8, deterministic=True,
                     random_flip=False, shard=shard, num_shards=num_shards, seed=0)
    loop = TrainLoop(model=model, diffusion=ToyDiffusion(), data=data, batch_size=batch_size, microbatch=-1,
                     lr=1e-2, ema_rate="0.9", log_interval=1, save_interval=1000, resume_checkpoint="",
                     lr_anneal_steps=steps)
    loop.run_loop()
    return th.cat([p.detach().flatten() for p in model.parameters()]), loop

if __name__ == "__main__":
    dist_util.setup_dist()
    params, loop = train(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    np.save(sys.argv[2] + "/params_rank%d.npy" % dist_util.get_rank(), params.numpy())
    with open(sys.argv[2] + "/info_rank%d.txt" % dist_util.get_rank(), "w") as f:
        f.write("GLOBAL_BATCH %d DDP %s" % (loop.global_batch, loop.use_ddp))
'''


def _mpiexec():
    import shutil
    import sys

    exe = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return exe if os.path.exists(exe) else None


@pytest.mark.skipif(_mpiexec() is None, reason="mpiexec not installed")
def test_mpiexec_two_ranks_identical_params_and_double_global_batch(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = np.random.RandomState(0)
    for i in range(4):
        Image.fromarray(rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)).save(data_dir / f"{i}_x.png")
    toy = tmp_path / "toy.py"
    toy.write_text(_TOY)
    logdir = tmp_path / "mpi"
    logdir.mkdir()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(toy), str(data_dir), str(logdir), "2"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    for r in (0, 1):
        assert (logdir / f"info_rank{r}.txt").read_text() == "GLOBAL_BATCH 4 DDP True"
    p0, p1 = np.load(logdir / "params_rank0.npy"), np.load(logdir / "params_rank1.npy")
    assert np.array_equal(p0, p1)
    import csv

    with open(logdir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["samples"]) for r in rows] == [("0", "4"), ("1", "8"), ("2", "12")]  # 2 ranks x batch 2

    # One process with the whole batch of 4 (= both shards) takes the same steps.
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy", toy)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    prev = logger.Logger.CURRENT
    try:
        ref, _ = mod.train(str(data_dir), str(tmp_path / "single"), 4, shard=0, num_shards=1)
    finally:
        logger.Logger.CURRENT = prev
    np.testing.assert_allclose(p0, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_fp16_overflow_skips_step_and_recovers(digits8, logdir):
    model, diffusion, _ = _setup(use_fp16=True)
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    loop = _loop(model, diffusion, data, use_fp16=True, fp16_scale_growth=0.5)
    assert loop.mp_trainer.lg_loss_scale == 20.0
    batch, cond = next(data)
    before = _params(model)
    ema_before = [p.clone() for p in loop.ema_params[0]]
    bad = batch.clone()
    bad[0, 0, 0, 0] = float("inf")
    loop.run_step(bad, cond)
    assert loop.mp_trainer.lg_loss_scale == 19.0
    assert all(th.equal(a, b) for a, b in zip(before, _params(model)))
    assert all(th.equal(a, b) for a, b in zip(ema_before, loop.ema_params[0]))
    loop.run_step(batch, cond)
    assert loop.mp_trainer.lg_loss_scale == 19.5
    assert any(not th.equal(a, b) for a, b in zip(before, _params(model)))
    assert all(th.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_classifier_exact_resume_k_plus_k_equals_2k(digits8, tmp_path):
    from guided_diffusion.training.classifier import ClassifierTrainLoop
    from guided_diffusion.script_util import classifier_and_diffusion_defaults, create_classifier_and_diffusion

    def run(total, stop_after=None, resume=""):
        th.manual_seed(4)
        np.random.seed(4)
        flags = classifier_and_diffusion_defaults()
        flags.update(image_size=8, classifier_width=64, classifier_depth=1, classifier_attention_resolutions="8",
                     classifier_channel_mult="1", diffusion_steps=40)
        model, diffusion = create_classifier_and_diffusion(**flags)
        data = load_data(data_dir=digits8, batch_size=4, image_size=8, class_cond=True, random_crop=True)
        val = load_data(data_dir=digits8, batch_size=4, image_size=8, class_cond=True)
        if stop_after:
            data = _StopAfter(data, stop_after)
        loop = ClassifierTrainLoop(model=model, diffusion=diffusion, data=data, val_data=val, iterations=total,
                                   lr=1e-3, anneal_lr=True, batch_size=4, eval_interval=1, save_interval=100,
                                   resume_checkpoint=resume, model_flags=flags)
        loop.run_loop()
        return loop

    logger.configure(dir=str(tmp_path / "straight"), format_strs=[])
    straight = run(2)
    logger.configure(dir=str(tmp_path / "split"), format_strs=[])
    first = run(2, stop_after=1)
    assert first.stopped_by == signal.SIGTERM and first.step == 1
    resumed = run(2, resume="auto")
    assert resumed.resume_step == 1 and resumed.step == 1
    for a, b in zip(_params(straight.model), _params(resumed.model)):
        assert th.equal(a, b)
    assert straight.val_data.consumed == resumed.val_data.consumed == 2
