"""Classifier-free guidance: the eps mix, the batched 2N model wrapper, and its endpoints."""

import pytest
import torch as th

from guided_diffusion.models.unet import UNetModel
from guided_diffusion.sampling.cfg import (
    NOT_GIVEN,
    ClassifierFreeModel,
    check_null_class,
    classifier_free_scales,
    guided_prediction,
)
from sample_helpers import LinearClassifier, one_thread

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)

NUM_CLASSES = 4  # the null label is 4


class ToyModel:
    """
    eps(x, t, y) = x * a_y + t * b (rows independent, known in closed form), and for learned
    sigma a variance channel block v_y. Records the batch size of every call.
    """

    def __init__(self, channels=2, learn_sigma=False, seed=0):
        g = th.Generator().manual_seed(seed)
        self.a = th.randn(NUM_CLASSES + 1, generator=g)
        self.v = th.randn(NUM_CLASSES + 1, generator=g)
        self.channels, self.learn_sigma = channels, learn_sigma
        self.batches = []

    def eps(self, x, t, y):
        shape = (-1,) + (1,) * (x.dim() - 1)
        return x * self.a[y].view(shape) + 0.01 * t.float().view(shape)

    def __call__(self, x, t, y):
        self.batches.append(len(x))
        out = self.eps(x, t, y)
        if self.learn_sigma:
            out = th.cat([out, th.ones_like(x) * self.v[y].view(-1, 1, 1, 1)], dim=1)
        return out


def _batch(n=3, channels=2, seed=1):
    g = th.Generator().manual_seed(seed)
    x = th.randn(n, channels, 4, 4, generator=g)
    t = th.randint(0, 100, (n,), generator=g)
    y = th.randint(0, NUM_CLASSES, (n,), generator=g)
    return x, t, y


def test_guided_prediction_mixes_eps_channels_and_keeps_conditional_variance():
    g = th.Generator().manual_seed(0)
    cond, uncond = th.randn(3, 6, 2, 2, generator=g), th.randn(3, 6, 2, 2, generator=g)
    out = guided_prediction(cond, uncond, 2.5, channels=3)
    assert th.allclose(out[:, :3], uncond[:, :3] + 2.5 * (cond[:, :3] - uncond[:, :3]))
    assert th.equal(out[:, 3:], cond[:, 3:])
    per_row = guided_prediction(cond, uncond, th.tensor([0.5, 2.0, 3.0]), channels=3)
    for i, w in enumerate((0.5, 2.0, 3.0)):
        assert th.allclose(per_row[i, :3], uncond[i, :3] + w * (cond[i, :3] - uncond[i, :3]))


def test_guided_prediction_rejects_mismatched_halves():
    with pytest.raises(ValueError, match="shape"):
        guided_prediction(th.zeros(2, 3), th.zeros(3, 3), 2.0, channels=3)


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_wrapper_output_is_the_formula_from_one_batched_forward(learn_sigma):
    toy = ToyModel(learn_sigma=learn_sigma)
    x, t, y = _batch()
    w = 3.0
    out = ClassifierFreeModel(toy, NUM_CLASSES, w)(x, t, y=y)
    eps_c, eps_u = toy.eps(x, t, y), toy.eps(x, t, th.full_like(y, NUM_CLASSES))
    assert toy.batches == [2 * len(x)]  # one pass of 2N rows
    assert th.allclose(out[:, :2], eps_u + w * (eps_c - eps_u), atol=1e-6)
    if learn_sigma:  # variance from the conditional pass
        assert th.equal(out[:, 2:], th.ones_like(x) * toy.v[y].view(-1, 1, 1, 1))


