"""
Shared start-up for the training scripts: our new flags (--seed, --random_flip), seeding,
choosing the data (a folder, or the embedded digits), and writing `args.json`.

`args.json` (in the log directory, written by rank 0) holds every flag after resolution
(`seed` as actually used, `data_dir` / `val_data_dir` as actually read, `random_flip` as a
bool) plus `"script"`, `"world_size"` and `"data_source"` ("data_dir" or "embedded-digits").
"""

import json
import os
import random
import sys

import numpy as np
import torch as th

from ..runtime import logger


def add_training_flags(parser):
    """Add --seed (-1: draw one and record it) and --random_flip (auto: on, off for digits)."""
    parser.add_argument("--seed", type=int, default=-1, help="global seed; -1 draws one (recorded in args.json)")
    parser.add_argument(
        "--random_flip",
        type=str,
        default="auto",
        help="horizontal flip augmentation: True/False, or auto (True for --data_dir, False for the embedded digits)",
    )
    return parser


def seed_everything(seed, rank=0):
    """
    Seed torch, numpy and random for this rank (`seed + rank`, so ranks draw different noise).

    :param seed: base seed; negative draws one from the OS and broadcasts rank 0's choice.
    :return: the base seed used.
    """
    if seed is None or seed < 0:
        from ..runtime import distributed as dist_util

        seed = dist_util.mpi_comm().bcast(int.from_bytes(os.urandom(4), "little") % (2**31 - 1), root=0)
    s = int(seed) + int(rank)
    th.manual_seed(s)
    np.random.seed(s % (2**32))
    random.seed(s)
    return int(seed)


def resolve_flip(value, embedded):
    """--random_flip: "auto" means True for user folders, False for digits (mirrored digits aren't)."""
    from ..config.flags import str2bool

    if str(value).lower() == "auto":
        return not embedded
    return str2bool(value)


def choose_data_dir(data_dir, image_size, split="train"):
    """
    :return: (folder, embedded) where embedded says the built-in digits were chosen.
    """
    from ..data.digits import resolve_data_dir

    return resolve_data_dir(data_dir, image_size, split=split, log=logger.log)


def write_args_json(args, **extra):
    """Write the resolved flags (plus `extra`) to `<log dir>/args.json` on rank 0."""
    from ..runtime import distributed as dist_util
    from ..runtime.fileio import atomic_write

    doc = dict(vars(args))
    doc.update(extra)
    doc.setdefault("script", os.path.basename(sys.argv[0]))
    doc.setdefault("world_size", dist_util.get_world_size())
    if dist_util.get_rank() == 0:
        path = os.path.join(logger.get_dir(), "args.json")
        atomic_write(path, lambda f: f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n"), binary=False)
    return doc


def fail(message, code=2):
    """Print a user-facing error (no traceback) and exit with `code`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def run_cli(main):
    """
    Run a script's main(): user errors (ValueError, FileNotFoundError) become one clear line on
    stderr and exit status 2; a SIGTERM/SIGINT stop exits with 128 + signal number.
    """
    try:
        code = main()
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("GUIDED_DIFFUSION_DEBUG"):
            raise
        fail(f"{e}\n(set GUIDED_DIFFUSION_DEBUG=1 to see the traceback)")
    sys.exit(code or 0)
