"""
Default flags and factories for the diffusion model, the classifier and the
super-resolution model, plus the argparse helpers (the original guided-diffusion API).

Each defaults dict is the single source of truth for its factory's parameters
(tests/test_script_util.py checks that they agree).
"""

from .flags import parse_list_flag
from ..models.encoder import EncoderUNetModel
from ..models.unet import SuperResModel, UNetModel

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


def diffusion_defaults():
    """Defaults for the diffusion process (shared by image and classifier training)."""
    return dict(
        learn_sigma=False,
        diffusion_steps=1000,
        noise_schedule="linear",
        timestep_respacing="",
        use_kl=False,
        predict_xstart=False,
        rescale_timesteps=False,
        rescale_learned_sigmas=False,
    )


def classifier_defaults():
    """Defaults for classifier models (classifier_channel_mult is new: "" means the size table)."""
    return dict(
        image_size=64,
        classifier_use_fp16=False,
        classifier_width=128,
        classifier_depth=2,
        classifier_attention_resolutions="32,16,8",  # 16
        classifier_use_scale_shift_norm=True,  # False
        classifier_resblock_updown=True,  # False
        classifier_pool="attention",
        classifier_channel_mult="",
    )


def model_and_diffusion_defaults():
    """Defaults for image training."""
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
    )
    res.update(diffusion_defaults())
    return res


def classifier_and_diffusion_defaults():
    """Defaults for classifier training: classifier flags plus diffusion flags."""
    res = classifier_defaults()
    res.update(diffusion_defaults())
    return res


_SR_EXCLUDED = ("image_size", "channel_mult", "use_new_attention_order")


def sr_model_and_diffusion_defaults():
    """Defaults for super-resolution training (large_size/small_size replace image_size)."""
    res = {k: v for k, v in model_and_diffusion_defaults().items() if k not in _SR_EXCLUDED}
    res["large_size"] = 256
    res["small_size"] = 64
    return res


# ---------------------------------------------------------------------------------------
# Flag-value helpers


def _channel_mult(value, image_size, table, flag):
    if value in ("", None):
        if image_size not in table:
            sizes = ", ".join(str(s) for s in sorted(table))
            raise ValueError(
                f"unsupported image size {image_size}: no default channel_mult (sizes with a "
                f"default: {sizes}); pass --{flag} (e.g. '1,2,2,2')"
            )
        return table[image_size]
    return parse_list_flag(value, flag)