def test_scale_one_is_the_conditional_pass_and_zero_the_null_pass_exactly():
    toy = ToyModel(learn_sigma=True)
    x, t, y = _batch()
    one = ClassifierFreeModel(toy, NUM_CLASSES, 1.0)
    zero = ClassifierFreeModel(toy, NUM_CLASSES, 0.0)
    assert th.equal(one(x, t, y=y), toy(x, t, y))
    assert th.equal(zero(x, t, y=y), toy(x, t, th.full_like(y, NUM_CLASSES)))
    assert one.calls == {"conditional": 1, "null": 0, "both": 0}
    assert zero.calls == {"conditional": 0, "null": 1, "both": 0}
    assert toy.batches == [len(x)] * 4  # N rows each: no wasted half


def test_extra_per_row_kwargs_are_doubled_with_the_batch():
    seen = {}

    def model(x, t, y, low_res=None, flag=None):
        seen.update(rows=len(x), low_res=low_res, flag=flag)
        return x

    x, t, y = _batch()
    low = th.arange(3.0)
    ClassifierFreeModel(model, NUM_CLASSES, 2.0)(x, t, y=y, low_res=low, flag="keep")
    assert seen["rows"] == 6 and th.equal(seen["low_res"], th.cat([low, low])) and seen["flag"] == "keep"


def test_wrapper_requires_labels():
    with pytest.raises(ValueError, match="labels"):
        ClassifierFreeModel(ToyModel(), NUM_CLASSES, 2.0)(*_batch()[:2])


def _unet(learn_sigma=True):
    th.manual_seed(0)
    model = UNetModel(image_size=8, in_channels=3, model_channels=32, out_channels=6 if learn_sigma else 3,
                      num_res_blocks=1, attention_resolutions=(2,), channel_mult=(1, 2),
                      num_classes=NUM_CLASSES, null_class=True, num_heads=1)
    with th.no_grad():  # wake the zero-initialised output layers
        for p in model.parameters():
            p.add_(0.05 * th.randn_like(p))
    return model.eval()


def test_batched_unet_forward_equals_two_separate_forwards():
    model = _unet()
    x, t, y = _batch(n=3, channels=3)
    x = x.repeat(1, 1, 2, 2)
    w = 2.5
    with th.no_grad():
        out = ClassifierFreeModel(model, NUM_CLASSES, w)(x, t, y=y)
        cond = model(x, t, y)
        uncond = model(x, t, th.full_like(y, NUM_CLASSES))
    assert th.allclose(out[:, :3], uncond[:, :3] + w * (cond[:, :3] - uncond[:, :3]), atol=1e-5)
    assert th.allclose(out[:, 3:], cond[:, 3:], atol=1e-6)


class _Between:
    """Guidance where t >= 50 (as a GuidanceInterval would say)."""

    def contains(self, t):
        return t >= 50


def test_rows_outside_the_interval_take_the_base_scale():
    toy = ToyModel()
    x, _, y = _batch(n=4)
    t = th.tensor([10, 60, 70, 20])
    out = ClassifierFreeModel(toy, NUM_CLASSES, 3.0, base_scale=1.0, interval=_Between())(x, t, y=y)
    eps_c, eps_u = toy.eps(x, t, y), toy.eps(x, t, th.full_like(y, NUM_CLASSES))
    guided = eps_u + 3.0 * (eps_c - eps_u)
    inside = t >= 50
    assert th.allclose(out[inside], guided[inside], atol=1e-6)
    assert th.equal(out[~inside], eps_c[~inside])
    null_base = ClassifierFreeModel(toy, NUM_CLASSES, 3.0, base_scale=0.0, interval=_Between())(x, t, y=y)
    assert th.equal(null_base[~inside], eps_u[~inside])


def test_all_rows_outside_the_interval_cost_one_conditional_pass():
    toy = ToyModel()
    x, _, y = _batch()
    cfg = ClassifierFreeModel(toy, NUM_CLASSES, 3.0, interval=_Between())
    t = th.tensor([1, 2, 3])
    assert th.equal(cfg(x, t, y=y), toy(x, t, y))
    assert cfg.calls == {"conditional": 1, "null": 0, "both": 0}


# ------------------------------------------------------------------------------------------
# Whole sampling loops


