"""
Interpolation between two images: mixing weights, DDIM round trip, DDPM mode, symmetry, errors;
then the script's run (`interpolation_run`): seeded streams, rows split into batches, sources, files.
"""

import json
from types import SimpleNamespace

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
from guided_diffusion.data.pixels import from_uint8_nhwc, to_uint8_nhwc
from guided_diffusion.sampling import interpolation as interp
from guided_diffusion.sampling import interpolation_run as run

SHAPE = (3, 8, 8)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    from sample_helpers import one_thread

    yield from one_thread()


class GaussianDataEps(th.nn.Module):
    """
    The exact noise predictor for data x_0 ~ N(mu, s^2 I): with x_t = sqrt(abar) x_0 +
    sqrt(1 - abar) eps, E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mu) / (abar s^2 + 1 - abar).
    A fixed, smooth model whose DDIM path is the probability-flow ODE of a known distribution.
    """

    def __init__(self, alphas_cumprod, mu=0.1, s=0.5):
        super().__init__()
        self.register_buffer("abar", th.tensor(alphas_cumprod, dtype=th.float64))
        self.mu, self.s = mu, s

    def forward(self, x, t, **kwargs):
        a = self.abar[t.long()].view(-1, *([1] * (x.dim() - 1)))
        eps = th.sqrt(1 - a) * (x.double() - th.sqrt(a) * self.mu) / (a * self.s**2 + 1 - a)
        return eps.to(x.dtype)


def spaced(steps, total=1000):
    kwargs = dict(betas=get_named_beta_schedule("linear", total), model_mean_type=ModelMeanType.EPSILON,
                  model_var_type=ModelVarType.FIXED_SMALL, loss_type=LossType.MSE)
    model = GaussianDataEps(GaussianDiffusion(**kwargs).alphas_cumprod)
    return SpacedDiffusion(space_timesteps(total, str(steps)), **kwargs), model


def sources(seed=0):
    g = th.Generator().manual_seed(seed)
    return th.rand((2,) + SHAPE, generator=g) * 2 - 1


def seeded_noise_fn(seed):
    g = th.Generator().manual_seed(seed)
    return interp.shared_noise_fn(lambda row: th.randn(row.shape, generator=g))


# ---------------------------------------------------------------- mixing


def test_lambdas_are_evenly_spaced_from_zero_to_one():
    lam = interp.mixing_lambdas(11)
    assert lam[0] == 0 and lam[-1] == 1 and len(lam) == 11
    assert np.allclose(np.diff(lam), 0.1)


def test_lerp_rows_ends_are_exact_and_middle_is_the_mean():
    a, b = th.randn(SHAPE), th.randn(SHAPE)
    rows = interp.lerp_rows(a, b, 5)
    assert rows.shape == (5,) + SHAPE
    assert th.equal(rows[0], a) and th.equal(rows[-1], b)
    assert th.allclose(rows[2], (a + b) / 2, atol=1e-6)


def test_slerp_keeps_the_norm_of_equal_norm_latents_and_ends_are_exact():
    a = th.randn(SHAPE)
    b = th.randn(SHAPE)
    b = b * (a.norm() / b.norm())
    rows = interp.slerp_rows(a, b, 7)
    assert th.equal(rows[0], a) and th.equal(rows[-1], b)
    norms = rows.flatten(1).norm(dim=1)
    assert th.allclose(norms, a.norm().expand(7), rtol=1e-5)
    # the angle to a grows linearly with lambda
    cos = (rows.flatten(1) @ a.flatten()) / (norms * a.norm())
    angles = th.acos(cos.clamp(-1, 1)).double()
    assert th.allclose(angles, angles[-1] * th.tensor(interp.mixing_lambdas(7)), atol=1e-3)


def test_slerp_of_parallel_latents_falls_back_to_lerp():
    a = th.randn(SHAPE)
    assert th.allclose(interp.slerp_rows(a, 2 * a, 3), interp.lerp_rows(a, 2 * a, 3))


@pytest.mark.parametrize("mix", [interp.lerp_rows, interp.slerp_rows])
def test_swapping_the_latents_reverses_the_rows_exactly(mix):
    a, b = th.randn(SHAPE), th.randn(SHAPE)
    assert th.equal(mix(a, b, 9), mix(b, a, 9).flip(0))


# ---------------------------------------------------------------- the two modes


def test_ddim_lambda_0_and_1_reconstruct_the_sources_to_first_order():
    """
    DDIM inversion then decoding returns the sources up to the ODE discretisation error, which
    is first order in the step size: max |error| <= 0.07 at 100 steps (measured 0.061), and
    halving the step size halves it.
    """
    x = sources()
    errors = []
    for steps in (100, 200):
        diffusion, model = spaced(steps)
        out = interp.interpolate(diffusion, model, x, mode="ddim", num_lambdas=3)
        ends = th.stack([out["images"][0], out["images"][-1]])
        errors.append((ends - x).abs().max().item())
    assert errors[0] <= 0.07
    assert 1.7 <= errors[0] / errors[1] <= 2.3


