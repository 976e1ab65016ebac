"""The shared training loop: EMA, lr schedule, saves, stop and exact resume, whatever the loss step."""

import csv
import functools
import os
import signal

import numpy as np
import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.image_datasets import load_data
from guided_diffusion.resample import LossSecondMomentResampler
from guided_diffusion.training.diffusion import DiffusionTrainLoop
from guided_diffusion.training.loop import TrainLoopBase, log_loss_dict, parse_ema_rates
from train_helpers import (  # noqa: F401
    StopAfter, digits8, logdir, make_loop, params, setup_model, straight_and_split,
)


def _loop(model, diffusion, data, **kw):
    return make_loop(DiffusionTrainLoop, model, diffusion, data, **kw)


def test_parse_ema_rates():
    assert parse_ema_rates("0.9999") == [0.9999]
    assert parse_ema_rates("0.999, 0.9999") == [0.999, 0.9999]
    assert parse_ema_rates(0.5) == [0.5]
    assert parse_ema_rates("") == [] and parse_ema_rates(()) == []
    with pytest.raises(ValueError, match="1.5"):
        parse_ema_rates("1.5")
    with pytest.raises(ValueError, match="ema_rate.*'fast'"):
        parse_ema_rates("fast")


def test_ema_update_formula(digits8, logdir):
    model, diffusion, _ = setup_model()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    loop = _loop(model, diffusion, data, ema_rate="0.9,0.5")
    before = params(model)
    loop.run_step(*next(data))
    after = params(model)
    for rate, ema in zip([0.9, 0.5], loop.ema_params):
        for e, b, a in zip(ema, before, after):
            th.testing.assert_close(e, rate * b + (1 - rate) * a, rtol=0, atol=1e-6)
    assert any(not th.equal(b, a) for b, a in zip(before, after))


def test_lr_anneals_linearly_to_zero_and_run_stops_at_anneal_steps(digits8, logdir):
    model, diffusion, _ = setup_model()
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
    assert loop.step == 4 and loop.last_saved_step == 4
    names = set(os.listdir(logdir))
    assert {"model000000.pt", "model000004.pt", "opt000004.pt", "ema_0.9_000004.pt", "train_state000004.json"} <= names
    # checkpoints are plain float32 state dicts of the model, nothing else pickled
    for name in ["model000004.pt", "ema_0.9_000004.pt"]:
        sd = th.load(os.path.join(logdir, name), weights_only=True)
        assert list(sd.keys()) == list(model.state_dict().keys())
        assert all(v.dtype == th.float32 for v in sd.values())
    th.testing.assert_close(th.load(os.path.join(logdir, "model000004.pt"), weights_only=True), model.state_dict())


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


