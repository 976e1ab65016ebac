"""Samplers: flag resolution, dispatch, per-sample noise, DDIM determinism, guidance through each."""

import re

import pytest
import torch as th

from guided_diffusion.data.pixels import to_uint8_nhwc
from guided_diffusion.sampling.samplers import SAMPLERS, resolve_sampler, run_sampler
from guided_diffusion.sampling.guidance import classifier_log_probs, make_cond_fn, make_model_fn
from guided_diffusion.sampling.seeds import PerSampleNoise
from sample_helpers import build_classifier, build_model, one_thread

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


class _FixedStart(PerSampleNoise):
    """Same x_T as another seed's, but its own per-step noise."""

    def __init__(self, start_seed, step_seed, indices):
        super().__init__(step_seed, indices)
        self._start = PerSampleNoise(start_seed, indices)

    def initial_noise(self, shape, device=None):
        return self._start.initial_noise(shape, device)


@pytest.fixture(scope="module")
def tiny():
    th.manual_seed(0)
    model, diffusion = build_model()
    g = th.Generator().manual_seed(0)
    with th.no_grad():
        for p in model.parameters():
            p.add_(0.02 * th.randn(p.shape, generator=g))
    return model.eval(), diffusion


def test_ddim_eta_zero_is_deterministic_given_x_T(tiny):
    model, diffusion = tiny
    shape = (3, 3, 8, 8)
    outs = {}
    for eta in (0.0, 1.0):
        for step_seed in (5, 6):
            with th.no_grad():
                outs[eta, step_seed] = run_sampler(diffusion, "ddim", model, shape, _FixedStart(1, step_seed, range(3)),
                                                   eta=eta)
    assert th.equal(outs[0.0, 5], outs[0.0, 6])
    assert not th.allclose(outs[1.0, 5], outs[1.0, 6])


def test_ancestral_sample_depends_only_on_own_index(tiny):
    model, diffusion = tiny
    with th.no_grad():
        whole = run_sampler(diffusion, "ancestral", model, (4, 3, 8, 8), PerSampleNoise(2, range(4)))
        part = run_sampler(diffusion, "ancestral", model, (2, 3, 8, 8), PerSampleNoise(2, [1, 3]))
    assert th.allclose(whole[[1, 3]], part, atol=1e-5)
    assert not th.allclose(whole[0], whole[1])


def test_zero_scale_guidance_equals_unguided_through_condition_mean(tiny):
    model, diffusion = tiny
    clf = build_classifier().eval()
    y = th.tensor([0, 1, 2])
    with th.no_grad():
        plain = run_sampler(diffusion, "ancestral", model, (3, 3, 8, 8), PerSampleNoise(4, range(3)))
        guided = run_sampler(diffusion, "ancestral", make_model_fn(model, False), (3, 3, 8, 8), PerSampleNoise(4, range(3)),
                          cond_fn=make_cond_fn(clf, 0.0), model_kwargs={"y": y})
    assert th.equal(plain, guided)


def test_ddim_guidance_raises_requested_log_prob(tiny):
    model, diffusion = tiny
    clf = build_classifier()
    g = th.Generator().manual_seed(2)
    with th.no_grad():
        for p in clf.parameters():
            p.add_(0.05 * th.randn(p.shape, generator=g))
    clf.eval()
    y = th.arange(8) % 4
    lps = []
    for scale in (0.0, 10.0):
        cond_fn = make_cond_fn(clf, scale) if scale else None
        with th.no_grad():
            x = run_sampler(diffusion, "ddim", make_model_fn(model, False), (8, 3, 8, 8), PerSampleNoise(3, range(8)),
                            cond_fn=cond_fn, model_kwargs={"y": y})
            x = th.from_numpy(to_uint8_nhwc(x)).float().permute(0, 3, 1, 2) / 127.5 - 1
            lps.append(classifier_log_probs(clf, x, th.zeros(8, dtype=th.long), y).mean().item())
    assert lps[1] > lps[0]


