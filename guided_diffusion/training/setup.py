"""
What a training script does around the loop: choose the output folder, decide whether there is
anything left to do, configure the logger, seed, choose the data, record the run in `args.json`,
and turn a stop into the CLI's exit status; `train_diffusion` is all of image_train.py and
super_res_train.py after flag parsing.

Output folder: --output_dir, else $OPENAI_LOGDIR, else a new `<tmp>/openai-<time>` folder (the
same on every rank). Its logs are continued, never truncated: on resuming at step N the rows of
steps >= N are dropped from progress.csv and written again.

`args.json` (written by rank 0) holds every flag after resolution (`seed` as actually used,
`data_dir` / `val_data_dir` as actually read, `random_flip` as a bool) plus `"script"`,
`"world_size"`, `"data_source"` ("data_dir" or "embedded-digits") and `"class_names"` (the data
folder's class mapping, class i named `class_names[i]`, for runs that train on labels; the
sampling scripts resolve `--class_labels cat,dog` with it).
"""

import collections
import json
import os
import random
import sys

import numpy as np
import torch as th

from ..config.flags import args_to_dict, str2bool
from ..data.digits import resolve_data_dir
from ..data.image_folder import folder_class_names, load_data
from ..diffusion.timestep_sampler import create_named_schedule_sampler
from ..runtime import distributed as dist_util
from ..runtime import logger
from ..runtime.cli import StoppedBySignal
from ..runtime.fileio import atomic_write
from ..runtime.precision import resolve_precision
from . import checkpoints
from . import state as train_state
from .flags import DIFFUSION_LOOP_FLAGS, SPEED_LOOP_FLAGS
from .loop import parse_ema_rates
from .stopping import GracefulStop

OUTPUT_DIR_ENV = "OPENAI_LOGDIR"

RunStart = collections.namedtuple("RunStart", "output_dir resume_checkpoint finished")
RunStart.__doc__ = """
:param output_dir: the folder of logs and checkpoints.
:param resume_checkpoint: the checkpoint path to resume from, or "" for a fresh run.
:param finished: True when the checkpoint already reached the end: nothing is left to do.
"""


def choose_output_dir(output_dir=""):
    """
    :return: (folder, given) where given is False when neither --output_dir nor $OPENAI_LOGDIR
        named one and a new temp folder was chosen (rank 0's choice, on every rank).
    """
    chosen = output_dir or os.environ.get(OUTPUT_DIR_ENV, "")
    if chosen:
        return os.path.abspath(os.path.expanduser(chosen)), True
    return dist_util.mpi_comm().bcast(logger.default_dir(), root=0), False


def start_run(args, total_flag, ema_rates=()):
    """
    Everything before building the model: choose the output folder, resolve
    --resume_checkpoint, and stop there when the checkpoint is at or past the end of the run
    (printing "nothing to do: step N reached" and changing no file); otherwise configure the
    logger (continuing the folder's logs), clear partial files of killed saves, and seed.

    :param args: namespace with output_dir, resume_checkpoint, seed, precision and `total_flag`.
    :param total_flag: the flag giving the number of updates of the run (0: no end).
    :param ema_rates: the run's EMA rates (a complete checkpoint has one file per rate).
    :return: a RunStart.
    """
    # an unusable --precision is refused before any folder or file is made
    resolve_precision(getattr(args, "precision", "fp32"), dist_util.dev(),
                      use_fp16=getattr(args, "use_fp16", False) or getattr(args, "classifier_use_fp16", False))
    output_dir, given = choose_output_dir(args.output_dir)
    resume, message = _find_resume(args.resume_checkpoint, output_dir, given, ema_rates)
    total = getattr(args, total_flag)
    step = train_state.parse_resume_step_from_filename(resume) if resume else 0
    if resume and total and step >= total:
        if dist_util.get_rank() == 0:
            print(_nothing_to_do(step, total, total_flag, resume), flush=True)
        return RunStart(output_dir, resume, True)
    logger.configure(dir=output_dir, append=True)
    if message:
        logger.log(message)
    if dist_util.get_rank() == 0:
        for name in checkpoints.remove_partial_files(output_dir):
            logger.log(f"removed {name}, left by a save that was killed midway")
    if not resume:
        _warn_if_overwriting(output_dir)
    args.seed = seed_everything(args.seed, dist_util.get_rank())
    return RunStart(output_dir, resume or "", False)