class _Linear(th.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = th.nn.Parameter(th.tensor([1.0, -2.0, 3.0]))


class _Batches:
    def __next__(self):
        return th.tensor([[2.0, -1.0, 0.5]]), {}


class _LinearLossLoop(TrainLoopBase):
    """Loss = w . x: the base loop with a loss step of known gradient x."""

    total_steps = 3

    def forward_backward(self, batch, cond):
        self.mp_trainer.zero_grad()
        loss = (self.model.w * batch[0]).sum()
        self.log_losses(th.zeros(1, dtype=th.long), {"loss": loss.detach()[None]})
        self.mp_trainer.backward(loss)


class _NoDiffusion:
    num_timesteps = 1


def test_base_loop_runs_any_loss_step_adam_moves_each_weight_by_lr_against_its_gradient(logdir):
    model = _Linear()
    loop = make_loop(_LinearLossLoop, model, _NoDiffusion(), _Batches(), batch_size=1, lr=0.1, ema_rate="0.5",
                     log_interval=1, save_interval=2)
    loop.run_loop()
    # With a constant gradient g, every Adam step is lr * g / |g| (up to eps): 3 steps of 0.1.
    expected = th.tensor([1.0, -2.0, 3.0]) - 0.3 * th.sign(th.tensor([2.0, -1.0, 0.5]))
    th.testing.assert_close(model.w.detach(), expected, rtol=0, atol=1e-5)
    assert loop.global_step == 3 and loop.last_saved_step == 3
    assert sorted(n for n in os.listdir(logdir) if n.startswith("model")) == ["model000002.pt", "model000003.pt"]
    ema = th.load(os.path.join(logdir, "ema_0.5_000003.pt"), weights_only=True)["w"]
    w1, w2, w3 = (th.tensor([1.0, -2.0, 3.0]) - k * 0.1 * th.sign(th.tensor([2.0, -1.0, 0.5])) for k in (1, 2, 3))
    th.testing.assert_close(ema, 0.125 * th.tensor([1.0, -2.0, 3.0]) + 0.125 * w1 + 0.25 * w2 + 0.5 * w3,
                            rtol=0, atol=1e-5)
    with open(os.path.join(logdir, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["samples"]) for r in rows] == [("0", "1"), ("1", "2"), ("2", "3")]
    # loss_i = w_i . x, and each step lowers it by lr * |x|_1 = 0.35
    assert [float(r["loss"]) for r in rows] == pytest.approx([5.5, 5.15, 4.8], abs=1e-5)


def test_base_loop_needs_a_loss_step(logdir):
    loop = make_loop(TrainLoopBase, _Linear(), _NoDiffusion(), _Batches(), batch_size=1)
    with pytest.raises(NotImplementedError):
        loop.run_step(*next(_Batches()))


@pytest.mark.parametrize("flag", ["log_interval", "save_interval"])
def test_non_positive_intervals_are_refused(flag, logdir):
    with pytest.raises(ValueError, match=f"--{flag} must be > 0, got 0"):
        make_loop(_LinearLossLoop, _Linear(), _NoDiffusion(), _Batches(), batch_size=1, **{flag: 0})


def _run_until(digits8, total, stop_after=None, resume=""):
    model, diffusion, flags = setup_model(seed=5, dropout=0.1)
    sampler = LossSecondMomentResampler(diffusion, history_per_term=1)
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, class_cond=False, random_crop=True)
    if stop_after:
        data = StopAfter(data, stop_after)
    loop = _loop(model, diffusion, data, lr_anneal_steps=total, save_interval=1000, schedule_sampler=sampler,
                 resume_checkpoint=resume, ema_rate="0.9,0.99", model_flags=flags)
    loop.run_loop()
    return loop


def test_exact_resume_k_plus_k_equals_2k(digits8, tmp_path):
    k = 2
    straight, first, resumed = straight_and_split(tmp_path, functools.partial(_run_until, digits8), 2 * k, k)
    assert first.stopped_by == signal.SIGTERM and first.step == k
    assert os.path.exists(tmp_path / "split" / f"train_state{k:06d}.json")
    assert resumed.resume_step == k and resumed.step == k

    for a, b in zip(params(straight.model), params(resumed.model)):
        assert th.equal(a, b)
    for ema_a, ema_b in zip(straight.ema_params, resumed.ema_params):
        for a, b in zip(ema_a, ema_b):
            assert th.equal(a, b)
    assert np.array_equal(straight.schedule_sampler._loss_history, resumed.schedule_sampler._loss_history)
    assert straight.data.consumed == resumed.data.consumed == 2 * k


class _SignalDuringSave(_LinearLossLoop):
    """Sends itself SIGTERM twice while writing the checkpoint of step `signal_at`."""

    signal_at = None

    def _write_checkpoint(self, step, rank_states):
        if step == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        super()._write_checkpoint(step, rank_states)