@pytest.mark.parametrize("use_ddim", [False, True])
def test_classifier_sees_original_timesteps_under_respacing(tiny, use_ddim):
    model, diffusion = tiny  # 100 steps respaced to 4
    seen = []

    def cond_fn(x, t, y=None):
        seen.append(t.tolist())
        return th.zeros_like(x)

    with th.no_grad():
        run_sampler(diffusion, "ddim" if use_ddim else "ancestral", make_model_fn(model, False), (2, 3, 8, 8),
                    PerSampleNoise(0, range(2)), cond_fn=cond_fn, model_kwargs={"y": th.tensor([0, 1])})
    assert seen == [[t, t] for t in sorted(diffusion.timestep_map, reverse=True)]
    assert sorted(diffusion.timestep_map) == [0, 33, 66, 99]


def test_eta_needs_ddim():
    assert resolve_sampler("auto", use_ddim=False, eta=0.0) == "ancestral"
    assert resolve_sampler("auto", use_ddim=True, eta=0.5) == "ddim"
    with pytest.raises(ValueError, match="--use_ddim True"):
        resolve_sampler("auto", use_ddim=False, eta=0.5)


@pytest.mark.parametrize("sampler,use_ddim,eta,expected", [
    ("euler", False, 0.0, "auto, ancestral, ddim, dpm++2m, dpm++3m, dpm++2m-sde"),
    ("dpm++2m", True, 0.0, "--use_ddim True asks for DDIM but --sampler is dpm++2m"),
    ("dpm++2m", False, 0.5, "deterministic solver"),
    ("dpm++3m", False, 0.5, "deterministic solver"),
    ("dpm++2m-sde", False, 0.5, "only --sampler ddim takes --eta"),
    ("ddim", False, -0.1, "--eta must be >= 0"),
])
def test_bad_sampler_flags_name_the_problem(sampler, use_ddim, eta, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        resolve_sampler(sampler, use_ddim=use_ddim, eta=eta)


def test_every_sampler_resolves_to_itself():
    for name in SAMPLERS:
        assert resolve_sampler(name) == name
    assert resolve_sampler("ddim", eta=1.0) == "ddim"


class _RecordingDiffusion:
    """Stands in for GaussianDiffusion: records which loop was called with what."""

    def __init__(self):
        self.calls = []

    def _loop(self, name):
        def loop(model, shape, **kwargs):
            self.calls.append((name, kwargs))
            yield {"sample": th.zeros(shape)}

        return loop

    def __getattr__(self, name):
        if name.endswith("_sample_loop_progressive"):
            return self._loop(name)
        raise AttributeError(name)


@pytest.mark.parametrize("sampler,loop,extra,per_step_noise", [
    ("ancestral", "p_sample_loop_progressive", {}, True),
    ("ddim", "ddim_sample_loop_progressive", {"eta": 0.0}, True),
    ("dpm++2m", "dpm_solver_sample_loop_progressive", {"order": 2, "sde": False}, False),
    ("dpm++3m", "dpm_solver_sample_loop_progressive", {"order": 3, "sde": False}, False),
    ("dpm++2m-sde", "dpm_solver_sample_loop_progressive", {"order": 2, "sde": True}, True),
])
def test_dispatch_by_name_with_per_sample_noise(sampler, loop, extra, per_step_noise):
    diffusion = _RecordingDiffusion()
    noise = PerSampleNoise(0, range(2))
    run_sampler(diffusion, sampler, None, (2, 3, 4, 4), noise)
    [(name, kwargs)] = diffusion.calls
    assert name == loop
    assert {k: kwargs[k] for k in extra} == extra
    x_t = PerSampleNoise(0, range(2)).initial_noise((2, 3, 4, 4))
    assert th.equal(kwargs["noise"], x_t)  # x_T from the per-sample streams
    assert ("noise_fn" in kwargs) == per_step_noise
    if per_step_noise:
        assert kwargs["noise_fn"] == noise.noise_fn