def _sample(diffusion, model_fn, y, sampler, cond_fn=None, seed=5):
    """A seeded loop over 4 respaced steps; the noise depends only on the seed."""
    from guided_diffusion.sampling.seeds import PerSampleNoise

    shape = (len(y), 3, 8, 8)
    noise = PerSampleNoise(seed, range(len(y)))
    loop = diffusion.ddim_sample_loop if sampler == "ddim" else diffusion.p_sample_loop
    kwargs = {"eta": 0.5} if sampler == "ddim" else {}
    with th.no_grad():
        return loop(model_fn, shape, noise=noise.initial_noise(shape), noise_fn=noise.noise_fn,
                    model_kwargs={"y": y}, cond_fn=cond_fn, **kwargs)


@pytest.fixture(scope="module")
def unet_and_diffusion():
    from guided_diffusion.config.factory import create_gaussian_diffusion

    return _unet(), create_gaussian_diffusion(steps=100, learn_sigma=True, timestep_respacing="4")


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_scale_one_samples_equal_conditional_sampling_and_zero_null_label_sampling(unet_and_diffusion, sampler):
    model, diffusion = unet_and_diffusion
    y = th.tensor([0, 3])
    null = th.full_like(y, NUM_CLASSES)
    plain = _sample(diffusion, model, y, sampler)
    assert th.equal(_sample(diffusion, ClassifierFreeModel(model, NUM_CLASSES, 1.0), y, sampler), plain)
    unconditional = _sample(diffusion, model, null, sampler)
    assert th.equal(_sample(diffusion, ClassifierFreeModel(model, NUM_CLASSES, 0.0), y, sampler), unconditional)
    guided = _sample(diffusion, ClassifierFreeModel(model, NUM_CLASSES, 3.0), y, sampler)
    assert not th.allclose(guided, plain, atol=1e-3)  # the scale acts


def _classifier_gradient(clf, x, y, scale):
    """scale * d/dx log softmax(Wx)[y] = scale * (W_y - sum_k p_k W_k)."""
    w = clf.w.detach()
    p = th.softmax(x.flatten(1) @ w.t(), dim=-1)
    return (scale * (w[y] - p @ w)).view_as(x)


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_classifier_and_classifier_free_guidance_compose_as_the_formula(sampler):
    """
    DDIM: eps' = eps_u + w (eps_c - eps_u) - sqrt(1 - abar_t) s grad log p(y | x_t), then the
    DDIM update from eps'. Ancestral: the posterior mean of the guided eps, shifted by s Sigma grad.
    """
    from guided_diffusion.config.factory import create_gaussian_diffusion
    from guided_diffusion.sampling.guidance import make_cond_fn

    diffusion = create_gaussian_diffusion(steps=100, timestep_respacing="10")
    toy, clf = ToyModel(channels=3), LinearClassifier(3 * 4 * 4, NUM_CLASSES)
    x, _, y = _batch(channels=3)
    step = 6  # respaced index; the model sees the original timestep
    t = th.full((len(x),), step)
    w, s = 2.0, 1.5
    noise = th.randn(x.shape, generator=th.Generator().manual_seed(9))
    kwargs = dict(clip_denoised=False, cond_fn=make_cond_fn(clf, s), model_kwargs={"y": y},
                  noise_fn=lambda _: noise)
    cfg = ClassifierFreeModel(toy, NUM_CLASSES, w)
    with th.no_grad():
        if sampler == "ddim":
            out = diffusion.ddim_sample(cfg, x, t, eta=0.0, **kwargs)["sample"]
        else:
            out = diffusion.p_sample(cfg, x, t, **kwargs)["sample"]

    t_model = th.full_like(t, diffusion.timestep_map[step])
    eps_c, eps_u = toy.eps(x, t_model, y), toy.eps(x, t_model, th.full_like(y, NUM_CLASSES))
    eps = (eps_u + w * (eps_c - eps_u)).double()
    grad = _classifier_gradient(clf, x, y, s).double()
    abar, abar_prev = diffusion.alphas_cumprod[step], diffusion.alphas_cumprod_prev[step]
    x = x.double()
    if sampler == "ddim":
        eps = eps - (1 - abar) ** 0.5 * grad
        x0 = (x - (1 - abar) ** 0.5 * eps) / abar**0.5
        expected = x0 * abar_prev**0.5 + (1 - abar_prev) ** 0.5 * eps
    else:
        x0 = (x - (1 - abar) ** 0.5 * eps) / abar**0.5
        variance = diffusion.betas[step]  # FIXED_LARGE: the betas (posterior variance only at t = 0)
        mean = diffusion.posterior_mean_coef1[step] * x0 + diffusion.posterior_mean_coef2[step] * x
        expected = mean + variance * grad + variance**0.5 * noise.double()
    assert th.allclose(out.double(), expected, atol=1e-4)


