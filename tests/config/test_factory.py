"""Factories: parameters equal the defaults keys, sizes, heads, the diffusion options."""

import inspect

import pytest
import torch as th

from guided_diffusion.config import defaults, factory
from guided_diffusion.diffusion.respacing import SpacedDiffusion
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType
from guided_diffusion.models.encoder import EncoderUNetModel
from guided_diffusion.models.unet import UNetModel


def _params(fn):
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize(
    "factory,defaults",
    [
        (factory.create_model_and_diffusion, defaults.model_and_diffusion_defaults),
        (factory.create_classifier_and_diffusion, defaults.classifier_and_diffusion_defaults),
        (factory.create_classifier, defaults.classifier_defaults),
        (factory.sr_create_model_and_diffusion, defaults.sr_model_and_diffusion_defaults),
    ],
    ids=lambda f: getattr(f, "__name__", ""),
)
def test_factory_parameters_equal_defaults_keys(factory, defaults):
    assert set(_params(factory)) == set(defaults())


def test_flag_factories_fill_left_out_flags_and_refuse_unknown_ones():
    small = {"image_size": 32, "num_channels": 32, "num_res_blocks": 1, "diffusion_steps": 50}
    with th.device("meta"):
        model, diffusion = factory.create_model_and_diffusion(**small)
    assert model.num_res_blocks == 1 and diffusion.num_timesteps == 50
    assert model.num_heads == defaults.model_and_diffusion_defaults()["num_heads"]
    sig = inspect.signature(factory.create_model_and_diffusion).parameters
    assert {k: p.default for k, p in sig.items()} == defaults.model_and_diffusion_defaults()
    with pytest.raises(TypeError, match="num_chanels"):
        factory.create_model_and_diffusion(**small, num_chanels=64)


def test_model_factory_parameters_cover_model_flags():
    model_keys = set(defaults.model_and_diffusion_defaults()) - set(defaults.diffusion_defaults())
    assert set(_params(factory.create_model)) == model_keys | {"learn_sigma"}
    sr_keys = set(defaults.sr_model_and_diffusion_defaults()) - set(defaults.diffusion_defaults())
    assert set(_params(factory.sr_create_model)) == sr_keys | {"learn_sigma"}


def test_create_model_own_keyword_defaults():
    sig = inspect.signature(factory.create_model).parameters
    own = {k: p.default for k, p in sig.items() if p.default is not inspect.Parameter.empty}
    assert own == dict(
        channel_mult="", learn_sigma=False, class_cond=False, use_checkpoint=False,
        attention_resolutions="16", num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
        use_scale_shift_norm=False, dropout=0, resblock_updown=False, use_fp16=False,
        use_new_attention_order=False, num_classes=1000, class_dropout_prob=0.0,
    )  # fmt: skip


def test_unsupported_size_error_names_size_and_flag():
    with pytest.raises(ValueError, match=r"48.*32, 64, 128, 256, 512.*--channel_mult"):
        factory.create_model(48, 32, 1)
    with pytest.raises(ValueError, match=r"48.*--classifier_channel_mult"):
        factory.create_classifier(48, False, 64, 1, "8", True, True, "adaptive")


def test_explicit_channel_mult_for_other_sizes():
    model = factory.create_model(48, 32, 1, channel_mult="1,2", attention_resolutions="24")
    assert model.channel_mult == (1, 2) and model.attention_resolutions == (2,)
    out = model(th.randn(1, 3, 48, 48), th.tensor([1]))
    assert out.shape == (1, 3, 48, 48)
    clf = factory.create_classifier(48, False, 64, 1, "24", True, True, "attention", classifier_channel_mult="1,1")
    assert clf.channel_mult == (1, 1)
    assert clf(th.randn(2, 3, 48, 48), th.tensor([0, 9])).shape == (2, 1000)


def test_attention_resolutions_become_downsample_rates():
    model = factory.create_model(32, 32, 1, attention_resolutions="16,8", learn_sigma=True, class_cond=True)
    assert model.attention_resolutions == (2, 4)
    assert model.out_channels == 6 and model.num_classes == 1000


def test_create_model_and_diffusion_from_defaults_tiny():
    kw = {**defaults.model_and_diffusion_defaults(), "image_size": 32, "num_channels": 32,
          "num_res_blocks": 1, "diffusion_steps": 100, "timestep_respacing": "10"}  # fmt: skip
    model, diffusion = factory.create_model_and_diffusion(**kw)
    assert isinstance(model, UNetModel) and isinstance(diffusion, SpacedDiffusion)
    assert diffusion.num_timesteps == 10 and diffusion.original_num_steps == 100
    clf, cdiff = factory.create_classifier_and_diffusion(
        **{**defaults.classifier_and_diffusion_defaults(), "image_size": 32, "classifier_width": 64,
           "classifier_depth": 1}  # fmt: skip
    )
    assert isinstance(clf, EncoderUNetModel) and cdiff.num_timesteps == 1000


