"""Noise-level grids of space_timesteps: 'logsnrN' (uniform in log-SNR) and 'karrasN' (uniform
in sigma^(1/7)); the original strings keep their meaning."""

import numpy as np
import pytest

from guided_diffusion.diffusion.respacing import NOISE_LEVEL_GRIDS
from guided_diffusion.gaussian_diffusion import get_named_beta_schedule
from guided_diffusion.respace import space_timesteps
from guided_diffusion.script_util import create_gaussian_diffusion


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
    diffusion = create_gaussian_diffusion(steps=1000, timestep_respacing="logsnr20")
    betas = get_named_beta_schedule("linear", 1000)
    assert diffusion.num_timesteps == 20
    assert diffusion.timestep_map == sorted(space_timesteps(1000, "logsnr20", betas=betas))
