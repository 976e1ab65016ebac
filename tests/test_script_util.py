"""Defaults, factories and argparse helpers of guided_diffusion.script_util."""

import argparse
import inspect

import pytest
import torch as th

from guided_diffusion import script_util as su
from guided_diffusion.models.encoder import EncoderUNetModel
from guided_diffusion.unet import SuperResModel, UNetModel


def _params(fn):
    return list(inspect.signature(fn).parameters)


@pytest.mark.parametrize(
    "factory,defaults",
    [
        (su.create_model_and_diffusion, su.model_and_diffusion_defaults),
        (su.create_classifier_and_diffusion, su.classifier_and_diffusion_defaults),
        (su.create_classifier, su.classifier_defaults),
        (su.sr_create_model_and_diffusion, su.sr_model_and_diffusion_defaults),
    ],
    ids=lambda f: getattr(f, "__name__", ""),
)
def test_factory_parameters_equal_defaults_keys(factory, defaults):
    assert set(_params(factory)) == set(defaults())


def test_model_factory_parameters_cover_model_flags():
    model_keys = set(su.model_and_diffusion_defaults()) - set(su.diffusion_defaults())
    assert set(_params(su.create_model)) == model_keys | {"learn_sigma"}
    sr_keys = set(su.sr_model_and_diffusion_defaults()) - set(su.diffusion_defaults())
    assert set(_params(su.sr_create_model)) == sr_keys | {"learn_sigma"}


def test_model_and_diffusion_defaults_values():
    d = su.model_and_diffusion_defaults()
    assert d == dict(
        image_size=64, num_channels=128, num_res_blocks=2, num_heads=4, num_heads_upsample=-1,
        num_head_channels=-1, attention_resolutions="16,8", channel_mult="", dropout=0.0,
        class_cond=False, use_checkpoint=False, use_scale_shift_norm=True, resblock_updown=False,
        use_fp16=False, use_new_attention_order=False, learn_sigma=False, diffusion_steps=1000,
        noise_schedule="linear", timestep_respacing="", use_kl=False, predict_xstart=False,
        rescale_timesteps=False, rescale_learned_sigmas=False,
    )  # fmt: skip
    assert list(d)[:3] == ["image_size", "num_channels", "num_res_blocks"]


def test_classifier_and_sr_defaults_values():
    assert su.classifier_defaults() == dict(
        image_size=64, classifier_use_fp16=False, classifier_width=128, classifier_depth=2,
        classifier_attention_resolutions="32,16,8", classifier_use_scale_shift_norm=True,
        classifier_resblock_updown=True, classifier_pool="attention", classifier_channel_mult="",
    )  # fmt: skip
    sr = su.sr_model_and_diffusion_defaults()
    assert sr["large_size"] == 256 and sr["small_size"] == 64
    assert not {"image_size", "channel_mult", "use_new_attention_order"} & set(sr)
    assert su.NUM_CLASSES == 1000


def test_create_model_own_keyword_defaults():
    sig = inspect.signature(su.create_model).parameters
    own = {k: p.default for k, p in sig.items() if p.default is not inspect.Parameter.empty}
    assert own == dict(
        channel_mult="", learn_sigma=False, class_cond=False, use_checkpoint=False,
        attention_resolutions="16", num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
        use_scale_shift_norm=False, dropout=0, resblock_updown=False, use_fp16=False,
        use_new_attention_order=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    "size,mult",
    [(512, (0.5, 1, 1, 2, 2, 4, 4)), (256, (1, 1, 2, 2, 4, 4)), (128, (1, 1, 2, 3, 4)),
     (64, (1, 2, 3, 4)), (32, (1, 2, 2, 2))],
)  # fmt: skip
def test_channel_mult_table(size, mult):
    with th.device("meta"):
        model = su.create_model(size, 64, 1, attention_resolutions="8")
        clf = su.create_classifier(size, False, 64, 1, "8", True, True, "adaptive")
    assert tuple(model.channel_mult) == mult and tuple(clf.channel_mult) == mult
    # 0.5 halves the first level's width
    assert model.input_blocks[0][0].out_channels == int(mult[0] * 64)


def test_unsupported_size_error_names_size_and_flag():
    with pytest.raises(ValueError, match=r"48.*32, 64, 128, 256, 512.*--channel_mult"):
        su.create_model(48, 32, 1)
    with pytest.raises(ValueError, match=r"48.*--classifier_channel_mult"):
        su.create_classifier(48, False, 64, 1, "8", True, True, "adaptive")


def test_explicit_channel_mult_for_other_sizes():
    model = su.create_model(48, 32, 1, channel_mult="1,2", attention_resolutions="24")
    assert model.channel_mult == (1, 2) and model.attention_resolutions == (2,)
    out = model(th.randn(1, 3, 48, 48), th.tensor([1]))
    assert out.shape == (1, 3, 48, 48)
    clf = su.create_classifier(48, False, 64, 1, "24", True, True, "attention", classifier_channel_mult="1,1")
    assert clf.channel_mult == (1, 1)
    assert clf(th.randn(2, 3, 48, 48), th.tensor([0, 9])).shape == (2, 1000)