def test_create_gaussian_diffusion_options():
    d = factory.create_gaussian_diffusion(steps=50)
    assert isinstance(d, SpacedDiffusion) and d.num_timesteps == 50
    assert d.model_var_type == ModelVarType.FIXED_LARGE and d.loss_type == LossType.MSE
    assert d.model_mean_type == ModelMeanType.EPSILON
    d = factory.create_gaussian_diffusion(steps=50, sigma_small=True, predict_xstart=True,
                                          rescale_learned_sigmas=True)  # fmt: skip
    assert d.model_var_type == ModelVarType.FIXED_SMALL
    assert d.model_mean_type == ModelMeanType.START_X and d.loss_type == LossType.RESCALED_MSE
    d = factory.create_gaussian_diffusion(steps=50, learn_sigma=True, use_kl=True, noise_schedule="cosine",
                                          timestep_respacing="ddim10", rescale_timesteps=True)  # fmt: skip
    assert d.model_var_type == ModelVarType.LEARNED_RANGE and d.loss_type == LossType.RESCALED_KL
    assert d.num_timesteps == 10 and d.rescale_timesteps
    assert list(d.timestep_map) == list(range(0, 50, 5))


def test_classifier_head_channels_error_names_width():
    with pytest.raises(ValueError, match=r"resolution 32 has 32 channels.*--classifier_width \(now 32\)"):
        factory.create_classifier(32, False, 32, 1, "32,16,8", True, True, "attention")
    with pytest.raises(ValueError, match=r"middle block has 96 channels"):
        factory.create_classifier(32, False, 96, 1, "16", True, True, "adaptive", classifier_channel_mult="2,1")
    clf = factory.create_classifier(8, False, 32, 1, "4", True, True, "attention", classifier_channel_mult="1,2")
    assert clf(th.randn(1, 3, 8, 8), th.tensor([1])).shape == (1, 1000)


def test_num_classes_sets_label_rows_and_logits_and_must_be_positive():
    with th.device("meta"):
        model = factory.create_model(32, 32, 1, class_cond=True, num_classes=10)
        released = factory.create_model(32, 32, 1, class_cond=True)
        clf = factory.create_classifier(32, False, 64, 1, "8", True, True, "adaptive", num_classes=10)
        uncond = factory.create_model(32, 32, 1, num_classes=0)  # unused without class_cond
    assert model.label_emb.weight.shape == (10, 128) and released.label_emb.weight.shape == (1000, 128)
    assert clf.out[3].weight.shape[0] == 10 and not hasattr(uncond, "label_emb")
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="--num_classes must be a positive"):
            factory.create_model(32, 32, 1, class_cond=True, num_classes=bad)


def test_loss_flag_reaches_the_diffusion_and_is_checked():
    assert factory.create_gaussian_diffusion(steps=50).mean_loss == "l2"
    assert factory.create_gaussian_diffusion(steps=50, loss="l1").mean_loss == "l1"
    small = {"image_size": 32, "num_channels": 32, "num_res_blocks": 1, "diffusion_steps": 50}
    with th.device("meta"):
        _, diffusion = factory.create_model_and_diffusion(**small, loss="l1", noise_schedule="sigmoid")
    assert diffusion.mean_loss == "l1" and diffusion.num_timesteps == 50
    with pytest.raises(ValueError, match="--loss must be one of l2, l1"):
        factory.create_gaussian_diffusion(steps=50, loss="huber")
    with pytest.raises(ValueError, match="--loss l1 has no effect with --use_kl"):
        factory.create_gaussian_diffusion(steps=50, loss="l1", use_kl=True)


def test_label_dropout_adds_the_null_row_and_the_checkpoint_loads_strictly(tmp_path):
    from guided_diffusion.config.checkpoint import load_model_checkpoint

    flags = dict(defaults.model_and_diffusion_defaults(), image_size=8, num_channels=32, num_res_blocks=1,
                 attention_resolutions="4", channel_mult="1,2", num_heads=1, class_cond=True, num_classes=10)
    plain, _ = factory.create_model_and_diffusion(**flags)
    dropout, _ = factory.create_model_and_diffusion(**dict(flags, class_dropout_prob=0.15))
    assert plain.label_emb.weight.shape == (10, 128)
    assert dropout.label_emb.weight.shape == (11, 128)
    assert (dropout.num_classes, dropout.null_label, plain.num_classes, plain.null_label) == (10, 10, 10, None)
    # every other parameter keeps its name and shape
    shapes = {k: v.shape for k, v in plain.state_dict().items() if k != "label_emb.weight"}
    assert shapes == {k: v.shape for k, v in dropout.state_dict().items() if k != "label_emb.weight"}
    path = tmp_path / "model000010.pt"
    th.save(dropout.state_dict(), path)
    again, _ = factory.create_model_and_diffusion(**dict(flags, class_dropout_prob=0.3))  # any p > 0
    load_model_checkpoint(again, str(path), flags=dict(flags, class_dropout_prob=0.3))
    assert th.equal(again.label_emb.weight, dropout.label_emb.weight)
    with pytest.raises(ValueError):
        load_model_checkpoint(plain, str(path), flags=flags)


@pytest.mark.parametrize("p", [-0.1, 1.0, 2.0])
def test_label_dropout_probability_outside_the_unit_interval_is_rejected(p):
    with pytest.raises(ValueError, match=r"--class_dropout_prob must be in \[0, 1\)"):
        factory.create_model(8, 32, 1, channel_mult="1,2", class_cond=True, num_classes=10, class_dropout_prob=p)


def test_label_dropout_on_an_unconditional_model_names_class_cond():
    with pytest.raises(ValueError, match="unconditional: add --class_cond True"):
        factory.create_model(8, 32, 1, channel_mult="1,2", class_dropout_prob=0.1)
