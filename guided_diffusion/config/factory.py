"""
Factories: the UNet, the classifier, the super-resolution UNet and the diffusion process, built
from flag values (the original guided-diffusion API).

`create_model_and_diffusion`, `create_classifier_and_diffusion` and
`sr_create_model_and_diffusion` take exactly the keys of their defaults dicts (`config.defaults`)
as keyword arguments; their signatures are generated from those dicts, so a flag is spelled in
one place. Every diffusion process is built by `create_gaussian_diffusion` through
`diffusion_from_flags`.
"""

import functools
import inspect

from .defaults import (
    CHANNEL_MULT_BY_SIZE,
    CLASSIFIER_HEAD_CHANNELS,
    NUM_CLASSES,
    SR_CHANNEL_MULT_BY_SIZE,
    classifier_and_diffusion_defaults,
    diffusion_defaults,
    model_and_diffusion_defaults,
    sr_model_and_diffusion_defaults,
)
from .flags import parse_list_flag
from ..diffusion.respacing import SpacedDiffusion, space_timesteps
from ..diffusion.schedule import get_named_beta_schedule
from ..diffusion.training_losses import MEAN_LOSSES
from ..diffusion.types import LossType, ModelMeanType, ModelVarType
from ..models.encoder import EncoderUNetModel
from ..models.unet import SuperResModel, UNetModel

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


def _num_classes(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"--num_classes must be a positive number of classes, got {value!r}")
    return value


def check_class_dropout_prob(prob):
    """:raises ValueError: for a label dropout probability outside [0, 1), naming the flag."""
    if not 0 <= prob < 1:
        raise ValueError(f"--class_dropout_prob must be in [0, 1) (the chance that a training label becomes "
                         f"the null label; 0.1 to 0.2 is usual), got {prob}")


def _check_label_dropout(flags):
    """:raises ValueError: for label dropout on a model without labels."""
    if flags.get("class_dropout_prob", 0.0) and not flags["class_cond"]:
        raise ValueError(f"--class_dropout_prob {flags['class_dropout_prob']} drops class labels, but the "
                         f"model is unconditional: add --class_cond True (or drop --class_dropout_prob)")


def call_with_flags(fn, flags):
    """`fn(**flags)` restricted to the flags that are parameters of `fn`."""
    params = inspect.signature(fn).parameters
    return fn(**{k: v for k, v in flags.items() if k in params})


def _takes_flags(defaults):
    """
    Turn `build(flags: dict)` into a factory whose keyword-only parameters are the keys of
    `defaults()`, each defaulting to its value there (so a caller may leave newer flags out).

    :raises TypeError: for a keyword that is not a key of `defaults()`, like a plain function.
    """

    def wrap(build):
        @functools.wraps(build)
        def factory(**flags):
            known = defaults()
            unknown = sorted(set(flags) - set(known))
            if unknown:
                raise TypeError(
                    f"{build.__name__}() got unexpected keyword arguments {unknown}; it takes "
                    f"the keys of {defaults.__name__}()"
                )
            return build({**known, **flags})

        kind = inspect.Parameter.KEYWORD_ONLY
        params = [inspect.Parameter(k, kind, default=v) for k, v in defaults().items()]
        factory.__signature__ = inspect.Signature(params)
        return factory

    return wrap


# ---------------------------------------------------------------------------------------
# Model and diffusion factories


@_takes_flags(model_and_diffusion_defaults)
def create_model_and_diffusion(flags):
    """Build (UNetModel, SpacedDiffusion) from the keys of model_and_diffusion_defaults()."""
    return call_with_flags(create_model, flags), diffusion_from_flags(flags)


@_takes_flags(classifier_and_diffusion_defaults)
def create_classifier_and_diffusion(flags):
    """Build (EncoderUNetModel, SpacedDiffusion) from classifier_and_diffusion_defaults() keys."""
    return call_with_flags(create_classifier, flags), diffusion_from_flags(flags)


@_takes_flags(sr_model_and_diffusion_defaults)
def sr_create_model_and_diffusion(flags):
    """Build (SuperResModel, SpacedDiffusion) from sr_model_and_diffusion_defaults() keys."""
    return call_with_flags(sr_create_model, flags), diffusion_from_flags(flags)


