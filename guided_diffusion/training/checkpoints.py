"""
The files of a training checkpoint: choosing the checkpoint to resume (and saying what was found),
loading model and EMA files strictly (a mismatch names the flags that differ), writing files
atomically, and clearing the partial files an interrupted save left behind.

File names and the side file are defined in `state.py`.
"""

import os

import torch as th

from ..config.checkpoint import load_model_checkpoint
from ..runtime import fileio, logger
from . import state as train_state

# Files the logger writes into the output folder; they say nothing about checkpoints.
_LOG_PREFIXES = ("log", "progress")
_LOG_SUFFIXES = (".txt", ".csv", ".json")


def save_state_file(state_dict, path):
    """`torch.save` written atomically for a local path, or through blobfile for a URL."""
    if "://" in path:
        import blobfile as bf  # optional dependency, needed only for blob storage URLs

        with bf.BlobFile(path, "wb") as f:
            th.save(state_dict, f)
    else:
        fileio.atomic_torch_save(state_dict, path)


def load_model_state(model, state_dict, path, flags=None, kind="model"):
    """
    Load `state_dict` into `model` strictly.

    :param path: the file it came from (named in the error).
    :param flags: the flags that built `model`, so the error can name the ones that differ.
    :param kind: "model", "classifier" or "sr".
    :raises ValueError: when keys or shapes differ.
    """
    try:
        return load_model_checkpoint(model, state_dict, flags=flags, kind=kind)
    except ValueError as e:
        raise type(e)(f"{path}: {e}") from None


def find_ema_checkpoint(main_checkpoint, step, rate):
    """Path of `ema_<rate>_<step>.pt` beside `main_checkpoint`, or None when absent."""
    if main_checkpoint is None:
        return None
    directory = os.path.dirname(main_checkpoint)
    for name in (train_state.ema_filename(rate, step), f"ema_{rate}_{step:06d}.pt"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def check_resume_path(path, parse_step=train_state.parse_resume_step_from_filename):
    """
    :return: the global step of an explicit `--resume_checkpoint` path.
    :raises FileNotFoundError: when a local path does not exist.
    :raises ValueError: when its name has no step number.
    """
    if "://" not in path and not os.path.isfile(path):
        raise FileNotFoundError(f"resume checkpoint {path!r} does not exist")
    return parse_step(path)


def resolve_resume_checkpoint(resume_checkpoint, ema_rates=(), log_dir=None, hooked=None,
                              parse_step=train_state.parse_resume_step_from_filename):
    """
    The checkpoint to resume from: `hooked` (one found by other means) first, then the flag.

    :param resume_checkpoint: "", a path, or "auto" (the newest complete checkpoint in `log_dir`;
        what was found is logged).
    :param ema_rates: the run's EMA rates (a complete checkpoint has a file for each).
    :param parse_step: reads the step from a checkpoint file name.
    :return: a path or None.
    :raises FileNotFoundError: when an explicit path does not exist.
    :raises ValueError: when its name has no step number.
    """
    if hooked:
        return hooked
    if not resume_checkpoint:
        return None
    if resume_checkpoint == "auto":
        path, message = find_auto_checkpoint(log_dir, ema_rates)
        logger.log(message)
        return path
    check_resume_path(resume_checkpoint, parse_step)
    return resume_checkpoint


def find_auto_checkpoint(log_dir, ema_rates=()):
    """
    `--resume_checkpoint auto`: the newest complete checkpoint in `log_dir`.

    :return: (path or None, a one-line message saying what was found and what happens next).
    """
    path = train_state.find_latest_checkpoint(log_dir, ema_rates)
    if path is not None:
        step = train_state.parse_resume_step_from_filename(path)
        return path, f"--resume_checkpoint auto: resuming from {path} (step {step})"
    others = _files_of_other_runs(log_dir)
    if not others:
        return None, f"--resume_checkpoint auto: {log_dir} holds no checkpoint yet: starting at step 0"
    shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
    why = _why_incomplete(log_dir, ema_rates)
    return None, (
        f"--resume_checkpoint auto: found no complete checkpoint in {log_dir}, which holds files of "
        f"other runs ({shown}){why}: starting at step 0 in this folder"
    )


def _files_of_other_runs(log_dir):
    if not log_dir or not os.path.isdir(log_dir):
        return []
    names = sorted(os.listdir(log_dir))
    return [n for n in names if not (n.startswith(_LOG_PREFIXES) and n.endswith(_LOG_SUFFIXES))]


def _why_incomplete(log_dir, ema_rates):
    steps = train_state.checkpoint_steps(log_dir)
    if not steps:
        return ""
    step = steps[-1]
    needed = [train_state.ema_filename(r, step) for r in ema_rates] + [train_state.opt_filename(step)]
    missing = [n for n in needed if not os.path.isfile(os.path.join(log_dir, n))]
    return f"; the newest, {train_state.model_filename(step)}, lacks {', '.join(missing)}"


def remove_partial_files(log_dir):
    """
    Delete the temporary files (`.tmp-<checkpoint name>-*`) of saves that were killed midway.

    :return: the names removed.
    """
    if not log_dir or not os.path.isdir(log_dir):
        return []
    removed = []
    for name in sorted(os.listdir(log_dir)):
        if name.startswith(".tmp-") and train_state.is_checkpoint_file(name[len(".tmp-") :].rsplit("-", 1)[0]):
            os.remove(os.path.join(log_dir, name))
            removed.append(name)
    return removed
