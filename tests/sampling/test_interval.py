"""Guidance intervals: parsing, timestep mapping, and the gated classifier gradient."""

import re

import pytest
import torch as th

from guided_diffusion.config.factory import create_gaussian_diffusion
from guided_diffusion.sampling.interval import (
    GuidanceInterval,
    IntervalCondFn,
    parse_guidance_interval,
    training_timesteps,
)
from sample_helpers import LinearClassifier


def test_parse_accepts_pairs_and_empty():
    assert parse_guidance_interval("", 1000) is None
    assert parse_guidance_interval(" 200, 700 ", 1000) == (200, 700)
    assert parse_guidance_interval("0,999", 1000) == (0, 999)
    assert parse_guidance_interval("5,5", 1000) == (5, 5)


@pytest.mark.parametrize("spec, words", [
    ("5", "two training timesteps"),
    ("a,b", "two training timesteps"),
    ("1,2,3", "two training timesteps"),
    ("-1,500", r"\[0, 999\]"),
    ("0,1000", r"\[0, 999\]"),
    ("700,200", "lo > hi.*'200,700'"),
])
def test_parse_rejects_bad_intervals_naming_the_flag(spec, words):
    with pytest.raises(ValueError, match="--guidance_interval") as err:
        parse_guidance_interval(spec, 1000)
    assert re.search(words, str(err.value))


@pytest.mark.parametrize("steps", [100, 300, 1000, 4000])
def test_rescaled_timesteps_map_back_to_every_training_index(steps):
    index = th.arange(steps)
    scaled = index.float() * (1000.0 / steps)  # what rescale_timesteps feeds the network
    assert th.equal(training_timesteps(scaled, steps, rescaled=True), index)
    assert th.equal(training_timesteps(index, steps, rescaled=False), index)


@pytest.mark.parametrize("rescale", [False, True])
def test_interval_on_a_respaced_process_sees_original_timesteps(rescale):
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="10", rescale_timesteps=rescale)
    interval = GuidanceInterval.for_diffusion("20,60", diffusion)
    seen = []

    def model(x, t):
        seen.append(bool(interval.contains(t)[0]))
        return x

    wrapped = diffusion._wrap_model(model)
    for i in range(diffusion.num_timesteps):
        wrapped(th.zeros(1), th.tensor([i]))
    expected = [20 <= s <= 60 for s in diffusion.timestep_map]
    assert seen == expected
    assert interval.count_steps(diffusion) == sum(expected) > 0


def test_for_diffusion_validates_against_the_training_steps():
    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="10")
    assert GuidanceInterval.for_diffusion("", diffusion) is None
    with pytest.raises(ValueError, match=r"\[0, 99\]"):
        GuidanceInterval.for_diffusion("0,100", diffusion)


class CountingGradient:
    """cond_fn whose gradient is x * 2 + label; counts calls and rows."""

    def __init__(self):
        self.rows = []

    def __call__(self, x, t, y=None):
        self.rows.append(len(x))
        return x * 2 + y.float().view(-1, 1)


def test_cond_fn_outside_the_interval_returns_none_and_is_not_called():
    grad = CountingGradient()
    gated = IntervalCondFn(grad, GuidanceInterval(10, 20, 100))
    x, y = th.randn(3, 2), th.tensor([0, 1, 2])
    assert gated(x, th.full((3,), 5), y=y) is None
    assert gated(x, th.full((3,), 21), y=y) is None
    assert th.equal(gated(x, th.full((3,), 15), y=y), x * 2 + y.float().view(-1, 1))
    assert (gated.computed, gated.skipped, grad.rows) == (1, 2, [3])


