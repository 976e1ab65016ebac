"""
Strict checkpoint loading with helpful errors.

`load_model_checkpoint` loads a plain state dict (as released by the original
guided-diffusion or written by this package's training) into a model with `strict=True`. When keys
or shapes disagree it raises `CheckpointMismatchError` (a ValueError) that lists the
first missing / unexpected / shape-mismatched keys and names the flags that probably
differ: read off the checkpoint's layout and, when the current flags are known, confirmed
by rebuilding candidate models on the meta device (no memory is allocated).
"""

import os

import torch as th

from . import factory
from .defaults import (
    CHANNEL_MULT_BY_SIZE,
    classifier_and_diffusion_defaults,
    model_and_diffusion_defaults,
    sr_model_and_diffusion_defaults,
)
from .flags import parse_list_flag
from .run_record import find_run_record
from ..models.layout import compare_state_dicts, infer_flags, layout_shape
from ..runtime.distributed import load_state_dict

_SHOW = 5  # keys listed per category

# The flags of each kind, as its factory takes them.
_KIND_FLAGS = {
    "model": model_and_diffusion_defaults,
    "classifier": classifier_and_diffusion_defaults,
    "sr": sr_model_and_diffusion_defaults,
}
# Flags a checkpoint's parameters cannot tell, per kind (the network is convolutional and never
# sees the schedule); the run record holds them.
_NOT_IN_PARAMETERS = {
    "model": ("image_size", "noise_schedule", "diffusion_steps"),
    "classifier": ("image_size", "noise_schedule", "diffusion_steps"),
    "sr": ("large_size", "small_size", "noise_schedule", "diffusion_steps"),
}
# Recorded flags that do not shape the network or the process it was trained for.
_RUNTIME_FLAGS = ("timestep_respacing", "use_fp16", "classifier_use_fp16", "use_checkpoint")

_KIND_ALIASES = {
    "model": "model",
    "diffusion": "model",
    "classifier": "classifier",
    "sr": "sr",
    "super_res": "sr",
    "upsampler": "sr",
}

# generic flag name -> flag name for the classifier / super-res factories
_FLAG_NAMES = {
    "model": {},
    "classifier": {
        "num_channels": "classifier_width",
        "num_res_blocks": "classifier_depth",
        "attention_resolutions": "classifier_attention_resolutions",
        "use_scale_shift_norm": "classifier_use_scale_shift_norm",
        "resblock_updown": "classifier_resblock_updown",
        "channel_mult": "classifier_channel_mult",
        "pool": "classifier_pool",
        "use_fp16": "classifier_use_fp16",
    },
    "sr": {"image_size": "large_size"},
}


class CheckpointMismatchError(ValueError):
    """
    A checkpoint does not fit the model. Attributes: `missing`, `unexpected` (key lists),
    `mismatched` (list of (key, checkpoint shape, model shape)) and `suggestions`
    (list of (flag, value, reason)).
    """

    def __init__(self, message, missing=(), unexpected=(), mismatched=(), suggestions=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        self.suggestions = list(suggestions)


def state_dict_from_file(path):
    """
    Load a plain state dict from `path` (local or blobfile URL) onto the CPU through
    `runtime.distributed.load_state_dict` (`weights_only=True`; under MPI every rank must call
    it, rank 0 reads the file).

    :raises FileNotFoundError: if the file cannot be read; the message names it.
    :raises ValueError: if the file does not hold a dict of tensors.
    """
    state_dict = load_state_dict(path, map_location="cpu")
    if not isinstance(state_dict, dict) or not all(th.is_tensor(v) for v in state_dict.values()):
        raise ValueError(f"{os.fspath(path)!r} does not contain a plain state dict of tensors")
    return state_dict


def load_model_checkpoint(model, path_or_state_dict, flags=None, kind="model", path=None):
    """
    Load a checkpoint into `model` strictly (no renaming, no missing or extra keys).

    :param model: the network (UNetModel, SuperResModel or EncoderUNetModel).
    :param path_or_state_dict: a file path or an already loaded state dict.
    :param flags: optional dict of the flags the model was built with (e.g.
        `args_to_dict(args, model_and_diffusion_defaults().keys())`); lets the error
        name flag values that make the model match the checkpoint.
    :param kind: "model", "classifier" or "sr" (super-resolution): which factory the
        flags belong to.
    :param path: the file an already loaded state dict came from; like a path given as
        `path_or_state_dict`, its folder is searched for the run record (`run_record`).
    :return: the model.
    :raises CheckpointMismatchError: when keys or shapes differ; the message names the flags
        that probably differ, the run record's values where there is one, and the flags the
        parameters cannot tell (image size, schedule) where there is none.
    """
    if kind not in _KIND_ALIASES:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(_KIND_ALIASES)}")
    kind = _KIND_ALIASES[kind]
    if kind == "model" and (type(model).__name__ == "SuperResModel" or "large_size" in (flags or {})):
        kind = "sr"
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = path_or_state_dict
        state_dict = state_dict_from_file(path)
    else:
        state_dict = path_or_state_dict
    source = "state dict" if path is None else repr(os.fspath(path))
    missing, unexpected, mismatched = compare_state_dicts(model.state_dict(), state_dict)
    if missing or unexpected or mismatched:
        record, record_path = find_run_record(path) if path is not None else ({}, None)
        suggestions, exact = suggest_flags(
            state_dict, model.state_dict(), flags, kind, record=record, record_path=record_path
        )
        message = _format_error(source, kind, missing, unexpected, mismatched, suggestions, exact)
        message += "\n" + _not_in_parameters_note(kind, flags, record)
        raise CheckpointMismatchError(message, missing, unexpected, mismatched, suggestions)
    model.load_state_dict(state_dict, strict=True)
    return model


