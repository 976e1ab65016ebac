"""Seeded generation of one batch: per-sample noise, DDIM determinism, guidance through both samplers."""

import pytest
import torch as th

from guided_diffusion.data.pixels import to_uint8_nhwc
from guided_diffusion.sampling.generate import check_eta, generate
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
                outs[eta, step_seed] = generate(diffusion, model, shape, _FixedStart(1, step_seed, range(3)),
                                                use_ddim=True, eta=eta)
    assert th.equal(outs[0.0, 5], outs[0.0, 6])
    assert not th.allclose(outs[1.0, 5], outs[1.0, 6])


def test_ancestral_sample_depends_only_on_own_index(tiny):
    model, diffusion = tiny
    with th.no_grad():
        whole = generate(diffusion, model, (4, 3, 8, 8), PerSampleNoise(2, range(4)))
        part = generate(diffusion, model, (2, 3, 8, 8), PerSampleNoise(2, [1, 3]))
    assert th.allclose(whole[[1, 3]], part, atol=1e-5)
    assert not th.allclose(whole[0], whole[1])


def test_zero_scale_guidance_equals_unguided_through_condition_mean(tiny):
    model, diffusion = tiny
    clf = build_classifier().eval()
    y = th.tensor([0, 1, 2])
    with th.no_grad():
        plain = generate(diffusion, model, (3, 3, 8, 8), PerSampleNoise(4, range(3)))
        guided = generate(diffusion, make_model_fn(model, False), (3, 3, 8, 8), PerSampleNoise(4, range(3)),
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
            x = generate(diffusion, make_model_fn(model, False), (8, 3, 8, 8), PerSampleNoise(3, range(8)),
                         use_ddim=True, cond_fn=cond_fn, model_kwargs={"y": y})
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
        generate(diffusion, make_model_fn(model, False), (2, 3, 8, 8), PerSampleNoise(0, range(2)),
                 use_ddim=use_ddim, cond_fn=cond_fn, model_kwargs={"y": th.tensor([0, 1])})
    assert seen == [[t, t] for t in sorted(diffusion.timestep_map, reverse=True)]
    assert sorted(diffusion.timestep_map) == [0, 33, 66, 99]


def test_eta_needs_ddim():
    check_eta(0.0, False)
    check_eta(0.5, True)
    with pytest.raises(ValueError, match="--use_ddim True"):
        check_eta(0.5, False)
