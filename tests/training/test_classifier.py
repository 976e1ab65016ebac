"""The classifier loss step: top-k accuracy, microbatch slicing, and exact resume."""

import os
import signal

import numpy as np
import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.image_datasets import load_data
from guided_diffusion.script_util import classifier_and_diffusion_defaults, create_classifier_and_diffusion
from guided_diffusion.training import state as train_state
from guided_diffusion.training.classifier import ClassifierTrainLoop, compute_top_k, split_microbatches
from train_helpers import StopAfter, digits8, logdir, params, straight_and_split  # noqa: F401


def test_compute_top_k_counts_label_among_k_largest():
    logits = th.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    labels = th.tensor([2, 0, 0])
    assert compute_top_k(logits, labels, k=1, reduction="none").tolist() == [0.0, 1.0, 0.0]
    assert compute_top_k(logits, labels, k=2, reduction="none").tolist() == [1.0, 1.0, 0.0]
    assert compute_top_k(logits, labels, k=5) == pytest.approx(1.0)  # k capped at the class count
    with pytest.raises(ValueError, match="reduction"):
        compute_top_k(logits, labels, k=1, reduction="sum")


def test_split_microbatches_covers_the_batch_in_order():
    x, y = th.arange(5), th.arange(5) * 10
    chunks = list(split_microbatches(2, x, y, None))
    assert [c[0].tolist() for c in chunks] == [[0, 1], [2, 3], [4]]
    assert [c[1].tolist() for c in chunks] == [[0, 10], [20, 30], [40]] and all(c[2] is None for c in chunks)
    for whole in (-1, 0, 5, 9):
        (only,) = split_microbatches(whole, x, y)
        assert only[0] is x


def _classifier_loop(digits8, total, stop_after=None, resume="", **kw):
    th.manual_seed(4)
    np.random.seed(4)
    flags = classifier_and_diffusion_defaults()
    flags.update(image_size=8, classifier_width=64, classifier_depth=1, classifier_attention_resolutions="8",
                 classifier_channel_mult="1", diffusion_steps=40)
    model, diffusion = create_classifier_and_diffusion(**flags)
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, class_cond=True, random_crop=True)
    val = load_data(data_dir=digits8, batch_size=4, image_size=8, class_cond=True)
    if stop_after:
        data = StopAfter(data, stop_after)
    args = dict(model=model, diffusion=diffusion, data=data, val_data=val, iterations=total, lr=1e-3,
                anneal_lr=True, batch_size=4, eval_interval=1, save_interval=100, resume_checkpoint=resume,
                model_flags=flags)
    args.update(kw)
    return ClassifierTrainLoop(**args)


def test_classifier_checkpoints_have_no_ema_and_validation_is_logged(digits8, logdir):
    loop = _classifier_loop(digits8, 2, log_interval=1)
    loop.run_loop()
    names = sorted(n for n in os.listdir(logdir) if n.endswith((".pt", ".json")))
    assert names == ["model000002.pt", "opt000002.pt", "train_state000002.json"]
    assert loop.mp_trainer.lg_loss_scale == 16.0 and loop.ema_params == []
    doc = train_state.read_train_state(os.path.join(logdir, "train_state000002.json"))
    assert set(doc["ranks"][0]["data"]) == {"train", "val"}


@pytest.mark.slow
def test_classifier_exact_resume_k_plus_k_equals_2k(digits8, tmp_path):
    def run(total, stop_after=None, resume=""):
        loop = _classifier_loop(digits8, total, stop_after, resume)
        loop.run_loop()
        return loop

    straight, first, resumed = straight_and_split(tmp_path, run, 2, 1)
    assert first.stopped_by == signal.SIGTERM and first.step == 1
    assert resumed.resume_step == 1 and resumed.step == 1
    for a, b in zip(params(straight.model), params(resumed.model)):
        assert th.equal(a, b)
    assert straight.val_data.consumed == resumed.val_data.consumed == 2
