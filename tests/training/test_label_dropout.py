"""Label dropout: the rate, the null label, reproducibility from the seeded global generator."""

import functools
import math

import pytest
import torch as th

from guided_diffusion.data.batch_map import MappedBatches
from guided_diffusion.image_datasets import load_data
from guided_diffusion.training.diffusion import DiffusionTrainLoop
from guided_diffusion.training.label_dropout import drop_labels, label_dropout_wrapper
from train_helpers import StopAfter, digits8, make_loop, params, setup_model, straight_and_split  # noqa: F401

NULL = 10


def _labels(n, seed=0):
    return th.randint(0, NULL, (n,), generator=th.Generator().manual_seed(seed))


@pytest.mark.parametrize("p", [0.05, 0.15, 0.5])
def test_dropout_rate_is_within_three_binomial_standard_errors(p):
    g = th.Generator().manual_seed(123)
    batches, size = 400, 128
    dropped = 0
    for b in range(batches):
        y = _labels(size, seed=b)
        out = drop_labels(y, p, NULL, generator=g)
        kept = out != NULL
        assert th.equal(out[kept], y[kept])  # a label is either kept as is or becomes null
        dropped += int((~kept).sum())
    n = batches * size
    assert abs(dropped / n - p) <= 3 * math.sqrt(p * (1 - p) / n)


def test_zero_probability_returns_the_labels_and_draws_nothing():
    y = _labels(16)
    th.manual_seed(7)
    before = th.get_rng_state()
    assert drop_labels(y, 0.0, NULL) is y
    assert th.equal(th.get_rng_state(), before)


def test_draws_follow_the_global_generator_so_a_restored_state_repeats_them():
    y = _labels(64)
    th.manual_seed(3)
    first = drop_labels(y, 0.3, NULL)
    state = th.get_rng_state()
    second = drop_labels(y, 0.3, NULL)
    th.manual_seed(99)  # something else moves the generator, then a resume restores it
    th.set_rng_state(state)
    assert th.equal(drop_labels(y, 0.3, NULL), second)
    assert not th.equal(first, second)  # fresh draws per batch, not one fixed mask


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_probability_outside_the_unit_interval_is_rejected(p):
    with pytest.raises(ValueError, match=r"--class_dropout_prob must be in \[0, 1\)"):
        drop_labels(_labels(4), p, NULL)


# ------------------------------------------------------------------------------------------
# In the training loop


class _Recorder(MappedBatches):
    """Data wrapper keeping the labels each step trained on."""

    def __init__(self, data):
        super().__init__(data)
        self.labels = []

    def map(self, batch, cond):
        self.labels.append(cond["y"].clone())
        return batch, cond


def _train(digits8, total, stop_after=None, resume=""):
    model, diffusion, flags = setup_model(seed=5, class_cond=True, num_classes=NULL, class_dropout_prob=0.5)
    data = load_data(data_dir=digits8, batch_size=8, image_size=8, class_cond=True)
    if stop_after:
        data = StopAfter(data, stop_after)
    data = _Recorder(label_dropout_wrapper(0.5, NULL)(data))
    loop = make_loop(DiffusionTrainLoop, model, diffusion, data, batch_size=8, lr_anneal_steps=total,
                     save_interval=1000, resume_checkpoint=resume, model_flags=flags)
    loop.run_loop()
    return loop


def test_resumed_run_draws_the_same_dropouts_as_an_uninterrupted_one(digits8, tmp_path):
    k = 2
    straight, first, resumed = straight_and_split(tmp_path, functools.partial(_train, digits8), 2 * k, k)
    assert first.step == k and resumed.resume_step == k
    seen = straight.data.labels
    assert len(seen) == 2 * k and len(first.data.labels) == len(resumed.data.labels) == k
    assert any(bool((y == NULL).any()) for y in seen) and all(bool((y != NULL).any()) for y in seen)
    assert all(th.equal(a, b) for a, b in zip(seen, first.data.labels + resumed.data.labels))
    assert all(th.equal(a, b) for a, b in zip(params(straight.model), params(resumed.model)))
    assert straight.model.label_emb.weight.shape[0] == NULL + 1
