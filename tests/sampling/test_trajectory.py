"""Denoising trajectories: the frame rule, and frames that observe a loop without changing it."""

import numpy as np
import pytest
import torch as th

from guided_diffusion.gaussian_diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    get_named_beta_schedule,
)
from guided_diffusion.respace import SpacedDiffusion, space_timesteps
from guided_diffusion.sampling.trajectory import (
    TrajectoryRecorder,
    check_num_frames,
    frame_captions,
    frame_timesteps,
    save_strips,
)

SHAPE = (3, 3, 4, 4)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    from sample_helpers import one_thread

    yield from one_thread()


class LinearEps(th.nn.Module):
    """A deterministic eps-model with a parameter (so it has a device)."""

    def __init__(self):
        super().__init__()
        self.w = th.nn.Parameter(th.tensor(0.3))

    def forward(self, x, t, **kwargs):
        return self.w * x + t.float().view(-1, 1, 1, 1) / 1000


def spaced(steps, total=100):
    return SpacedDiffusion(space_timesteps(total, str(steps)), betas=get_named_beta_schedule("cosine", total),
                           model_mean_type=ModelMeanType.EPSILON, model_var_type=ModelVarType.FIXED_LARGE,
                           loss_type=LossType.MSE)


# ---------------------------------------------------------------- the frame rule


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 50, 100, 250, 1000])
def test_frame_timesteps_strictly_decrease_from_the_first_step_to_zero(steps):
    for k in sorted({1, min(steps, 2), min(steps, 3), min(steps, 8), min(steps, 10), steps // 2 or 1, steps}):
        ts = frame_timesteps(steps, k)
        assert len(ts) == k and ts[-1] == 0
        assert all(a > b for a, b in zip(ts, ts[1:]))
        assert all(0 <= t < steps for t in ts)
        if k > 1:
            assert ts[0] == steps - 1


def test_frame_timesteps_follow_the_quadratic_rule_and_are_denser_near_the_end():
    ts = frame_timesteps(1000, 10)
    expected = [int(np.floor(999 * (1 - k / 9) ** 2 + 0.5)) for k in range(10)]
    assert ts == expected
    gaps = -np.diff(ts)
    assert all(a >= b for a, b in zip(gaps, gaps[1:]))  # gaps shrink towards t = 0
    assert gaps[0] > 10 * gaps[-1]


def test_every_step_when_frames_equal_steps():
    assert frame_timesteps(7, 7) == [6, 5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize("bad, match", [(11, "larger than the 10 steps"), (-1, "must be >= 0")])
def test_bad_frame_counts_name_the_flag(bad, match):
    with pytest.raises(ValueError, match="--save_trajectory") as err:
        check_num_frames(bad, 10)
    assert match in str(err.value)
    assert check_num_frames(0, 10) == 0 and check_num_frames(10, 10) == 10


def test_captions_show_the_original_timesteps_of_a_respaced_process():
    d = spaced(10)
    ts = frame_timesteps(10, 3)
    assert frame_captions(ts) == [f"t={t}" for t in ts]
    assert frame_captions(ts, d.timestep_map) == [f"t={d.timestep_map[t]}" for t in ts]
    assert frame_captions([9, 0], d.timestep_map) == ["t=99", "t=0"]


# ---------------------------------------------------------------- recording


def _loops(d, model):
    """name -> callable(noise, noise_fn) -> progressive loop."""
    return {
        "ancestral": lambda noise, fn: d.p_sample_loop_progressive(model, SHAPE, noise=noise, noise_fn=fn),
        "ddim": lambda noise, fn: d.ddim_sample_loop_progressive(model, SHAPE, noise=noise, noise_fn=fn),
        "ddim_eta1": lambda noise, fn: d.ddim_sample_loop_progressive(model, SHAPE, noise=noise, noise_fn=fn,
                                                                      eta=1.0),
        "dpm++3m": lambda noise, fn: d.dpm_solver_sample_loop_progressive(model, SHAPE, noise=noise, order=3),
        "dpm++2m-sde": lambda noise, fn: d.dpm_solver_sample_loop_progressive(model, SHAPE, noise=noise, order=2,
                                                                              sde=True, noise_fn=fn),
    }


def _seeded(seed):
    g = th.Generator().manual_seed(seed)
    return lambda x: th.randn(x.shape, generator=g)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "ddim_eta1", "dpm++3m", "dpm++2m-sde"])
def test_recording_does_not_change_the_samples_and_ends_at_the_final_sample(sampler):
    d, model = spaced(12), LinearEps()
    noise = th.randn(SHAPE, generator=th.Generator().manual_seed(0))
    plain = list(_loops(d, model)[sampler](noise, _seeded(1)))
    rec = TrajectoryRecorder(d.num_timesteps, 5, rows=2)
    watched = list(rec.watch(_loops(d, model)[sampler](noise, _seeded(1))))
    assert len(watched) == len(plain) == 12
    for a, b in zip(plain, watched):
        assert th.equal(a["sample"], b["sample"]) and th.equal(a["pred_xstart"], b["pred_xstart"])
    x_t, x0 = rec.frames()
    assert x_t.shape == x0.shape == (2, 5) + SHAPE[1:]
    assert th.equal(x_t[:, -1], plain[-1]["sample"][:2])
    for k, t in enumerate(rec.timesteps):
        step = plain[d.num_timesteps - 1 - t]
        assert th.equal(x_t[:, k], step["sample"][:2]) and th.equal(x0[:, k], step["pred_xstart"][:2])


def test_frames_of_an_unfinished_loop_are_refused():
    d, model = spaced(6), LinearEps()
    rec = TrajectoryRecorder(d.num_timesteps, 3)
    for i, _ in enumerate(rec.watch(d.p_sample_loop_progressive(model, SHAPE))):
        if i == 2:
            break
    with pytest.raises(RuntimeError, match="ran 3 steps, expected 6"):
        rec.frames()
    with pytest.raises(RuntimeError, match="no sampling loop"):
        TrajectoryRecorder(6, 3).frames()


def test_rows_are_kept_across_batches_up_to_the_limit():
    d, model = spaced(6), LinearEps()
    noise = th.randn(SHAPE, generator=th.Generator().manual_seed(2))
    rec = TrajectoryRecorder(d.num_timesteps, 3, rows=5)
    finals = []
    for _ in range(3):  # 3 batches of 3 rows; only the first 5 rows are kept
        finals.append(list(rec.watch(d.ddim_sample_loop_progressive(model, SHAPE, noise=noise)))[-1]["sample"])
    x_t, x0 = rec.frames()
    assert x_t.shape == x0.shape == (5, 3) + SHAPE[1:]
    assert th.equal(x_t[:, -1], th.cat(finals)[:5])


def test_strips_hold_the_frames_row_major_with_model_timesteps(tmp_path):
    from PIL import Image

    d, model = spaced(8), LinearEps()
    rec = TrajectoryRecorder(d.num_timesteps, 4, rows=2)
    final = list(rec.watch(d.ddim_sample_loop_progressive(model, SHAPE, noise=th.randn(SHAPE))))[-1]["sample"]
    pngs = save_strips(str(tmp_path / "s"), rec, d.timestep_map)
    with np.load(tmp_path / "s_trajectory.npz") as f:
        assert f["x_t"].shape == f["pred_x0"].shape == (2, 4, 4, 4, 3) and f["x_t"].dtype == np.uint8
        assert f["timesteps"].tolist() == rec.timesteps
        assert f["model_timesteps"].tolist() == [d.timestep_map[t] for t in rec.timesteps]
        last = ((final[:2] + 1) * 127.5).clamp(0, 255).to(th.uint8).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(f["x_t"][:, -1], last)
    for path in pngs:
        with Image.open(path) as im:
            assert im.text["labels"].split(",")[:4] == [f"t={d.timestep_map[t]}" for t in rec.timesteps]


# ---------------------------------------------------------------- through generate_samples


@pytest.fixture(scope="module")
def tiny():
    from sample_helpers import build_model

    model, diffusion = build_model()  # 4 respaced steps
    g = th.Generator().manual_seed(0)
    with th.no_grad():
        for p in model.parameters():
            p.add_(0.02 * th.randn(p.shape, generator=g))
    return model.eval(), diffusion


@pytest.mark.parametrize("sampler", ["ancestral", "ddim", "dpm++2m", "dpm++3m", "dpm++2m-sde"])
def test_generate_samples_with_a_trajectory_gives_the_same_samples(tiny, tmp_path, sampler):
    from guided_diffusion.sampling.generate import generate_samples

    model, diffusion = tiny
    kwargs = dict(num_samples=3, batch_size=2, seed=4, sampler=sampler, progress=False)
    plain, _ = generate_samples(model, diffusion, **kwargs)
    stem = str(tmp_path / "s")
    watched, _ = generate_samples(model, diffusion, save_trajectory=3, trajectory_stem=stem, **kwargs)
    assert np.array_equal(plain, watched)
    with np.load(stem + "_trajectory.npz") as f:
        # the first batch only (2 rows), K = 3 frames ending with the final samples
        assert f["x_t"].shape == (2, 3, 8, 8, 3)
        assert f["timesteps"].tolist() == frame_timesteps(diffusion.num_timesteps, 3)
        assert np.array_equal(f["x_t"][:, -1], plain[:2])


def test_generate_samples_refuses_more_frames_than_steps(tiny, tmp_path):
    from guided_diffusion.sampling.generate import generate_samples, shard_batches

    model, diffusion = tiny
    with pytest.raises(ValueError, match="--save_trajectory 5 is larger than the 4 steps"):
        generate_samples(model, diffusion, num_samples=1, save_trajectory=5, trajectory_stem=str(tmp_path / "s"),
                         progress=False)
    with pytest.raises(ValueError, match="--save_trajectory 5 is larger than the 4 steps"):
        shard_batches(model, diffusion, save_trajectory=5, trajectory_stem=str(tmp_path / "s"))
    assert not list(tmp_path.iterdir())