def diffusion_from_flags(flags):
    """`create_gaussian_diffusion` from a dict holding the keys of diffusion_defaults()."""
    kwargs = {k: flags[k] for k in diffusion_defaults()}
    kwargs["steps"] = kwargs.pop("diffusion_steps")
    return create_gaussian_diffusion(**kwargs)


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
    num_classes=NUM_CLASSES,
    class_dropout_prob=0.0,
):
    """
    Build the diffusion UNet. `channel_mult` "" picks the size table (512, 256, 128, 64, 32);
    `attention_resolutions` lists resolutions (e.g. "32,16,8"); with `class_cond` the label
    embedding has `num_classes` rows, plus the null class when `class_dropout_prob` > 0.
    """
    channel_mult = _channel_mult(channel_mult, image_size, CHANNEL_MULT_BY_SIZE, "channel_mult")
    return UNetModel(**_unet_kwargs(locals()))


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
    num_classes=NUM_CLASSES,
):
    """
    Build the super-resolution UNet at `large_size`; channel_mult comes from large_size
    (512, 256, 64, 32). `small_size` is not needed: the low-resolution input is upsampled to
    large_size inside the network.
    """
    if large_size not in SR_CHANNEL_MULT_BY_SIZE:
        sizes = ", ".join(str(s) for s in sorted(SR_CHANNEL_MULT_BY_SIZE))
        raise ValueError(f"unsupported large size {large_size} (supported: {sizes})")
    flags = dict(locals(), image_size=large_size, channel_mult=SR_CHANNEL_MULT_BY_SIZE[large_size])
    return SuperResModel(**_unet_kwargs(flags))


def _unet_kwargs(flags):
    """UNetModel keyword arguments from the flags of create_model / sr_create_model."""
    check_class_dropout_prob(flags.get("class_dropout_prob", 0.0))
    _check_label_dropout(flags)
    image_size = flags["image_size"]
    return dict(
        image_size=image_size,
        in_channels=3,
        model_channels=flags["num_channels"],
        out_channels=6 if flags["learn_sigma"] else 3,
        num_res_blocks=flags["num_res_blocks"],
        attention_resolutions=_attention_ds(
            flags["attention_resolutions"], image_size, "attention_resolutions"
        ),
        dropout=flags["dropout"],
        channel_mult=flags["channel_mult"],
        num_classes=_num_classes(flags["num_classes"]) if flags["class_cond"] else None,
        null_class=bool(flags.get("class_dropout_prob", 0.0)),
        use_checkpoint=flags["use_checkpoint"],
        use_fp16=flags["use_fp16"],
        num_heads=flags["num_heads"],
        num_head_channels=flags["num_head_channels"],
        num_heads_upsample=flags["num_heads_upsample"],
        use_scale_shift_norm=flags["use_scale_shift_norm"],
        resblock_updown=flags["resblock_updown"],
        use_new_attention_order=flags.get("use_new_attention_order", False),
    )


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
    num_classes=NUM_CLASSES,
):
    """Build the noisy-image classifier (64 channels per head, `num_classes` logits)."""
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
        out_channels=_num_classes(num_classes),
        num_res_blocks=classifier_depth,
        attention_resolutions=attention_ds,
        channel_mult=channel_mult,
        use_fp16=classifier_use_fp16,
        num_head_channels=CLASSIFIER_HEAD_CHANNELS,
        use_scale_shift_norm=classifier_use_scale_shift_norm,
        resblock_updown=classifier_resblock_updown,
        pool=classifier_pool,
    )


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
    loss="l2",
):
    """
    Build the diffusion process; always a SpacedDiffusion (all steps when respacing is "").
    `loss` "l2" or "l1" is the norm of the mean term (not used by the bound alone, `use_kl`).
    """
    if loss not in MEAN_LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(MEAN_LOSSES)}, got {loss!r}")
    if use_kl and loss != "l2":
        raise ValueError(f"--loss {loss} has no effect with --use_kl True (the bound alone is trained)")
    if use_kl:
        loss_type = LossType.RESCALED_KL
    elif rescale_learned_sigmas:
        loss_type = LossType.RESCALED_MSE
    else:
        loss_type = LossType.MSE
    if learn_sigma:
        model_var_type = ModelVarType.LEARNED_RANGE
    elif sigma_small:
        model_var_type = ModelVarType.FIXED_SMALL
    else:
        model_var_type = ModelVarType.FIXED_LARGE
    betas = get_named_beta_schedule(noise_schedule, steps)
    return SpacedDiffusion(
        use_timesteps=space_timesteps(steps, timestep_respacing or [steps], betas=betas),
        betas=betas,
        model_mean_type=ModelMeanType.START_X if predict_xstart else ModelMeanType.EPSILON,
        model_var_type=model_var_type,
        loss_type=loss_type,
        rescale_timesteps=rescale_timesteps,
        mean_loss=loss,
    )
