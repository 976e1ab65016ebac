"""space_timesteps (section counts, ddimN, and the noise-level grids logsnrN, uniform in
log-SNR, and karrasN, uniform in sigma^(1/7)) and SpacedDiffusion."""

from fractions import Fraction

import numpy as np
import pytest
import torch as th

from guided_diffusion.config import factory
from guided_diffusion.diffusion.gaussian import GaussianDiffusion
from guided_diffusion.diffusion.respacing import NOISE_LEVEL_GRIDS, space_timesteps, SpacedDiffusion
from guided_diffusion.diffusion.schedule import get_named_beta_schedule
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType


SHAPE = (2, 3, 4, 4)


def kwargs(T=30, var=ModelVarType.LEARNED_RANGE, loss=LossType.MSE, rescale=False):
    return dict(betas=get_named_beta_schedule("linear", T), model_mean_type=ModelMeanType.EPSILON,
                model_var_type=var, loss_type=loss, rescale_timesteps=rescale)


class Model(th.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = th.nn.Parameter(th.tensor(0.4))

    def forward(self, x, t, **kw):
        tt = t.float().view(-1, 1, 1, 1) / 1000
        return th.cat([self.w * x + tt, th.tanh(x) * (1 - tt)], 1)


def test_25_over_1000_rounds_half_to_even():
    steps = sorted(space_timesteps(1000, "25"))
    # Stride 999 / 24 = 41.625 (exact in binary); the fifth step is round(166.5) = 166.
    assert len(steps) == 25 and steps[0] == 0 and steps[-1] == 999
    assert steps[4] == 166
    assert steps == [round(Fraction(999 * k, 24)) for k in range(25)]


def test_sections_10_15_20_over_300():
    steps = sorted(space_timesteps(300, "10,15,20"))
    assert len(steps) == 45
    first = [s for s in steps if s < 100]
    second = [s - 100 for s in steps if 100 <= s < 200]
    third = [s - 200 for s in steps if s >= 200]
    # Section 1: stride 99 / 9 = 11 exactly.
    assert first == list(range(0, 100, 11))
    # Section 3: stride 99 / 19; k * 99 / 19 is never within 1/38 of a half, so rounding is clear.
    assert third == [round(Fraction(99 * k, 19)) for k in range(20)]
    # Section 2: stride 99 / 14; k = 7 hits 49.5 exactly on paper, but the stride is accumulated
    # in floats (as in the reference) and 7 float additions of 99/14 land just below 49.5.
    acc = 0.0
    for _ in range(7):
        acc += 99 / 14
    assert acc < 49.5
    expected = [round(Fraction(99 * k, 14)) for k in range(15)]
    expected[7] = 49
    assert second == expected
    assert space_timesteps(300, [10, 15, 20]) == set(steps)


def test_uneven_sections_give_extra_step_to_first():
    # 10 steps in 3 sections: sizes 4, 3, 3; taking all of each recovers every step.
    assert space_timesteps(10, "4,3,3") == set(range(10))
    assert space_timesteps(10, "1,1,1") == {0, 4, 7}


def test_ddim25_over_1000_is_stride_40():
    # Stride 39 gives ceil(1000 / 39) = 26 steps, stride 40 exactly 25.
    assert space_timesteps(1000, "ddim25") == set(range(0, 1000, 40))
    assert space_timesteps(100, "ddim100") == set(range(100))


@pytest.mark.parametrize("T, spec, needles", [
    (1000, "ddim999", ["999", "1000"]),
    (100, "101", ["101", "100"]),
    (300, "10,200", ["200", "150"]),
    (100, "abc", ["abc"]),
    (100, "ddimx", ["ddimx"]),
    (100, [-1], ["-1"]),
])
def test_impossible_respacing_raises_value_error(T, spec, needles):
    with pytest.raises(ValueError) as err:
        space_timesteps(T, spec)
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("rescale", [False, True])
def test_spaced_all_steps_equals_base(rescale):
    base = GaussianDiffusion(**kwargs(rescale=rescale))
    spaced = SpacedDiffusion(range(30), **kwargs(rescale=rescale))
    assert spaced.timestep_map == list(range(30)) and spaced.original_num_steps == 30
    assert np.allclose(spaced.betas, base.betas, rtol=1e-10)
    model = Model()
    x = th.randn(SHAPE)
    t = th.tensor([0, 17])
    a, b = base.p_mean_variance(model, x, t), spaced.p_mean_variance(model, x, t)
    for key in a:
        assert th.allclose(a[key], b[key], atol=1e-6, rtol=1e-5), key
    for loop in ("p_sample_loop", "ddim_sample_loop"):
        th.manual_seed(0)
        sa = getattr(base, loop)(model, SHAPE)
        th.manual_seed(0)
        sb = getattr(spaced, loop)(model, SHAPE)
        assert th.allclose(sa, sb, atol=1e-5), loop
    noise = th.randn(SHAPE)
    la, lb = base.training_losses(model, x, t, noise=noise), spaced.training_losses(model, x, t, noise=noise)
    assert set(la) == set(lb) == {"loss", "mse", "vb"}
    assert th.allclose(la["loss"], lb["loss"], rtol=1e-5)
    th.manual_seed(1)
    ba = base.calc_bpd_loop(model, x.clamp(-1, 1))
    th.manual_seed(1)
    bb = spaced.calc_bpd_loop(model, x.clamp(-1, 1))
    assert th.allclose(ba["total_bpd"], bb["total_bpd"], rtol=1e-5)


def test_spaced_keeps_alphas_cumprod_of_kept_steps():
    use = space_timesteps(1000, "ddim25")
    base = GaussianDiffusion(**kwargs(T=1000))
    spaced = SpacedDiffusion(use, **kwargs(T=1000))
    assert spaced.num_timesteps == 25 and spaced.timestep_map == sorted(use)
    assert np.allclose(spaced.alphas_cumprod, base.alphas_cumprod[sorted(use)], rtol=1e-12)


@pytest.mark.parametrize("rescale", [False, True])
def test_model_and_cond_fn_see_original_timesteps(rescale):
    spaced = SpacedDiffusion(space_timesteps(300, "10"), **kwargs(T=300, rescale=rescale))
    seen = []

    def model(x, t, **kw):
        seen.append(("model", t))
        return th.cat([th.zeros_like(x), th.zeros_like(x)], 1)

    def cond_fn(x, t, **kw):
        seen.append(("cond", t))
        return th.zeros_like(x)

    x = th.randn(SHAPE)
    t = th.tensor([1, 9])
    spaced.p_sample(model, x, t, cond_fn=cond_fn)
    spaced.ddim_sample(model, x, t, cond_fn=cond_fn)
    original = th.tensor([spaced.timestep_map[1], spaced.timestep_map[9]])
    assert original.tolist() == [33, 299]
    expected = original.float() * (1000 / 300) if rescale else original
    assert [kind for kind, _ in seen] == ["model", "cond", "model", "cond"]
    for _, ts in seen:
        assert ts.dtype == expected.dtype and th.allclose(ts.float(), expected.float())
    assert th.equal(spaced._scale_timesteps(t), t)


def test_spaced_rejects_empty_or_out_of_range_steps():
    with pytest.raises(ValueError, match="empty"):
        SpacedDiffusion([], **kwargs())
    with pytest.raises(ValueError, match="30"):
        SpacedDiffusion([0, 30], **kwargs())


# ---------------------------------------------------------------- noise-level grids


def coordinate(betas, name):
    """The grid coordinate u(t) of every timestep, float64 [T], increasing."""
    return NOISE_LEVEL_GRIDS[name](np.cumprod(1.0 - betas))


@pytest.mark.parametrize("name", ["logsnr", "karras"])
@pytest.mark.parametrize("schedule,T", [("linear", 1000), ("cosine", 1000), ("cosine", 50)])
def test_exactly_n_distinct_training_timesteps_spanning_the_process(name, schedule, T):
    betas = get_named_beta_schedule(schedule, T)
    for n in sorted({2, 3, 10, 20, 25, 50, T // 4, T // 2, T - 1, T}):
        steps = space_timesteps(T, f"{name}{n}", betas=betas)
        assert len(steps) == n
        assert all(isinstance(s, int) and 0 <= s < T for s in steps)
        assert {0, T - 1} <= steps
    assert space_timesteps(T, f"{name}{T}", betas=betas) == set(range(T))


@pytest.mark.parametrize("name", ["logsnr", "karras"])
def test_each_step_is_the_timestep_nearest_its_uniform_target(name):
    # Linear schedule, small counts: no timestep's u-increment exceeds the spacing and no two
    # targets share a nearest timestep, so the grid is plainly the nearest one.
    betas = get_named_beta_schedule("linear", 1000)
    u = coordinate(betas, name)
    for n in (5, 10, 20):
        steps = sorted(space_timesteps(1000, f"{name}{n}", betas=betas))
        targets = np.linspace(u[0], u[-1], n)
        nearest = [int(np.argmin(np.abs(u - target))) for target in targets]
        assert len(set(nearest)) == n and steps == nearest


@pytest.mark.parametrize("name", ["logsnr", "karras"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_steps_are_evenly_spaced_in_the_noise_level(name, schedule):
    # Every gap spanning several timesteps has the same size in u up to rounding, also for the
    # cosine schedule whose clipped last beta makes one timestep jump far in u (that jump is one
    # step of the grid; it does not pull the other steps toward it).
    betas = get_named_beta_schedule(schedule, 1000)
    u = coordinate(betas, name)
    for n in (5, 10, 20):
        steps = sorted(space_timesteps(1000, f"{name}{n}", betas=betas))
        gaps, several = np.diff(u[steps]), np.diff(steps) > 1
        assert gaps[several].max() <= 1.3 * gaps[several].min()
        assert (gaps[~several] >= gaps[several].min() * 0.5).all()


@pytest.mark.parametrize("spec", ["250", "10,15,20", "ddim25", "25", "1,1,1"])
def test_original_strings_ignore_betas(spec):
    betas = get_named_beta_schedule("linear", 1000)
    assert space_timesteps(1000, spec, betas=betas) == space_timesteps(1000, spec)


@pytest.mark.parametrize(
    "spec,betas,needle",
    [
        ("logsnr20", None, "pass betas="),
        ("karras20", get_named_beta_schedule("linear", 500), "pass betas="),
        ("logsnr1", get_named_beta_schedule("linear", 1000), "needs 2 to 1000 steps"),
        ("karras1001", get_named_beta_schedule("linear", 1000), "needs 2 to 1000 steps"),
        ("logsnr", get_named_beta_schedule("linear", 1000), "e.g. 'logsnr25'"),
        ("karrasx", get_named_beta_schedule("linear", 1000), "e.g. 'karras25'"),
    ],
)
def test_bad_noise_level_grids_raise_naming_the_problem(spec, betas, needle):
    with pytest.raises(ValueError) as err:
        space_timesteps(1000, spec, betas=betas)
    assert needle in str(err.value)


def test_factory_builds_noise_level_grids():
    diffusion = factory.create_gaussian_diffusion(steps=1000, timestep_respacing="logsnr20")
    betas = get_named_beta_schedule("linear", 1000)
    assert diffusion.num_timesteps == 20
    assert diffusion.timestep_map == sorted(space_timesteps(1000, "logsnr20", betas=betas))
