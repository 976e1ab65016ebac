"""The sampling entry point: per-sample results, labels, respacing, super-resolution, progress."""

import numpy as np
import pytest
import torch as th

from guided_diffusion.data.pixels import to_uint8_nhwc
from guided_diffusion.sampling.generate import generate_samples, known_classes, respace, shard_batches
from guided_diffusion.sampling.labels import labels_for_indices
from guided_diffusion.sampling.samplers import run_sampler
from guided_diffusion.sampling.seeds import PerSampleNoise
from guided_diffusion.script_util import create_gaussian_diffusion
from sample_helpers import build_classifier, build_model, build_sr, one_thread

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


def _perturbed(module, seed, std=0.02):
    g = th.Generator().manual_seed(seed)
    with th.no_grad():
        for p in module.parameters():
            p.add_(std * th.randn(p.shape, generator=g))
    return module.eval()


@pytest.fixture(scope="module")
def uncond():
    model, diffusion = build_model()
    return _perturbed(model, 0), diffusion


@pytest.fixture(scope="module")
def cond():
    model, diffusion = build_model(class_cond=True)
    return _perturbed(model, 1, 0.05), diffusion


class _Counting(th.nn.Module):
    """Forwards to a model and counts the calls (keeps its attributes visible)."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.calls = model, 0
        self.image_size, self.num_classes = model.image_size, model.num_classes

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpm++2m", "dpm++3m", "dpm++2m-sde"])
def test_a_sample_depends_only_on_its_index_not_on_batches(uncond, sampler):
    model, diffusion = uncond
    whole, labels = generate_samples(model, diffusion, num_samples=4, batch_size=3, seed=5, sampler=sampler,
                                     progress=False)
    part, _ = generate_samples(model, diffusion, indices=[3, 1], batch_size=1, seed=5, sampler=sampler,
                               progress=False)
    assert labels is None and whole.dtype == np.uint8 and whole.shape == (4, 8, 8, 3)
    assert np.abs(whole[[3, 1]].astype(int) - part.astype(int)).max() <= 1
    assert len({whole[i].tobytes() for i in range(4)}) == 4


def test_equals_one_run_of_the_sampler_on_the_same_noise(uncond):
    model, diffusion = uncond
    images, _ = generate_samples(model, diffusion, num_samples=2, batch_size=2, seed=3, progress=False)
    with th.no_grad():
        x = run_sampler(diffusion, "ancestral", model, (2, 3, 8, 8), PerSampleNoise(3, range(2)))
    assert np.array_equal(images, to_uint8_nhwc(x))


def test_labels_reach_the_model_and_come_back(cond):
    model, diffusion = cond
    images, labels = generate_samples(model, diffusion, num_samples=5, batch_size=2, labels="balanced",
                                      num_classes=3, progress=False)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2, 0, 1]
    _, random = generate_samples(model, diffusion, num_samples=5, batch_size=5, seed=2, progress=False)
    assert random.tolist() == labels_for_indices(None, 2, range(5), 1000).tolist()
    other, _ = generate_samples(model, diffusion, num_samples=5, batch_size=2, labels=[1, 2, 0], num_classes=3,
                                progress=False)
    assert np.abs(other.astype(int) - images.astype(int)).max() > 1  # the labels change the images


def test_bad_labels_and_classes_are_refused(uncond, cond):
    with pytest.raises(ValueError, match=r"must lie in \[0, 10\)"):
        generate_samples(*cond, num_samples=2, labels=[3, 10], num_classes=10, progress=False)
    with pytest.raises(ValueError, match=r"outside \[0, 1000\)"):
        generate_samples(*cond, num_samples=2, labels="1,1000", progress=False)
    with pytest.raises(ValueError, match=r"num_classes must be in \[1, 1000\]"):
        generate_samples(*cond, num_samples=2, num_classes=1001, progress=False)
    with pytest.raises(ValueError, match="class-conditional model or a classifier"):
        generate_samples(*uncond, num_samples=2, labels=[1], progress=False)
    with pytest.raises(ValueError, match="exactly one of num_samples and indices"):
        generate_samples(*uncond, progress=False)


def test_classifier_bounds_the_labels_and_scale_zero_is_unguided(uncond):
    model, diffusion = uncond
    classifier = _perturbed(build_classifier(), 2, 0.05)
    assert known_classes(model, classifier) == 1000 and known_classes(model) is None
    plain, _ = generate_samples(model, diffusion, num_samples=3, batch_size=3, seed=1, progress=False)
    guided, labels = generate_samples(model, diffusion, num_samples=3, batch_size=3, seed=1, classifier=classifier,
                                      classifier_scale=0.0, num_classes=4, progress=False)
    assert np.array_equal(plain, guided) and labels.tolist() == labels_for_indices(None, 1, range(3), 4).tolist()
    steered, _ = generate_samples(model, diffusion, num_samples=3, batch_size=3, seed=1, classifier=classifier,
                                  classifier_scale=10.0, num_classes=4, progress=False)
    assert not np.array_equal(plain, steered)


def test_steps_respace_an_all_steps_diffusion_to_that_many_model_calls(uncond):
    model, _ = uncond
    full = create_gaussian_diffusion(steps=100)
    spaced = create_gaussian_diffusion(steps=100, timestep_respacing="4")
    respaced = respace(full, 4)
    assert respaced.timestep_map == spaced.timestep_map
    assert np.allclose(respaced.alphas_cumprod, spaced.alphas_cumprod, rtol=1e-12, atol=0)
    counting = _Counting(model)
    via_steps, _ = generate_samples(counting, full, num_samples=2, batch_size=2, steps=4, progress=False)
    assert counting.calls == 4
    direct, _ = generate_samples(model, spaced, num_samples=2, batch_size=2, progress=False)
    assert np.abs(via_steps.astype(int) - direct.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="timestep_respacing=''"):
        respace(spaced, 2)
    counting.calls = 0
    generate_samples(counting, full, num_samples=2, batch_size=2, steps="logsnr5", sampler="dpm++2m", progress=False)
    assert counting.calls == 5  # one model call per step for the solver too


def test_the_sde_solver_draws_its_step_noise_from_the_seed(uncond):
    model, diffusion = uncond
    runs = [generate_samples(model, diffusion, num_samples=2, batch_size=2, seed=s, sampler="dpm++2m-sde",
                             progress=False)[0] for s in (7, 7, 8)]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


def test_super_resolution_upsamples_low_res_i_mod_m():
    model, diffusion = build_sr()
    model = _perturbed(model, 3, 0.05)
    low = np.random.RandomState(0).randint(0, 256, size=(2, 8, 8, 3)).astype(np.uint8)
    images, labels = generate_samples(model, diffusion, num_samples=3, batch_size=3, seed=4, low_res=low,
                                      sampler="ddim", progress=False)
    assert images.shape == (3, 32, 32, 3) and labels is None
    again, _ = generate_samples(model, diffusion, indices=[2], batch_size=1, seed=4, low_res=low[[0, 0]],
                                sampler="ddim", progress=False)
    assert np.abs(again[0].astype(int) - images[2].astype(int)).max() <= 1  # sample 2 upsamples low[0]
    with pytest.raises(ValueError, match="low_res"):
        generate_samples(model, diffusion, num_samples=1, progress=False)


def test_shard_batches_and_the_progress_bar(uncond, cond, capsys):
    make_batch = shard_batches(*uncond, sampler="ddim")
    assert sorted(make_batch(np.arange(2, 4), 0)) == ["arr_0"]
    arrays = shard_batches(*cond, labels="balanced")(np.arange(2, 4), 0)
    assert arrays["arr_1"].tolist() == [2, 3]
    capsys.readouterr()
    generate_samples(*uncond, num_samples=3, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "sampling (ancestral)" in err


def test_readme_notebook_example_runs_as_written(tmp_path, monkeypatch):
    """The README's "From Python" block, run with tiny flags and checkpoints under its file names."""
    import os
    import re

    from sample_helpers import CLASSIFIER_FLAGS, MODEL_FLAGS, REPO
    from guided_diffusion.script_util import classifier_defaults, model_and_diffusion_defaults

    with open(os.path.join(REPO, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("### From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    model_flags = dict(model_and_diffusion_defaults(), **dict(MODEL_FLAGS, timestep_respacing=""))
    classifier_flags = dict(classifier_defaults(), image_size=MODEL_FLAGS["image_size"], **CLASSIFIER_FLAGS)
    monkeypatch.chdir(tmp_path)
    th.save(build_model(timestep_respacing="")[0].state_dict(), "64x64_diffusion.pt")
    th.save(build_classifier().state_dict(), "64x64_classifier.pt")
    scope = {"model_flags": model_flags, "classifier_flags": classifier_flags}
    exec(code, scope)
    assert scope["images"].shape == (16, 8, 8, 3) and scope["images"].dtype == np.uint8
    assert scope["labels"].tolist() == list(range(16))  # "balanced" over the classifier's 1000 classes