def _format_error(source, kind, missing, unexpected, mismatched, suggestions, exact):
    def fmt_keys(keys):
        shown = ", ".join(keys[:_SHOW])
        return shown + (f", ... ({len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")

    lines = [
        f"checkpoint {source} does not match the {kind!r} network: {len(missing)} missing, "
        f"{len(unexpected)} unexpected and {len(mismatched)} shape-mismatched keys"
    ]
    if missing:
        lines.append(f"  missing from the checkpoint: {fmt_keys(missing)}")
    if unexpected:
        lines.append(f"  unexpected in the checkpoint: {fmt_keys(unexpected)}")
    if mismatched:
        shown = [f"{k} checkpoint {list(c)} vs model {list(m)}" for k, c, m in mismatched[:_SHOW]]
        more = f"; ... ({len(mismatched) - _SHOW} more)" if len(mismatched) > _SHOW else ""
        lines.append("  shape mismatch: " + "; ".join(shown) + more)
    if suggestions:
        lines.append("flags that probably differ:")
        for flag, value, reason in suggestions:
            if flag == "kind":
                lines.append(f"  not a flag: {reason}")
            else:
                lines.append(f"  --{flag} {_flag_text(value)}  ({reason})")
    else:
        lines.append("no flag change explains the difference; is this the right file and kind?")
    if exact:
        lines.append("with these changes the model matches the checkpoint exactly: " + exact)
    return "\n".join(lines)


def _not_in_parameters_note(kind, flags, record):
    """A line naming the flags that only the run record can tell, or what the record gave."""
    kind = _KIND_ALIASES.get(kind, kind)
    names = _NOT_IN_PARAMETERS[kind]
    unknown = [n for n in names if n not in record]
    if not unknown:
        return f"the run record gives {', '.join(f'--{n} {record[n]}' for n in names)}"
    now = ", ".join(f"--{n} {flags[n]}" for n in unknown if n in (flags or {}))
    return (
        f"the parameters cannot tell {', '.join('--' + n for n in unknown)} and no run record "
        f"(args.json or samples_*.json) beside the checkpoint gives them: pass the values it was "
        f"trained with" + (f" (now {now})" if now else "")
    )


def _flag_text(value):
    if isinstance(value, (tuple, list)):
        return ",".join(_num_text(v) for v in value)
    return str(value)


def _num_text(v):
    return str(int(v)) if float(v).is_integer() else str(v)


# ------------------------------------------------------------------------------------
# Candidate rebuilds


_FACTORIES = {
    "model": factory.create_model,
    "classifier": factory.create_classifier,
    "sr": factory.sr_create_model,
}


def _layout(kind, flags):
    """Shapes of the model built from flags on the meta device, or None if it cannot be built."""
    try:
        with th.device("meta"):
            model = factory.call_with_flags(_FACTORIES[kind], flags)
    except (ValueError, TypeError, AssertionError, ZeroDivisionError):
        return None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _distance(layout, ckpt):
    if layout is None:
        return float("inf")
    missing, unexpected, mismatched = compare_state_dicts(layout, ckpt)
    return len(missing) + len(unexpected) + len(mismatched)


def _value_as_flag(generic, value, flags, name):
    """Convert an inferred value to the flag's textual form (None when it cannot be a flag)."""
    if name not in flags:
        return None
    if generic == "channel_mult":
        current = flags.get(name)
        try:
            if current in ("", None):
                current = CHANNEL_MULT_BY_SIZE.get(flags.get("image_size"))
            else:
                current = parse_list_flag(current, name)
        except ValueError:
            current = None
        if current is not None and tuple(current) == tuple(value):
            return None
        return _flag_text(value)
    if generic == "attention_resolutions":
        try:
            if set(parse_list_flag(flags[name], name)) == set(parse_list_flag(value, name)):
                return None
        except ValueError:
            pass
    return value


