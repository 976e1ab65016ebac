"""
What a training script does around the loop: configure the logger, seed, choose the data,
record the run in `args.json`, and turn a stop into the CLI's exit status; `train_diffusion` is
all of image_train.py and super_res_train.py after flag parsing.

`args.json` (written by rank 0) holds every flag after resolution (`seed` as actually used,
`data_dir` / `val_data_dir` as actually read, `random_flip` as a bool) plus `"script"`,
`"world_size"` and `"data_source"` ("data_dir" or "embedded-digits").
"""

import json
import os
import random
import sys

import numpy as np
import torch as th

from ..config.flags import args_to_dict, str2bool
from ..data.digits import resolve_data_dir
from ..data.image_folder import load_data
from ..diffusion.timestep_sampler import create_named_schedule_sampler
from ..runtime import distributed as dist_util
from ..runtime import logger
from ..runtime.cli import StoppedBySignal
from ..runtime.fileio import atomic_write
from .flags import DIFFUSION_LOOP_FLAGS
from .loop import parse_ema_rates
from .stopping import GracefulStop


def start_run(args):
    """
    Everything before building the model: configure the logger and seed every RNG.

    :param args: namespace with `seed` (replaced by the seed actually used).
    """
    logger.configure()
    args.seed = seed_everything(args.seed, dist_util.get_rank())


def seed_everything(seed, rank=0):
    """
    Seed torch, numpy and random for this rank (`seed + rank`, so ranks draw different noise).

    :param seed: base seed; negative draws one from the OS and broadcasts rank 0's choice.
    :return: the base seed used.
    """
    if seed is None or seed < 0:
        seed = dist_util.mpi_comm().bcast(int.from_bytes(os.urandom(4), "little") % (2**31 - 1), root=0)
    s = int(seed) + int(rank)
    th.manual_seed(s)
    np.random.seed(s % (2**32))
    random.seed(s)
    return int(seed)


def resolve_flip(value, embedded):
    """--random_flip: "auto" means True for user folders, False for digits (mirrored digits aren't)."""
    if str(value).lower() == "auto":
        return not embedded
    return str2bool(value)


def choose_data(args, image_size, with_val=False):
    """
    Resolve --data_dir (the embedded digits when empty), --random_flip and, with `with_val`,
    --val_data_dir (the digits' held-out split when the digits are used and it is empty).

    :return: dict of the resolved data flags (`data_dir`, `random_flip`, `data_source`, and
        `val_data_dir`), as recorded in args.json.
    """
    data_dir, embedded = resolve_data_dir(args.data_dir, image_size, split="train", log=logger.log)
    chosen = dict(data_dir=data_dir, random_flip=resolve_flip(args.random_flip, embedded),
                  data_source="embedded-digits" if embedded else "data_dir")
    if with_val:
        chosen["val_data_dir"] = args.val_data_dir
        if embedded and not args.val_data_dir:
            chosen["val_data_dir"], _ = resolve_data_dir("", image_size, split="heldout", log=logger.log)
    logger.log(f"seed {args.seed}, random_flip {chosen['random_flip']}")
    return chosen


def write_args_json(args, **extra):
    """Write the resolved flags (plus `extra`) to `<log dir>/args.json` on rank 0."""
    doc = dict(vars(args))
    doc.update(extra)
    doc.setdefault("script", os.path.basename(sys.argv[0]))
    doc.setdefault("world_size", dist_util.get_world_size())
    if dist_util.get_rank() == 0:
        path = os.path.join(logger.get_dir(), "args.json")
        atomic_write(path, lambda f: f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n"), binary=False)
    return doc


def finish(loop):
    """
    :return: 0 when the loop ran to its end.
    :raises StoppedBySignal: when a signal stopped it (exit 128 + signal, with what was saved).
    """
    if not loop.stopped_by:
        return 0
    name = GracefulStop.name(loop.stopped_by)
    where = f"step {loop.global_step} is saved in {loop.blob_logdir()}"
    raise StoppedBySignal(
        loop.stopped_by, f"stopped by {name}: {where}; rerun the command with --resume_checkpoint auto to continue"
    )


def train_diffusion(args, model_flags, build, image_size, loop_cls, wrap_data=None):
    """
    Train a diffusion (or super-resolution) model from parsed flags.

    :param args: namespace of the diffusion training, model and run flags.
    :param model_flags: the flags `build(**model_flags)` takes, returning (model, diffusion).
    :param image_size: side of the training images.
    :param loop_cls: the loop class, e.g. `train_util.TrainLoop` (whose patch points then apply).
    :param wrap_data: optional callable applied to the batch iterator (super-resolution adds
        `cond["low_res"]` with it).
    :return: 0 when the run ended; raises StoppedBySignal on a stop (see `finish`).
    """
    parse_ema_rates(args.ema_rate)
    dist_util.setup_dist()
    start_run(args)
    data_flags = choose_data(args, image_size)
    write_args_json(args, **data_flags)

    logger.log("creating model and diffusion...")
    model, diffusion = build(**model_flags)
    model.to(dist_util.dev())

    logger.log("creating data loader...")
    data = load_data(data_dir=data_flags["data_dir"], batch_size=args.batch_size, image_size=image_size,
                     class_cond=args.class_cond, random_flip=data_flags["random_flip"])

    logger.log("training...")
    loop = loop_cls(
        model=model,
        diffusion=diffusion,
        data=wrap_data(data) if wrap_data else data,
        schedule_sampler=create_named_schedule_sampler(args.schedule_sampler, diffusion),
        resume_checkpoint=args.resume_checkpoint,
        model_flags=model_flags,
        **args_to_dict(args, DIFFUSION_LOOP_FLAGS),
    )
    loop.run_loop()
    return finish(loop)
