"""
The run record beside a checkpoint: the flags of the run that wrote or used it.

A checkpoint's parameters do not tell the image size or the noise schedule (the network is
convolutional and never sees the schedule). The training scripts write every resolved flag to
`args.json` in their output folder, next to the checkpoints; the sampling scripts write
`samples_*.json` next to their npz, holding the flags and the `model_path` they loaded. Either one
restores what the parameters cannot.
"""

import glob
import json
import os


def find_run_record(checkpoint_path):
    """
    The flags recorded for a checkpoint: `args.json` in its folder, else the newest
    `samples_*.json` there whose `model_path` names this checkpoint.

    :param checkpoint_path: a local file path (remote paths have no record: `{}`).
    :return: (flags dict, record path), or ({}, None) when there is no readable record.
    """
    path = os.fspath(checkpoint_path)
    if "://" in path:
        return {}, None
    folder = os.path.dirname(os.path.abspath(path))
    args_path = os.path.join(folder, "args.json")
    flags = _read_json(args_path)
    if flags:
        return flags, args_path
    records = sorted(glob.glob(os.path.join(folder, "samples_*.json")), key=os.path.getmtime)
    for record_path in reversed(records):
        record_flags = (_read_json(record_path).get("config") or {}).get("flags") or {}
        if _same_file(record_flags.get("model_path"), path, folder):
            return record_flags, record_path
    return {}, None


def _read_json(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _same_file(recorded, path, folder):
    """Whether a recorded model_path (absolute, or relative to the run's folder) is `path`."""
    if not isinstance(recorded, str) or not recorded:
        return False
    candidates = [recorded] if os.path.isabs(recorded) else [recorded, os.path.join(folder, recorded)]
    for candidate in candidates:
        if os.path.exists(candidate) and os.path.samefile(candidate, path):
            return True
    return os.path.basename(recorded) == os.path.basename(path)