def _attention_ds(attention_resolutions, image_size, flag):
    """Resolutions ("32,16,8") -> downsample rates image_size // res, as the original."""
    resolutions = parse_list_flag(attention_resolutions, flag)
    for res in resolutions:
        if res != int(res) or res <= 0:
            raise ValueError(f"--{flag} must list positive integer resolutions, got {res!r}")
    return tuple(image_size // int(res) for res in resolutions)


# ---------------------------------------------------------------------------------------
# Factories


def create_model_and_diffusion(
    image_size,
    class_cond,
    learn_sigma,
    num_channels,
    num_res_blocks,
    channel_mult,
    num_heads,
    num_head_channels,
    num_heads_upsample,
    attention_resolutions,
    dropout,
    diffusion_steps,
    noise_schedule,
    timestep_respacing,
    use_kl,
    predict_xstart,
    rescale_timesteps,
    rescale_learned_sigmas,
    use_checkpoint,
    use_scale_shift_norm,
    resblock_updown,
    use_fp16,
    use_new_attention_order,
):
    """Build (UNetModel, SpacedDiffusion) from the keys of model_and_diffusion_defaults()."""
    model = create_model(
        image_size,
        num_channels,
        num_res_blocks,
        channel_mult=channel_mult,
        learn_sigma=learn_sigma,
        class_cond=class_cond,
        use_checkpoint=use_checkpoint,
        attention_resolutions=attention_resolutions,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
        dropout=dropout,
        resblock_updown=resblock_updown,
        use_fp16=use_fp16,
        use_new_attention_order=use_new_attention_order,
    )
    diffusion = create_gaussian_diffusion(
        steps=diffusion_steps,
        learn_sigma=learn_sigma,
        noise_schedule=noise_schedule,
        use_kl=use_kl,
        predict_xstart=predict_xstart,
        rescale_timesteps=rescale_timesteps,
        rescale_learned_sigmas=rescale_learned_sigmas,
        timestep_respacing=timestep_respacing,
    )
    return model, diffusion


def create_model(
    image_size,
    num_channels,
    num_res_blocks,
    channel_mult="",
    learn_sigma=False,
    class_cond=False,
    use_checkpoint=False,
    attention_resolutions="16",
    num_heads=1,
    num_head_channels=-1,
    num_heads_upsample=-1,
    use_scale_shift_norm=False,
    dropout=0,
    resblock_updown=False,
    use_fp16=False,
    use_new_attention_order=False,
):
    """
    Build the diffusion UNet. `channel_mult` "" picks the size table (512, 256, 128, 64, 32);
    `attention_resolutions` lists resolutions (e.g. "32,16,8").
    """
    return UNetModel(
        image_size=image_size,
        in_channels=3,
        model_channels=num_channels,
        out_channels=(3 if not learn_sigma else 6),
        num_res_blocks=num_res_blocks,
        attention_resolutions=_attention_ds(attention_resolutions, image_size, "attention_resolutions"),
        dropout=dropout,
        channel_mult=_channel_mult(channel_mult, image_size, CHANNEL_MULT_BY_SIZE, "channel_mult"),
        num_classes=(NUM_CLASSES if class_cond else None),
        use_checkpoint=use_checkpoint,
        use_fp16=use_fp16,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
        resblock_updown=resblock_updown,
        use_new_attention_order=use_new_attention_order,
    )


def create_classifier_and_diffusion(
    image_size,
    classifier_use_fp16,
    classifier_width,
    classifier_depth,
    classifier_attention_resolutions,
    classifier_use_scale_shift_norm,
    classifier_resblock_updown,
    classifier_pool,
    learn_sigma,
    diffusion_steps,
    noise_schedule,
    timestep_respacing,
    use_kl,
    predict_xstart,
    rescale_timesteps,
    rescale_learned_sigmas,
    classifier_channel_mult="",
):
    """Build (EncoderUNetModel, SpacedDiffusion) from classifier_and_diffusion_defaults() keys."""
    classifier = create_classifier(
        image_size,
        classifier_use_fp16,
        classifier_width,
        classifier_depth,
        classifier_attention_resolutions,
        classifier_use_scale_shift_norm,
        classifier_resblock_updown,
        classifier_pool,
        classifier_channel_mult=classifier_channel_mult,
    )
    diffusion = create_gaussian_diffusion(
        steps=diffusion_steps,
        learn_sigma=learn_sigma,
        noise_schedule=noise_schedule,
        use_kl=use_kl,
        predict_xstart=predict_xstart,
        rescale_timesteps=rescale_timesteps,
        rescale_learned_sigmas=rescale_learned_sigmas,
        timestep_respacing=timestep_respacing,
    )
    return classifier, diffusion


def create_classifier(
    image_size,
    classifier_use_fp16,
    classifier_width,
    classifier_depth,
    classifier_attention_resolutions,
    classifier_use_scale_shift_norm,
    classifier_resblock_updown,
    classifier_pool,
    classifier_channel_mult="",
):
    """Build the noisy-image classifier (64 channels per head, 1000 classes)."""
    attention_ds = _attention_ds(
        classifier_attention_resolutions, image_size, "classifier_attention_resolutions"
    )
    channel_mult = _channel_mult(
        classifier_channel_mult, image_size, CHANNEL_MULT_BY_SIZE, "classifier_channel_mult"
    )
    _check_classifier_heads(image_size, classifier_width, channel_mult, attention_ds)
    return EncoderUNetModel(
        image_size=image_size,
        in_channels=3,
        model_channels=classifier_width,
        out_channels=1000,
        num_res_blocks=classifier_depth,
        attention_resolutions=attention_ds,
        channel_mult=channel_mult,
        use_fp16=classifier_use_fp16,
        num_head_channels=CLASSIFIER_HEAD_CHANNELS,
        use_scale_shift_norm=classifier_use_scale_shift_norm,
        resblock_updown=classifier_resblock_updown,
        pool=classifier_pool,
    )


CLASSIFIER_HEAD_CHANNELS = 64


def _check_classifier_heads(image_size, width, channel_mult, attention_ds):
    """The classifier uses 64 channels per attention head: every attended level must fit."""
    levels = {len(channel_mult) - 1: "the middle block"}  # the middle block always attends
    for level in range(len(channel_mult)):
        if 2**level in attention_ds:
            levels.setdefault(level, f"resolution {image_size // 2**level}")
    for level, where in sorted(levels.items()):
        ch = int(channel_mult[level] * width)
        if ch % CLASSIFIER_HEAD_CHANNELS:
            raise ValueError(
                f"classifier attention at {where} has {ch} channels, not a multiple of the "
                f"{CLASSIFIER_HEAD_CHANNELS} channels per head the classifier uses: choose "
                f"--classifier_width (now {width}) or --classifier_channel_mult so that it is"
            )


def sr_create_model_and_diffusion(
    large_size,
    small_size,
    class_cond,
    learn_sigma,
    num_channels,
    num_res_blocks,
    num_heads,
    num_head_channels,
    num_heads_upsample,
    attention_resolutions,
    dropout,
    diffusion_steps,
    noise_schedule,
    timestep_respacing,
    use_kl,
    predict_xstart,
    rescale_timesteps,
    rescale_learned_sigmas,
    use_checkpoint,
    use_scale_shift_norm,
    resblock_updown,
    use_fp16,
):
    """Build (SuperResModel, SpacedDiffusion) from sr_model_and_diffusion_defaults() keys."""
    model = sr_create_model(
        large_size,
        small_size,
        num_channels,
        num_res_blocks,
        learn_sigma=learn_sigma,
        class_cond=class_cond,
        use_checkpoint=use_checkpoint,
        attention_resolutions=attention_resolutions,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
        dropout=dropout,
        resblock_updown=resblock_updown,
        use_fp16=use_fp16,
    )
    diffusion = create_gaussian_diffusion(
        steps=diffusion_steps,
        learn_sigma=learn_sigma,
        noise_schedule=noise_schedule,
        use_kl=use_kl,
        predict_xstart=predict_xstart,
        rescale_timesteps=rescale_timesteps,
        rescale_learned_sigmas=rescale_learned_sigmas,
        timestep_respacing=timestep_respacing,
    )
    return model, diffusion


def sr_create_model(
    large_size,
    small_size,
    num_channels,
    num_res_blocks,
    learn_sigma,
    class_cond,
    use_checkpoint,
    attention_resolutions,
    num_heads,
    num_head_channels,
    num_heads_upsample,
    use_scale_shift_norm,
    dropout,
    resblock_updown,
    use_fp16,
):
    """Build the super-resolution UNet; channel_mult comes from large_size (512/256/64/32)."""
    _ = small_size  # the network is resolution-agnostic in its input size
    if large_size not in SR_CHANNEL_MULT_BY_SIZE:
        sizes = ", ".join(str(s) for s in sorted(SR_CHANNEL_MULT_BY_SIZE))
        raise ValueError(f"unsupported large size {large_size} (supported: {sizes})")
    return SuperResModel(
        image_size=large_size,
        in_channels=3,
        model_channels=num_channels,
        out_channels=(3 if not learn_sigma else 6),
        num_res_blocks=num_res_blocks,
        attention_resolutions=_attention_ds(attention_resolutions, large_size, "attention_resolutions"),
        dropout=dropout,
        channel_mult=SR_CHANNEL_MULT_BY_SIZE[large_size],
        num_classes=(NUM_CLASSES if class_cond else None),
        use_checkpoint=use_checkpoint,
        num_heads=num_heads,
        num_head_channels=num_head_channels,
        num_heads_upsample=num_heads_upsample,
        use_scale_shift_norm=use_scale_shift_norm,
        resblock_updown=resblock_updown,
        use_fp16=use_fp16,
    )


def create_gaussian_diffusion(
    *,
    steps=1000,
    learn_sigma=False,
    sigma_small=False,
    noise_schedule="linear",
    use_kl=False,
    predict_xstart=False,
    rescale_timesteps=False,
    rescale_learned_sigmas=False,
    timestep_respacing="",
):
    """Build the diffusion process; always a SpacedDiffusion (all steps when respacing is "")."""
    from ..diffusion import gaussian as gd
    from ..diffusion.respacing import SpacedDiffusion, space_timesteps

    betas = gd.get_named_beta_schedule(noise_schedule, steps)
    if use_kl:
        loss_type = gd.LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = gd.LossType.RESCALED_MSE
    else:
        loss_type = gd.LossType.MSE
    if not timestep_respacing:
        timestep_respacing = [steps]
    if learn_sigma:
        model_var_type = gd.ModelVarType.LEARNED_RANGE
    elif sigma_small:
        model_var_type = gd.ModelVarType.FIXED_SMALL
    else:
        model_var_type = gd.ModelVarType.FIXED_LARGE
    return SpacedDiffusion(
        use_timesteps=space_timesteps(steps, timestep_respacing, betas=betas),
        betas=betas,
        model_mean_type=(gd.ModelMeanType.EPSILON if not predict_xstart else gd.ModelMeanType.START_X),
        model_var_type=model_var_type,
        loss_type=loss_type,
        rescale_timesteps=rescale_timesteps,
    )