def test_cond_fn_on_a_mixed_batch_computes_only_the_inside_rows():
    grad = CountingGradient()
    gated = IntervalCondFn(grad, GuidanceInterval(10, 20, 100))
    x, y = th.randn(4, 2), th.tensor([0, 1, 2, 3])
    t = th.tensor([5, 12, 30, 20])
    out = gated(x, t, y=y)
    inside = th.tensor([False, True, False, True])
    assert grad.rows == [2]
    assert th.equal(out[inside], x[inside] * 2 + y[inside].float().view(-1, 1))
    assert th.equal(out[~inside], th.zeros(2, 2))


# ------------------------------------------------------------------------------------------
# Whole sampling loops: interval 0,T-1 is always-on, an interval between the grid's steps is off


def _toy_model(x, t, y):
    return 0.3 * x + 0.01 * t.float().view(-1, 1, 1, 1) + 0.1 * y.float().view(-1, 1, 1, 1)


def _run(diffusion, sampler, model_fn, cond_fn):
    from guided_diffusion.sampling.seeds import PerSampleNoise

    y = th.tensor([1, 3])
    shape = (2, 3, 4, 4)
    noise = PerSampleNoise(11, range(2))
    loop = diffusion.ddim_sample_loop if sampler == "ddim" else diffusion.p_sample_loop
    with th.no_grad():
        return loop(model_fn, shape, noise=noise.initial_noise(shape), noise_fn=noise.noise_fn,
                    model_kwargs={"y": y}, cond_fn=cond_fn)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_classifier_interval_full_range_is_always_on_and_empty_range_is_off(sampler):
    from guided_diffusion.sampling.guidance import make_cond_fn

    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="4")  # steps 0, 33, 66, 99
    clf = LinearClassifier(3 * 4 * 4, 5)
    always = _run(diffusion, sampler, _toy_model, make_cond_fn(clf, 2.0))
    assert clf.calls == 4
    full = IntervalCondFn(make_cond_fn(clf, 2.0), GuidanceInterval.for_diffusion("0,99", diffusion))
    assert th.equal(_run(diffusion, sampler, _toy_model, full), always)
    assert (full.computed, full.skipped) == (4, 0)

    unguided = _run(diffusion, sampler, _toy_model, None)
    clf.calls = 0
    empty = IntervalCondFn(make_cond_fn(clf, 2.0), GuidanceInterval.for_diffusion("34,65", diffusion))
    assert th.equal(_run(diffusion, sampler, _toy_model, empty), unguided)
    assert (empty.computed, empty.skipped, clf.calls) == (0, 4, 0)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_classifier_gradient_is_taken_exactly_at_the_steps_inside(sampler):
    from guided_diffusion.sampling.guidance import make_cond_fn

    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="10")
    clf = LinearClassifier(3 * 4 * 4, 5)
    interval = GuidanceInterval.for_diffusion("30,70", diffusion)
    gated = IntervalCondFn(make_cond_fn(clf, 2.0), interval)
    out = _run(diffusion, sampler, _toy_model, gated)
    inside = interval.count_steps(diffusion)
    assert 0 < inside < 10
    assert (gated.computed, gated.skipped, clf.calls) == (inside, 10 - inside, inside)
    assert not th.equal(out, _run(diffusion, sampler, _toy_model, None))


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_classifier_free_interval_full_range_is_always_on_and_empty_range_is_plain(sampler):
    from guided_diffusion.sampling.cfg import ClassifierFreeModel

    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="4")
    always = _run(diffusion, sampler, ClassifierFreeModel(_toy_model, 5, 3.0), None)
    full = ClassifierFreeModel(_toy_model, 5, 3.0, interval=GuidanceInterval.for_diffusion("0,99", diffusion))
    assert th.equal(_run(diffusion, sampler, full, None), always)
    assert full.calls == {"conditional": 0, "null": 0, "both": 4}
    empty = ClassifierFreeModel(_toy_model, 5, 3.0, interval=GuidanceInterval.for_diffusion("34,65", diffusion))
    assert th.equal(_run(diffusion, sampler, empty, None), _run(diffusion, sampler, _toy_model, None))
    assert empty.calls == {"conditional": 4, "null": 0, "both": 0}