def _find_resume(flag, output_dir, given, ema_rates):
    """:return: (the checkpoint path or None, a message to log or None)."""
    if flag != "auto":
        if flag:
            checkpoints.check_resume_path(flag)
        return flag or None, None
    if not given:
        return None, (
            f"--resume_checkpoint auto: no --output_dir and no ${OUTPUT_DIR_ENV}, so this run writes to the "
            f"new folder {output_dir}, where there is nothing to resume: starting at step 0 (pass --output_dir "
            f"<folder of the earlier run> to continue that run)"
        )
    return checkpoints.find_auto_checkpoint(output_dir, ema_rates)


def _nothing_to_do(step, total, total_flag, resume):
    if step == total:
        return f"nothing to do: step {step} reached ({resume} is the end of this run, --{total_flag} {total})"
    return (
        f"nothing to do: step {step} reached, past the end of this run at --{total_flag} {total} "
        f"({resume}); raise --{total_flag} above {step} to train further"
    )


def _warn_if_overwriting(output_dir):
    steps = train_state.checkpoint_steps(output_dir)
    if steps:
        logger.warn(
            f"{output_dir} holds checkpoints of an earlier run (up to step {steps[-1]}); this fresh run "
            f"replaces them as it reaches their steps (use --resume_checkpoint auto to continue that run)"
        )


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


def choose_data(args, image_size, with_val=False, labelled=False):
    """
    Resolve --data_dir (the embedded digits when empty), --random_flip and, with `with_val`,
    --val_data_dir (the digits' held-out split when the digits are used and it is empty).

    :param labelled: the run trains on labels, so its class mapping is recorded.
    :return: dict of the resolved data flags (`data_dir`, `random_flip`, `data_source`,
        `class_names`, and `val_data_dir`), as recorded in args.json. `class_names[i]` is the
        file name prefix of class i (None when the run uses no labels).
    :raises ValueError: when the validation folder numbers its classes differently.
    """
    data_dir, embedded = resolve_data_dir(args.data_dir, image_size, split="train", log=logger.log)
    chosen = dict(data_dir=data_dir, random_flip=resolve_flip(args.random_flip, embedded),
                  data_source="embedded-digits" if embedded else "data_dir",
                  class_names=folder_class_names(data_dir) if labelled else None)
    if with_val:
        chosen["val_data_dir"] = args.val_data_dir
        if embedded and not args.val_data_dir:
            chosen["val_data_dir"], _ = resolve_data_dir("", image_size, split="heldout", log=logger.log)
        if labelled and chosen["val_data_dir"]:
            _check_same_classes(chosen["class_names"], folder_class_names(chosen["val_data_dir"]))
    logger.log(f"seed {args.seed}, random_flip {chosen['random_flip']}")
    return chosen


def _check_same_classes(train_names, val_names):
    """Both folders number their classes by sorted prefix, so the sets must agree."""
    if train_names != val_names:
        only_train = sorted(set(train_names) - set(val_names))[:5]
        only_val = sorted(set(val_names) - set(train_names))[:5]
        raise ValueError(
            f"--val_data_dir has {len(val_names)} classes and --data_dir {len(train_names)}, so their label "
            f"numbers differ (only in --data_dir: {only_train}; only in --val_data_dir: {only_val}); give both "
            f"folders the same class prefixes"
        )


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
    if loop.finished():
        raise StoppedBySignal(loop.stopped_by, f"received {name} at the end of the run: {where}, complete")
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
    :return: 0 when the run ended or had nothing to do; raises StoppedBySignal on a stop.
    """
    ema_rates = parse_ema_rates(args.ema_rate)
    dist_util.setup_dist()
    run = start_run(args, "lr_anneal_steps", ema_rates)
    if run.finished:
        return 0
    data_flags = choose_data(args, image_size, labelled=args.class_cond)
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
        resume_checkpoint=run.resume_checkpoint,
        model_flags=model_flags,
        **args_to_dict(args, DIFFUSION_LOOP_FLAGS + SPEED_LOOP_FLAGS),
    )
    loop.run_loop()
    return finish(loop)