def suggest_flags(ckpt_state_dict, model_state_dict, flags=None, kind="model", record=None,
                  record_path=None):
    """
    Flags that probably differ between a model and a checkpoint.

    :param flags: the flags the model was built from, or None when unknown.
    :param record: the flags of the checkpoint's run record (`run_record.find_run_record`);
        its values come first, read off `record_path`.
    :return: (list of (flag, value, reason), text of the flag changes that give an exact
              match or "" when none was found).
    """
    kind = _KIND_ALIASES.get(kind, kind)
    names = _FLAG_NAMES.get(kind, {})
    ckpt = {k: layout_shape(v) for k, v in ckpt_state_dict.items()}
    image_flag = "large_size" if kind == "sr" else "image_size"
    record = {k: v for k, v in (record or {}).items() if k in _KIND_FLAGS[kind]() and k not in _RUNTIME_FLAGS}
    image_size = record.get(image_flag, (flags or {}).get(image_flag))
    inferred_ckpt = infer_flags(ckpt, image_size)
    inferred_model = infer_flags(model_state_dict, image_size)

    suggestions = _record_suggestions(record, record_path, flags, kind, inferred_ckpt)
    known = {n for n, _, _ in suggestions}
    for generic, (value, reason) in inferred_ckpt.items():
        name = names.get(generic, generic)
        model_value = inferred_model.get(generic, (None,))[0]
        if name in known:
            continue
        if generic == "attention_resolutions" and image_flag not in record:
            reason += f" at --{image_flag} {image_size}"
        if flags is not None:
            value = _value_as_flag(generic, value, flags, name)
            if value is None or flags.get(name) == value:
                continue
        elif model_value == value:
            continue
        suggestions.append((name, value, reason))
    if "input_blocks.0.0.weight" in ckpt and "input_blocks.0.0.weight" in model_state_dict:
        c_in = ckpt["input_blocks.0.0.weight"][1]
        m_in = layout_shape(model_state_dict["input_blocks.0.0.weight"])[1]
        if c_in != m_in:
            hint = "a super-resolution model (kind 'sr')" if c_in == 6 else "a base model"
            reason = f"the checkpoint's first conv takes {c_in} channels, the model's {m_in}: it is {hint}"
            suggestions.append(("kind", "sr" if c_in == 6 else "model", reason))

    if flags is None:
        return suggestions, ""
    return _confirm_with_rebuilds(ckpt, flags, kind, names, suggestions)


def _record_suggestions(record, record_path, flags, kind, inferred_ckpt):
    """
    The run record's values where they differ from `flags`; without flags, those the parameters
    cannot tell and those the parameters show differently from the model.
    """
    if flags is None:
        wanted = set(_NOT_IN_PARAMETERS[kind]) | {_FLAG_NAMES[kind].get(g, g) for g in inferred_ckpt}
        chosen = {k: v for k, v in record.items() if k in wanted}
    else:
        chosen = {k: v for k, v in record.items() if flags.get(k) != v}
    return [(k, v, f"recorded in {record_path}") for k, v in chosen.items()]


def _confirm_with_rebuilds(ckpt, flags, kind, names, suggestions):
    base = _distance(_layout(kind, flags), ckpt)
    flag_changes = [(n, v) for n, v, _ in suggestions if n in flags]
    if flag_changes:
        combined = dict(flags, **dict(flag_changes))
        if _distance(_layout(kind, combined), ckpt) == 0:
            return suggestions, " ".join(f"--{n} {_flag_text(v)}" for n, v in flag_changes)
    # One flag at a time: bool toggles, depth and size alternatives.
    candidates = []
    for generic in ("class_cond", "learn_sigma", "use_scale_shift_norm", "resblock_updown"):
        name = names.get(generic, generic)
        if isinstance(flags.get(name), bool):
            candidates.append((name, not flags[name]))
    depth = names.get("num_res_blocks", "num_res_blocks")
    if isinstance(flags.get(depth), int):
        candidates += [(depth, d) for d in range(1, 7) if d != flags[depth]]
    if kind == "classifier":
        pool = names["pool"]
        pools = ("adaptive", "attention", "spatial", "spatial_v2")
        candidates += [(pool, p) for p in pools if p != flags.get(pool)]
        if "image_size" in flags:
            candidates += [("image_size", s) for s in (32, 64, 128, 256, 512) if s != flags["image_size"]]
    known = {n for n, _, _ in suggestions}
    scored = []
    for name, value in candidates:
        if name in known:
            continue
        dist = _distance(_layout(kind, dict(flags, **{name: value})), ckpt)
        if dist == 0:
            suggestions.append((name, value, "rebuilding with this flag matches exactly"))
            return suggestions, f"--{name} {_flag_text(value)}"
        if dist < base:
            scored.append((dist, name, value))
    scored.sort(key=lambda s: s[0])
    for dist, name, value in scored[:3]:
        reason = f"rebuilding with this flag leaves {dist} differences instead of {base}"
        suggestions.append((name, value, reason))
    return suggestions, ""