def test_sr_channel_mult_table_and_six_input_channels():
    with th.device("meta"):
        for large, mult in [(512, (1, 1, 2, 2, 4, 4)), (256, (1, 1, 2, 2, 4, 4)), (64, (1, 2, 3, 4))]:
            kw = {**su.sr_model_and_diffusion_defaults(), "large_size": large, "small_size": large // 4}
            model, _ = su.sr_create_model_and_diffusion(**kw)
            assert isinstance(model, SuperResModel) and tuple(model.channel_mult) == mult
            assert model.input_blocks[0][0].in_channels == 6
    with pytest.raises(ValueError, match=r"128.*supported"):
        su.sr_create_model(128, 32, 32, 1, False, False, False, "16", 1, -1, -1, False, 0, False, False)


def test_attention_resolutions_become_downsample_rates():
    model = su.create_model(32, 32, 1, attention_resolutions="16,8", learn_sigma=True, class_cond=True)
    assert model.attention_resolutions == (2, 4)
    assert model.out_channels == 6 and model.num_classes == 1000


def test_parse_list_flag():
    assert su.parse_list_flag("16,8") == (16, 8)
    assert su.parse_list_flag("0.5,1, 2") == (0.5, 1, 2)
    assert su.parse_list_flag((1, 2)) == (1, 2)
    with pytest.raises(ValueError, match=r"channel_mult.*'1,x'"):
        su.parse_list_flag("1,x", "channel_mult")


@pytest.mark.parametrize("text,value", [("True", True), ("false", False), ("1", True), ("n", False), (True, True)])
def test_str2bool_accepts(text, value):
    assert su.str2bool(text) is value


def test_str2bool_rejects_with_value():
    with pytest.raises(argparse.ArgumentTypeError, match="'maybe'"):
        su.str2bool("maybe")


def test_argparser_round_trip():
    defaults = su.model_and_diffusion_defaults()
    parser = argparse.ArgumentParser()
    su.add_dict_to_argparser(parser, defaults)
    args = parser.parse_args(["--class_cond", "True", "--num_channels", "96", "--dropout", "0.1",
                              "--attention_resolutions", "32,16"])  # fmt: skip
    got = su.args_to_dict(args, defaults.keys())
    assert got == {**defaults, "class_cond": True, "num_channels": 96, "dropout": 0.1,
                   "attention_resolutions": "32,16"}  # fmt: skip
    assert su.args_to_dict(parser.parse_args([]), defaults.keys()) == defaults


def test_create_model_and_diffusion_from_defaults_tiny():
    from guided_diffusion.respace import SpacedDiffusion

    kw = {**su.model_and_diffusion_defaults(), "image_size": 32, "num_channels": 32,
          "num_res_blocks": 1, "diffusion_steps": 100, "timestep_respacing": "10"}  # fmt: skip
    model, diffusion = su.create_model_and_diffusion(**kw)
    assert isinstance(model, UNetModel) and isinstance(diffusion, SpacedDiffusion)
    assert diffusion.num_timesteps == 10 and diffusion.original_num_steps == 100
    clf, cdiff = su.create_classifier_and_diffusion(
        **{**su.classifier_and_diffusion_defaults(), "image_size": 32, "classifier_width": 64,
           "classifier_depth": 1}  # fmt: skip
    )
    assert isinstance(clf, EncoderUNetModel) and cdiff.num_timesteps == 1000


def test_create_gaussian_diffusion_options():
    from guided_diffusion import gaussian_diffusion as gd
    from guided_diffusion.respace import SpacedDiffusion

    d = su.create_gaussian_diffusion(steps=50)
    assert isinstance(d, SpacedDiffusion) and d.num_timesteps == 50
    assert d.model_var_type == gd.ModelVarType.FIXED_LARGE and d.loss_type == gd.LossType.MSE
    assert d.model_mean_type == gd.ModelMeanType.EPSILON
    d = su.create_gaussian_diffusion(steps=50, sigma_small=True, predict_xstart=True,
                                     rescale_learned_sigmas=True)  # fmt: skip
    assert d.model_var_type == gd.ModelVarType.FIXED_SMALL
    assert d.model_mean_type == gd.ModelMeanType.START_X and d.loss_type == gd.LossType.RESCALED_MSE
    d = su.create_gaussian_diffusion(steps=50, learn_sigma=True, use_kl=True, noise_schedule="cosine",
                                     timestep_respacing="ddim10", rescale_timesteps=True)  # fmt: skip
    assert d.model_var_type == gd.ModelVarType.LEARNED_RANGE and d.loss_type == gd.LossType.RESCALED_KL
    assert d.num_timesteps == 10 and d.rescale_timesteps
    assert list(d.timestep_map) == list(range(0, 50, 5))


def test_classifier_head_channels_error_names_width():
    with pytest.raises(ValueError, match=r"resolution 32 has 32 channels.*--classifier_width \(now 32\)"):
        su.create_classifier(32, False, 32, 1, "32,16,8", True, True, "attention")
    with pytest.raises(ValueError, match=r"middle block has 96 channels"):
        su.create_classifier(32, False, 96, 1, "16", True, True, "adaptive", classifier_channel_mult="2,1")
    clf = su.create_classifier(8, False, 32, 1, "4", True, True, "attention", classifier_channel_mult="1,2")
    assert clf(th.randn(1, 3, 8, 8), th.tensor([1])).shape == (1, 1000)