# ------------------------------------------------------------------------------------------
# Which scales a run uses, and the errors for what cannot work


@pytest.mark.parametrize("w, classifier, dropout, expected", [
    (NOT_GIVEN, False, False, None),  # image_sample: labels straight to the model
    (NOT_GIVEN, False, True, None),
    (3.0, False, True, (3.0, 1.0)),  # outside an interval: plain conditional
    (0.0, False, True, (0.0, 1.0)),
    (NOT_GIVEN, True, False, None),  # the original's classifier guidance of a conditional model
    (NOT_GIVEN, True, True, (0.0, 0.0)),  # classifier guidance on the null-label branch
    (2.0, True, True, (2.0, 1.0)),  # both kinds: the classifier shifts the guided eps
])
def test_scales_of_a_run(w, classifier, dropout, expected):
    assert classifier_free_scales(w, class_cond=True, classifier_guided=classifier, dropout_model=dropout) == expected


@pytest.mark.parametrize("kwargs, words", [
    (dict(guidance_scale=2.0, class_cond=False), "unconditional.*--class_dropout_prob"),
    (dict(guidance_scale=2.0, class_cond=True), "no null class; train with --class_dropout_prob"),
    (dict(guidance_scale=NOT_GIVEN, class_cond=True, null_labels=True), "no null class"),
    (dict(guidance_scale=-0.5, class_cond=True, dropout_model=True), ">= 0"),
    (dict(guidance_scale=2.0, class_cond=True, dropout_model=True, null_labels=True), "null.*give class labels"),
    (dict(guidance_scale=NOT_GIVEN, class_cond=True, dropout_model=True, null_labels=True,
          classifier_guided=True), "null.*give class labels"),
])
def test_impossible_requests_name_the_fix(kwargs, words):
    import re

    w = kwargs.pop("guidance_scale")
    with pytest.raises(ValueError) as err:
        classifier_free_scales(w, **kwargs)
    assert re.search(words, str(err.value))


def test_null_class_check_reads_the_checkpoint_rows():
    with_null = {"label_emb.weight": th.zeros(NUM_CLASSES + 1, 8)}
    without = {"label_emb.weight": th.zeros(NUM_CLASSES, 8)}
    check_null_class(with_null, NUM_CLASSES, dropout_model=True, wants_null=True)
    check_null_class(without, NUM_CLASSES, dropout_model=False, wants_null=False)
    check_null_class({}, NUM_CLASSES, dropout_model=False, wants_null=False)  # unconditional
    with pytest.raises(ValueError, match="no null class; train with --class_dropout_prob"):
        check_null_class(without, NUM_CLASSES, dropout_model=True, wants_null=True)
    with pytest.raises(ValueError, match="sample it without --class_dropout_prob"):
        check_null_class(without, NUM_CLASSES, dropout_model=True, wants_null=False)
    with pytest.raises(ValueError, match="has a null class.*pass that flag"):
        check_null_class(with_null, NUM_CLASSES, dropout_model=False, wants_null=False)
