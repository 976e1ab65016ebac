"""The defaults dicts and the channel-multiplier tables."""

import pytest
import torch as th

from guided_diffusion.config import defaults, factory
from guided_diffusion.models.unet import SuperResModel


def test_model_and_diffusion_defaults_values():
    d = defaults.model_and_diffusion_defaults()
    assert d == dict(
        image_size=64, num_channels=128, num_res_blocks=2, num_heads=4, num_heads_upsample=-1,
        num_head_channels=-1, attention_resolutions="16,8", channel_mult="", dropout=0.0,
        class_cond=False, use_checkpoint=False, use_scale_shift_norm=True, resblock_updown=False,
        use_fp16=False, use_new_attention_order=False, learn_sigma=False, diffusion_steps=1000,
        noise_schedule="linear", timestep_respacing="", use_kl=False, predict_xstart=False,
        rescale_timesteps=False, rescale_learned_sigmas=False, loss="l2", num_classes=1000, class_dropout_prob=0.0,
    )  # fmt: skip
    assert list(d)[:3] == ["image_size", "num_channels", "num_res_blocks"]


def test_classifier_and_sr_defaults_values():
    assert defaults.classifier_defaults() == dict(
        image_size=64, classifier_use_fp16=False, classifier_width=128, classifier_depth=2,
        classifier_attention_resolutions="32,16,8", classifier_use_scale_shift_norm=True,
        classifier_resblock_updown=True, classifier_pool="attention", classifier_channel_mult="",
        num_classes=1000,
    )  # fmt: skip
    sr = defaults.sr_model_and_diffusion_defaults()
    assert sr["large_size"] == 256 and sr["small_size"] == 64
    assert not {"image_size", "channel_mult", "use_new_attention_order", "class_dropout_prob"} & set(sr)
    assert defaults.NUM_CLASSES == 1000


@pytest.mark.parametrize(
    "size,mult",
    [(512, (0.5, 1, 1, 2, 2, 4, 4)), (256, (1, 1, 2, 2, 4, 4)), (128, (1, 1, 2, 3, 4)),
     (64, (1, 2, 3, 4)), (32, (1, 2, 2, 2))],
)  # fmt: skip
def test_channel_mult_table(size, mult):
    with th.device("meta"):
        model = factory.create_model(size, 64, 1, attention_resolutions="8")
        clf = factory.create_classifier(size, False, 64, 1, "8", True, True, "adaptive")
    assert tuple(model.channel_mult) == mult and tuple(clf.channel_mult) == mult
    # 0.5 halves the first level's width
    assert model.input_blocks[0][0].out_channels == int(mult[0] * 64)


def test_sr_channel_mult_table_and_six_input_channels():
    with th.device("meta"):
        for large, mult in [(512, (1, 1, 2, 2, 4, 4)), (256, (1, 1, 2, 2, 4, 4)), (64, (1, 2, 3, 4))]:
            kw = {**defaults.sr_model_and_diffusion_defaults(), "large_size": large, "small_size": large // 4}
            model, _ = factory.sr_create_model_and_diffusion(**kw)
            assert isinstance(model, SuperResModel) and tuple(model.channel_mult) == mult
            assert model.input_blocks[0][0].in_channels == 6
    with pytest.raises(ValueError, match=r"128.*supported"):
        factory.sr_create_model(128, 32, 32, 1, False, False, False, "16", 1, -1, -1, False, 0, False, False)
