"""The diffusion loss step: microbatches add up to the batch, fp16 overflow skips the update."""

import torch as th
import pytest

from guided_diffusion import logger
from guided_diffusion.image_datasets import load_data
from guided_diffusion.training.diffusion import DiffusionTrainLoop
from train_helpers import digits8, logdir, make_loop, params, setup_model  # noqa: F401


def _loop(model, diffusion, data, **kw):
    return make_loop(DiffusionTrainLoop, model, diffusion, data, **kw)


def test_microbatches_give_the_full_batch_update(digits8, tmp_path):
    results = []
    for micro in (-1, 2):
        model, diffusion, _ = setup_model(seed=3)
        data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
        logger.configure(dir=str(tmp_path / str(micro)), format_strs=[])
        loop = _loop(model, diffusion, data, microbatch=micro)
        loop.run_step(*next(data))
        results.append((params(model), logger.dumpkvs()))
    for a, b in zip(results[0][0], results[1][0]):
        th.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert results[0][1]["loss"] == pytest.approx(results[1][1]["loss"], rel=1e-5)


def test_fp16_overflow_skips_step_and_recovers(digits8, logdir):
    model, diffusion, _ = setup_model(use_fp16=True)
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    loop = _loop(model, diffusion, data, use_fp16=True, fp16_scale_growth=0.5)
    assert loop.mp_trainer.lg_loss_scale == 20.0
    batch, cond = next(data)
    before = params(model)
    ema_before = [p.clone() for p in loop.ema_params[0]]
    bad = batch.clone()
    bad[0, 0, 0, 0] = float("inf")
    loop.run_step(bad, cond)
    assert loop.mp_trainer.lg_loss_scale == 19.0
    assert all(th.equal(a, b) for a, b in zip(before, params(model)))
    assert all(th.equal(a, b) for a, b in zip(ema_before, loop.ema_params[0]))
    loop.run_step(batch, cond)
    assert loop.mp_trainer.lg_loss_scale == 19.5
    assert any(not th.equal(a, b) for a, b in zip(before, params(model)))
    assert all(th.isfinite(p).all() for p in model.parameters())


def test_lr_anneal_steps_is_the_end_and_the_anneal_horizon(digits8, logdir):
    model, diffusion, _ = setup_model()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    assert _loop(model, diffusion, data, lr_anneal_steps=7).total_steps == 7
    endless = _loop(model, diffusion, data)
    assert endless.total_steps == 0 and not endless.anneal_lr and not endless.finished()