@pytest.mark.parametrize("signal_at,finished", [(2, False), (3, True)])
def test_signal_during_a_save_lets_it_finish_then_stops(logdir, signal_at, finished):
    loop = make_loop(_SignalDuringSave, _Linear(), _NoDiffusion(), _Batches(), batch_size=1, save_interval=2)
    loop.signal_at = signal_at
    loop.run_loop()
    assert loop.stopped_by == signal.SIGTERM and loop.global_step == signal_at and loop.finished() == finished
    names = os.listdir(logdir)
    assert not [n for n in names if n.startswith(".tmp-")]
    assert th.load(os.path.join(logdir, f"model{signal_at:06d}.pt"), weights_only=True)["w"].shape == (3,)
    assert f"train_state{signal_at:06d}.json" in names
    text = open(os.path.join(logdir, "log.txt")).read()
    assert ("while finishing: the last checkpoint, step 3, is complete" in text) == finished
    assert (f"received SIGTERM: saved step {signal_at}" in text) != finished


class _Crash:
    """Batches of `_Batches` until batch number `n`, which raises (a stand-in for kill -9)."""

    def __init__(self, n):
        self.n, self.count = n, 0

    def __next__(self):
        self.count += 1
        if self.count == self.n:
            raise RuntimeError("killed")
        return next(_Batches())


def test_resume_drops_the_log_rows_of_steps_after_its_checkpoint(tmp_path):
    folder = str(tmp_path / "run")
    logger.configure(dir=folder, format_strs=["csv"])
    first = make_loop(_LinearLossLoop, _Linear(), _NoDiffusion(), _Crash(5), batch_size=1, log_interval=1,
                      save_interval=3)
    first.total_steps = 5
    with pytest.raises(RuntimeError, match="killed"):
        first.run_loop()
    logger.configure(dir=folder, format_strs=["csv"], append=True)
    resumed = make_loop(_LinearLossLoop, _Linear(), _NoDiffusion(), _Batches(), batch_size=1, log_interval=1,
                        save_interval=3, resume_checkpoint="auto")
    resumed.total_steps = 5
    assert resumed.resume_step == 3
    resumed.run_loop()
    with open(os.path.join(folder, "progress.csv")) as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["0", "1", "2", "3", "4"]


def test_a_finished_run_has_nothing_to_do_and_writes_nothing(logdir):
    make_loop(_LinearLossLoop, _Linear(), _NoDiffusion(), _Batches(), batch_size=1).run_loop()
    before = {n: os.stat(os.path.join(logdir, n)).st_mtime_ns for n in os.listdir(logdir) if n != "log.txt"}
    again = make_loop(_LinearLossLoop, _Linear(), _NoDiffusion(), _Batches(), batch_size=1, resume_checkpoint="auto")
    again.run_loop()
    assert again.step == 0 and again.global_step == 3 and again.stopped_by is None
    after = {n: os.stat(os.path.join(logdir, n)).st_mtime_ns for n in os.listdir(logdir) if n != "log.txt"}
    assert after == before
    assert "nothing to do: step 3 reached" in open(os.path.join(logdir, "log.txt")).read()


# ------------------------------------------------------------------------------ --precision, --compile


def _one_step(digits8, **kw):
    """(loop, parameters before) after one update of the tiny UNet from seed 0 on the same batch."""
    model, diffusion, _ = setup_model()
    with th.no_grad():  # fill the zero-initialised output layer, so that the output is not exactly 0
        for p in model.parameters():
            if not p.any():
                p.copy_(0.02 * th.randn(p.shape, generator=th.Generator().manual_seed(2)))
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    loop = _loop(model, diffusion, data, ema_rate="0.5", **kw)
    before = params(model)
    th.manual_seed(5)  # the same timesteps and noise for every precision
    loop.run_step(*next(data))
    return loop, before, logger.dumpkvs()