def test_ddim_inversion_reaches_gaussian_latents():
    diffusion, model = spaced(50)
    latents = interp.encode_ddim(diffusion, model, sources())
    # the flow maps N(mu, s^2) to about N(0, 1); the sources are uniform on [-1, 1] (std 0.58)
    assert 0.8 < latents.std().item() < 1.4


def test_ddpm_lambda_0_equals_the_reverse_process_from_the_first_latent():
    diffusion, model = spaced(40)
    x = sources()
    noise = th.randn(SHAPE, generator=th.Generator().manual_seed(3))
    out = interp.interpolate(diffusion, model, x, mode="ddpm", num_lambdas=4, interp_t=25,
                             noise=noise, noise_fn=seeded_noise_fn(7))
    assert out["t"] == 25
    t = th.full((1,), 25, dtype=th.long)
    latent = diffusion.q_sample(x[:1], t, noise=noise[None])
    assert th.equal(out["latents"][0], latent[0])
    alone = interp.decode(diffusion, model, latent, "ddpm", 25, noise_fn=seeded_noise_fn(7))
    assert th.allclose(out["images"][0], alone[0], atol=1e-5)
    # and the last row decodes the second source's latent the same way
    last = interp.decode(diffusion, model, diffusion.q_sample(x[1:], t, noise=noise[None]), "ddpm", 25,
                         noise_fn=seeded_noise_fn(7))
    assert th.allclose(out["images"][-1], last[0], atol=1e-5)


def test_ddpm_decoding_walks_the_steps_from_interp_t_down_to_zero():
    diffusion, _ = spaced(40)
    seen = []

    def model(x, t, **kwargs):
        seen.append(int(t[0]))
        return th.zeros_like(x)

    interp.decode(diffusion, model, th.zeros((2,) + SHAPE), "ddpm", 5)
    assert seen == [diffusion.timestep_map[t] for t in range(5, -1, -1)]


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_swapping_the_sources_reverses_the_rows(mode):
    diffusion, model = spaced(20)
    x = sources(1)
    noise = th.randn(SHAPE, generator=th.Generator().manual_seed(4))
    fwd = interp.interpolate(diffusion, model, x, mode=mode, num_lambdas=5, noise=noise,
                             noise_fn=seeded_noise_fn(9))
    back = interp.interpolate(diffusion, model, x.flip(0), mode=mode, num_lambdas=5, noise=noise,
                              noise_fn=seeded_noise_fn(9))
    assert th.equal(fwd["latents"], back["latents"].flip(0))
    assert th.allclose(fwd["images"], back["images"].flip(0), atol=1e-6)


def test_ddpm_rows_share_the_step_noise():
    """With identical latents every row must decode identically (the noise is shared)."""
    diffusion, model = spaced(20)
    x = sources(2)[:1].expand(2, *SHAPE)
    out = interp.interpolate(diffusion, model, x, mode="ddpm", num_lambdas=3, noise_fn=seeded_noise_fn(1))
    assert th.allclose(out["images"][0], out["images"][2], atol=1e-6)
    assert th.allclose(out["images"][0], out["images"][1], atol=1e-6)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True])
def test_num_lambdas_below_two_is_refused(bad):
    with pytest.raises(ValueError, match="--num_lambdas must be an integer >= 2"):
        interp.check_num_lambdas(bad)


@pytest.mark.parametrize("bad", [40, 41, -2])
def test_interp_t_outside_the_schedule_is_refused(bad):
    with pytest.raises(ValueError, match=r"--interp_t .* outside the schedule.*0 \.\. 39"):
        interp.resolve_interp_t(bad, 40)


def test_interp_t_default_is_half_the_steps():
    assert interp.resolve_interp_t(-1, 40) == 20
    assert interp.resolve_interp_t(0, 40) == 0 and interp.resolve_interp_t(39, 40) == 39


def test_unknown_mode_and_wrong_source_count_are_refused():
    diffusion, model = spaced(10)
    with pytest.raises(ValueError, match="--mode must be one of ddpm, ddim"):
        interp.interpolate(diffusion, model, sources(), mode="slerp")
    with pytest.raises(ValueError, match=r"two sources \[2, C, H, W\]"):
        interp.interpolate(diffusion, model, sources()[:1])


def test_mixing_latents_of_different_shapes_is_refused():
    with pytest.raises(ValueError, match="shapes"):
        interp.lerp_rows(th.zeros(3, 8, 8), th.zeros(3, 4, 4), 3)


# ---------------------------------------------------------------- the script's run


def uint8_sources(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)


def _run(diffusion, model, sources, **kwargs):
    kwargs = dict(dict(mode="ddpm", num_lambdas=5, seed=3, device="cpu"), **kwargs)
    return run.interpolate_images(model, diffusion, sources, **kwargs)


