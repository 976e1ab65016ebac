"""
The run record: what identifies a sampling run (its shards' key and its `samples_*.json`), and
finding a finished run with the same record.
"""

import json
import os

from .shards import file_fingerprint


# How the networks are computed, not what: keyed through the resolved precision instead (below).
SPEED_FLAGS = ("precision", "compile")


def run_config(script, args, file_flags=("model_path",), ignore=("output_dir", "progress"), precision="fp32"):
    """
    The configuration that keys the shards: all flags but the output place, plus checkpoint
    fingerprints so a retrained checkpoint at the same path is not mixed in.

    --precision and --compile are not keyed as given: "auto" may resolve differently on another
    machine, and compiled fp32 kernels differ from eager ones only by rounding. The resolved
    precision changes the samples, so it is keyed (and recorded) when it is not fp32; an fp32 run
    keeps the key it had before these flags existed.

    :param script: the script's name, e.g. "image_sample".
    :param args: the parsed flags (an argparse namespace); a negative --seed means unseeded.
    :param file_flags: flags naming input files to fingerprint.
    :param precision: the resolved precision the networks run in ("fp32", "bf16", "fp16").
    :return: a JSON-serialisable dict {"script", "flags", "files", "seed"}, plus "precision"
             when it is not fp32; "seed" is None when the run draws its own.
    """
    flags = {k: v for k, v in sorted(vars(args).items()) if k not in ignore and k not in SPEED_FLAGS}
    files = {k: file_fingerprint(getattr(args, k)) for k in file_flags}
    seed = args.seed if args.seed is not None and args.seed >= 0 else None
    config = {"script": script, "flags": flags, "files": files, "seed": seed}
    if precision != "fp32":
        config["precision"] = precision
    return config


def _same_config(record_path, config):
    try:
        with open(record_path) as f:
            recorded = json.load(f)
    except (OSError, ValueError):
        return False
    return json.dumps(recorded.get("config"), sort_keys=True) == json.dumps(config, sort_keys=True, default=str)


def find_finished(out_dir, config, num_samples):
    """
    A final npz this exact seeded configuration already produced in `out_dir`, if any.

    Unseeded runs never match (each run of those draws fresh samples, as the original).

    :return: the npz path, or None.
    """
    if config.get("seed") is None or not os.path.isdir(out_dir):
        return None
    for name in sorted(os.listdir(out_dir)):
        if not (name.startswith(f"samples_{num_samples}x") and name.endswith(".json")):
            continue
        npz = os.path.join(out_dir, name[: -len(".json")] + ".npz")
        if _same_config(os.path.join(out_dir, name), config) and os.path.exists(npz):
            return npz
    return None