def test_bf16_training_keeps_float32_master_weights_and_ema(digits8, logdir):
    ref, _, ref_kv = _one_step(digits8)
    loop, before, kv = _one_step(digits8, precision="bf16")
    assert ref.forward_model is ref.ddp_model and loop.precision == "bf16"
    after = params(loop.model)
    assert all(p.dtype == th.float32 for p in loop.mp_trainer.master_params)
    assert loop.mp_trainer.master_params == list(loop.model.parameters())  # no copies to keep in sync
    assert all(e.dtype == th.float32 for e in loop.ema_params[0])
    for e, b, a in zip(loop.ema_params[0], before, after):
        th.testing.assert_close(e, 0.5 * b + 0.5 * a, rtol=0, atol=1e-6)
    assert any(not th.equal(b, a) for b, a in zip(before, after))
    # bf16 rounds at 2^-9 relative per operation; the batch's loss stays within a few percent
    assert kv["loss"] == pytest.approx(ref_kv["loss"], rel=5e-2) and kv["loss"] != ref_kv["loss"]
    assert "lg_loss_scale" not in kv  # bf16 needs no loss scaling


def test_fp32_precision_is_the_plain_step_bit_for_bit(digits8, logdir):
    ref, _, _ = _one_step(digits8)
    same, _, _ = _one_step(digits8, precision="fp32", compile=False)
    assert all(th.equal(a, b) for a, b in zip(params(ref.model), params(same.model)))


def test_loss_scaling_without_conversion_is_exact_and_skips_overflow(logdir):
    """fp16 autocast training: the model's float32 parameters are the masters, scaled by 2^k."""
    from guided_diffusion.training.mixed_precision import MixedPrecisionTrainer

    def trainer_and_step(loss_scaling, loss_of):
        model = _Linear()
        trainer = MixedPrecisionTrainer(model=model, loss_scaling=loss_scaling, initial_lg_loss_scale=10.0,
                                        fp16_scale_growth=0.5)
        opt = th.optim.SGD(trainer.master_params, lr=0.1)
        trainer.zero_grad()
        trainer.backward(loss_of(model))
        return model, trainer, trainer.optimize(opt)

    x = th.tensor([2.0, -1.0, 0.5])
    plain, _, _ = trainer_and_step(False, lambda m: m.w @ x)
    scaled, trainer, took = trainer_and_step(True, lambda m: m.w @ x)
    assert took and th.equal(scaled.w, plain.w)  # a power-of-two scale divides out exactly
    assert trainer.master_params == [scaled.w] and trainer.lg_loss_scale == 10.5
    overflow, trainer, took = trainer_and_step(True, lambda m: m.w @ x * float("inf"))
    assert not took and trainer.lg_loss_scale == 9.0
    assert th.equal(overflow.w, th.tensor([1.0, -2.0, 3.0]))


def test_unusable_precisions_are_refused_naming_the_flag(monkeypatch, logdir):
    from guided_diffusion.runtime import precision as P

    monkeypatch.setattr(P, "detect_support", lambda device, cpuinfo_path=None: P.DeviceSupport(
        "cpu", "simulated CPU", (), bf16=False, fp16=False))
    with pytest.raises(ValueError, match=r"--precision fp16: this CPU \(simulated CPU\)"):
        make_loop(DiffusionTrainLoop, _Linear(), _NoDiffusion(), _Batches(), precision="fp16")
    with pytest.raises(ValueError, match="--precision bf16 cannot be combined with --use_fp16 True"):
        make_loop(DiffusionTrainLoop, _Linear(), _NoDiffusion(), _Batches(), precision="bf16", use_fp16=True)
    loop = make_loop(DiffusionTrainLoop, _Linear(), _NoDiffusion(), _Batches(), precision="auto")
    assert loop.precision == "fp32" and loop.forward_model is loop.ddp_model


@pytest.mark.slow
def test_compiled_training_step_matches_eager(digits8, logdir, monkeypatch):
    """compile=True through dynamo's aot_eager backend: the same update within float32 rounding."""
    import functools

    from guided_diffusion.runtime import speed

    monkeypatch.setattr(speed, "maybe_compile", functools.partial(speed.maybe_compile, backend="aot_eager"))
    th._dynamo.reset()
    try:
        ref, _, _ = _one_step(digits8)
        compiled, _, _ = _one_step(digits8, compile=True)
    finally:
        th._dynamo.reset()
    assert compiled.forward_model.fn.is_compiled
    for a, b in zip(params(compiled.model), params(ref.model)):
        th.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