def test_rows_are_source_a_the_interpolants_and_source_b():
    diffusion, model = spaced(10)
    src = uint8_sources()
    out = _run(diffusion, model, src, num_lambdas=4)
    assert out["images"].shape == (6, 8, 8, 3) and out["images"].dtype == np.uint8
    assert np.array_equal(out["images"][0], src[0]) and np.array_equal(out["images"][-1], src[1])
    assert out["lambdas"].tolist() == [0, 1 / 3, 2 / 3, 1] and out["t"] == 5


def test_ddim_lambda_0_and_1_reconstruct_the_sources_within_9_levels():
    """The DDIM round trip of test_interpolation (max error 0.07 in [-1, 1] at 100 steps) in pixels."""
    diffusion, model = spaced(100)
    src = uint8_sources(1)
    rows = _run(diffusion, model, src, mode="ddim", num_lambdas=3)["images"].astype(int)
    assert np.abs(rows[1] - src[0]).max() <= 9 and np.abs(rows[-2] - src[1]).max() <= 9


def test_ddpm_lambda_0_is_the_reverse_process_from_the_first_latent():
    diffusion, model = spaced(20)
    src = uint8_sources(2)
    out = _run(diffusion, model, src, interp_t=12, num_lambdas=3)
    # the same seeded streams, drawn by hand: q_sample noise, then the shared step noise
    noise = th.randn((3, 8, 8), generator=run._stream(3, run.Q_NOISE_STREAM))
    latent = diffusion.q_sample(from_uint8_nhwc(src[:1]), th.tensor([12]), noise=noise[None])
    g = run._stream(3, run.STEP_NOISE_STREAM)
    alone = interp.decode(diffusion, model, latent, "ddpm", 12,
                          noise_fn=interp.shared_noise_fn(lambda row: th.randn(row.shape, generator=g)))
    assert np.abs(out["images"][1].astype(int) - to_uint8_nhwc(alone)[0].astype(int)).max() <= 1


@pytest.mark.parametrize("mode", ["ddpm", "ddim"])
def test_swapping_the_sources_reverses_the_rows(mode):
    diffusion, model = spaced(12)
    src = uint8_sources(3)
    fwd = _run(diffusion, model, src, mode=mode)["images"].astype(int)
    back = _run(diffusion, model, src[::-1].copy(), mode=mode)["images"].astype(int)
    assert np.abs(fwd - back[::-1]).max() <= 1


def test_rows_do_not_depend_on_the_batch_size():
    """Every batch of rows redraws the shared step noise, so splitting rows changes nothing."""
    diffusion, model = spaced(12)
    src = uint8_sources(4)
    whole = _run(diffusion, model, src, num_lambdas=5, batch_size=16)["images"].astype(int)
    split = _run(diffusion, model, src, num_lambdas=5, batch_size=2)["images"].astype(int)
    assert np.abs(whole - split).max() <= 1


def test_the_seed_changes_only_the_interpolants():
    diffusion, model = spaced(12)
    src = uint8_sources(5)
    a, b = (_run(diffusion, model, src, seed=s)["images"] for s in (1, 2))
    assert np.array_equal(a[[0, -1]], b[[0, -1]]) and not np.array_equal(a[1:-1], b[1:-1])


def test_the_model_samples_its_own_sources_as_generate_samples_does():
    from sample_helpers import build_model

    from guided_diffusion.sampling.generate import generate_samples

    model, diffusion = build_model()
    model.eval()
    out = run.interpolate_images(model, diffusion, None, num_lambdas=2, seed=7)
    first_two, _ = generate_samples(model, diffusion, num_samples=2, batch_size=2, seed=7, progress=False)
    assert np.array_equal(out["images"][[0, -1]], first_two)


def test_files_hold_the_rows_lambdas_and_record(tmp_path):
    from PIL import Image

    images = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    result = {"images": images, "lambdas": interp.mixing_lambdas(3), "t": 7}
    path = run.save_interpolation(str(tmp_path), "ddim", result, {"seed": 1})
    assert path.endswith("interp_ddim_5x4x4x3.npz")
    with np.load(path) as f:
        assert np.array_equal(f["arr_0"], images) and f["lambdas"].tolist() == [0, 0.5, 1]
    with Image.open(path[:-4] + ".png") as im:
        assert im.text["labels"] == "source A,0.00,0.50,1.00,source B"
    with open(path[:-4] + ".json") as f:
        assert json.load(f) == {"seed": 1, "interp_t": 7}


def test_null_label_is_the_row_after_the_classes_and_needs_a_dropout_model():
    args = SimpleNamespace(class_cond=True, class_labels="null", num_classes=10, class_dropout_prob=0.15,
                           model_path="m.pt")
    assert run.resolve_label(args, seed=0) == 10
    args.class_dropout_prob = 0.0
    with pytest.raises(ValueError, match="--class_labels null needs"):
        run.resolve_label(args, seed=0)
