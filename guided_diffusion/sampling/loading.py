"""Checkpoint loading for inference: strict loads whose every failure names the flag to fix."""

from ..config.checkpoint import load_model_checkpoint
from ..runtime import distributed as dist_util


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
