"""Checkpoint loading for inference: strict loads whose every failure names the flag to fix."""

from ..config.checkpoint import load_model_checkpoint
from ..config.defaults import classifier_defaults, model_and_diffusion_defaults, sr_model_and_diffusion_defaults
from ..config.factory import create_classifier, create_model_and_diffusion, sr_create_model_and_diffusion
from ..config.flags import args_to_dict
from ..runtime import distributed as dist_util

# kind -> (defaults dict, factory, checkpoint flag, fp16 flag)
NETWORKS = {
    "model": (model_and_diffusion_defaults, create_model_and_diffusion, "model_path", "use_fp16"),
    "sr": (sr_model_and_diffusion_defaults, sr_create_model_and_diffusion, "model_path", "use_fp16"),
    "classifier": (classifier_defaults, create_classifier, "classifier_path", "classifier_use_fp16"),
}


def load_checkpoint(model, path, flags, kind, flag_name, check=None):
    """
    Load `path` into `model` strictly, turning every failure into a ValueError that names the flag.

    :param model: the freshly built module.
    :param path: the checkpoint path given by the user.
    :param flags: dict of the flags the model was built from (for the mismatch hint).
    :param kind: "model", "classifier" or "sr".
    :param flag_name: e.g. "--model_path".
    :param check: optional callable(state_dict) raising ValueError with a more specific message.
    :raises ValueError: for an empty path, a missing or unreadable file, or a layout mismatch.
    """
    if not path:
        raise ValueError(f"{flag_name} is required")
    try:
        state = dist_util.load_state_dict(path, map_location="cpu")
    except FileNotFoundError as e:
        raise ValueError(f"{flag_name} {path!r}: {e}") from None
    except Exception as e:  # torch.load reports unpickling and zip errors with many types
        raise ValueError(f"{flag_name} {path!r} is not a readable PyTorch checkpoint "
                         f"({type(e).__name__}: {e})") from None
    if check is not None:
        check(state)
    try:
        load_model_checkpoint(model, state, flags=flags, kind=kind)
    except ValueError as e:
        raise ValueError(f"{flag_name} {path!r} does not fit the {kind} built from the flags:\n{e}") from None


def load_for_inference(model, path, flags, kind, flag_name, use_fp16, check=None):
    """
    `load_checkpoint`, then move the network to this rank's device, convert it to fp16 when asked,
    switch to eval mode and freeze its parameters (sampling needs no parameter gradients; the
    classifier's input gradient still flows).

    :return: the model.
    """
    load_checkpoint(model, path, flags, kind, flag_name, check=check)
    model.to(dist_util.dev())
    if use_fp16:
        model.convert_to_fp16()
    model.eval()
    model.requires_grad_(False)
    return model


def build_from_flags(args, kind="model"):
    """
    Build a network from a parsed namespace: its defaults dict's keys are read from `args`.

    :param kind: "model" (UNet + diffusion), "sr" (super-resolution UNet + diffusion) or
                 "classifier" (no diffusion).
    :return: (network, diffusion or None, the flags dict that built them).
    """
    defaults, factory, _, _ = NETWORKS[kind]
    flags = args_to_dict(args, defaults().keys())
    built = factory(**flags)
    network, diffusion = built if isinstance(built, tuple) else (built, None)
    return network, diffusion, flags


def build_and_load(args, kind="model", check=None):
    """
    `build_from_flags`, then `load_for_inference` from the kind's checkpoint flag (--model_path
    or --classifier_path) with its fp16 flag.

    :return: (network, diffusion or None).
    """
    network, diffusion, flags = build_from_flags(args, kind)
    _, _, path_flag, fp16_flag = NETWORKS[kind]
    load_for_inference(network, getattr(args, path_flag), flags, kind, f"--{path_flag}",
                       getattr(args, fp16_flag), check=check)
    return network, diffusion
