"""
The defaults dicts (one per factory; each is the list of that factory's flags), the class count
of the released models and the channel-multiplier tables by image size.

`config.flags.add_dict_to_argparser` turns a dict into flags; `config.factory` builds networks
and diffusion processes from the same keys.
"""

# Classes of the released class-conditional models and classifiers (ImageNet); the default of
# the num_classes flag.
NUM_CLASSES = 1000

# Default channel multipliers by image size (the original table, plus 32x32).
CHANNEL_MULT_BY_SIZE = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
}
# The super-resolution factory has its own table, keyed by large_size (no 0.5 multiplier).
SR_CHANNEL_MULT_BY_SIZE = {
    512: (1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
}

# Channels per attention head of the classifier.
CLASSIFIER_HEAD_CHANNELS = 64


def diffusion_defaults():
    """
    Defaults for the diffusion process (shared by image and classifier training).
    noise_schedule: "linear", "cosine" or "sigmoid"; loss: "l2" (the original's MSE) or "l1" on
    the mean term (see `diffusion.training_losses`).
    """
    return dict(
        learn_sigma=False,
        diffusion_steps=1000,
        noise_schedule="linear",
        timestep_respacing="",
        use_kl=False,
        predict_xstart=False,
        rescale_timesteps=False,
        rescale_learned_sigmas=False,
        loss="l2",
    )


def classifier_defaults():
    """
    Defaults for classifier models. The reference's values were attention "16", no scale-shift
    norm and no ResBlock up/downsampling; the released classifiers use the values below.
    `classifier_channel_mult` "" means the size table; `num_classes` is the number of logits.
    """
    return dict(
        image_size=64,
        classifier_use_fp16=False,
        classifier_width=128,
        classifier_depth=2,
        classifier_attention_resolutions="32,16,8",
        classifier_use_scale_shift_norm=True,
        classifier_resblock_updown=True,
        classifier_pool="attention",
        classifier_channel_mult="",
        num_classes=NUM_CLASSES,
    )


def model_and_diffusion_defaults():
    """
    Defaults for image training: the UNet's flags plus the diffusion flags. `num_classes` is the
    number of classes of a class_cond model (unused otherwise). `class_dropout_prob` p > 0 trains
    with label dropout for classifier-free guidance: the label embedding gets one more row, the
    null class `num_classes`; p = 0 keeps every released layout.
    """
    res = dict(
        image_size=64,
        num_channels=128,
        num_res_blocks=2,
        num_heads=4,
        num_heads_upsample=-1,
        num_head_channels=-1,
        attention_resolutions="16,8",
        channel_mult="",
        dropout=0.0,
        class_cond=False,
        use_checkpoint=False,
        use_scale_shift_norm=True,
        resblock_updown=False,
        use_fp16=False,
        use_new_attention_order=False,
        num_classes=NUM_CLASSES,
        class_dropout_prob=0.0,
    )
    res.update(diffusion_defaults())
    return res


def classifier_and_diffusion_defaults():
    """Defaults for classifier training: classifier flags plus diffusion flags."""
    res = classifier_defaults()
    res.update(diffusion_defaults())
    return res


# Flags of model_and_diffusion_defaults() that the super-resolution factory does not take.
_SR_EXCLUDED = ("image_size", "channel_mult", "use_new_attention_order", "class_dropout_prob")


def sr_model_and_diffusion_defaults():
    """Defaults for super-resolution training (large_size/small_size replace image_size)."""
    res = {k: v for k, v in model_and_diffusion_defaults().items() if k not in _SR_EXCLUDED}
    res["large_size"] = 256
    res["small_size"] = 64
    return res
