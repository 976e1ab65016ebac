"""
Train a noised (or, with --noised False, clean) image classifier for classifier guidance.

Without --data_dir the embedded digits are used: the training split for training and, unless
--val_data_dir is given, the held-out split for validation.
New flags: --seed, --random_flip, --resume_checkpoint auto. Resolved flags go to args.json.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion import dist_util, logger  # noqa: E402
from guided_diffusion.training import setup as train_setup  # noqa: E402
from guided_diffusion.training.classifier import ClassifierTrainLoop  # noqa: E402
from guided_diffusion.image_datasets import load_data  # noqa: E402
from guided_diffusion.resample import create_named_schedule_sampler  # noqa: E402
from guided_diffusion.script_util import (  # noqa: E402
    add_dict_to_argparser,
    args_to_dict,
    classifier_and_diffusion_defaults,
    create_classifier_and_diffusion,
)


def main():
    args = create_argparser().parse_args()

    dist_util.setup_dist()
    logger.configure()
    args.seed = train_setup.seed_everything(args.seed, dist_util.get_rank())
    data_dir, embedded = train_setup.choose_data_dir(args.data_dir, args.image_size)
    val_data_dir = args.val_data_dir
    if embedded and not val_data_dir:
        val_data_dir, _ = train_setup.choose_data_dir("", args.image_size, split="heldout")
    random_flip = train_setup.resolve_flip(args.random_flip, embedded)
    logger.log(f"seed {args.seed}, random_flip {random_flip}, noised {args.noised}")
    train_setup.write_args_json(
        args, data_dir=data_dir, val_data_dir=val_data_dir, random_flip=random_flip,
        data_source="embedded-digits" if embedded else "data_dir",
    )

    logger.log("creating model and diffusion...")
    model_flags = args_to_dict(args, classifier_and_diffusion_defaults().keys())
    model, diffusion = create_classifier_and_diffusion(**model_flags)
    model.to(dist_util.dev())
    schedule_sampler = create_named_schedule_sampler(args.schedule_sampler, diffusion) if args.noised else None

    logger.log("creating data loader...")
    data = load_data(
        data_dir=data_dir,
        batch_size=args.batch_size,
        image_size=args.image_size,
        class_cond=True,
        random_crop=True,
        random_flip=random_flip,
    )
    val_data = None
    if val_data_dir:
        val_data = load_data(
            data_dir=val_data_dir,
            batch_size=args.batch_size,
            image_size=args.image_size,
            class_cond=True,
            random_flip=random_flip,
        )

    logger.log("training classifier model...")
    loop = ClassifierTrainLoop(
        model=model,
        diffusion=diffusion,
        data=data,
        val_data=val_data,
        noised=args.noised,
        iterations=args.iterations,
        lr=args.lr,
        weight_decay=args.weight_decay,
        anneal_lr=args.anneal_lr,
        batch_size=args.batch_size,
        microbatch=args.microbatch,
        schedule_sampler=schedule_sampler,
        resume_checkpoint=args.resume_checkpoint,
        log_interval=args.log_interval,
        eval_interval=args.eval_interval,
        save_interval=args.save_interval,
        use_fp16=args.classifier_use_fp16,
        model_flags=model_flags,
    )
    loop.run_loop()
    return 128 + loop.stopped_by if loop.stopped_by else 0


def create_argparser():
    defaults = dict(
        data_dir="",
        val_data_dir="",
        noised=True,
        iterations=150000,
        lr=3e-4,
        weight_decay=0.0,
        anneal_lr=False,
        batch_size=4,
        microbatch=-1,
        schedule_sampler="uniform",
        resume_checkpoint="",  # a model%06d.pt path, or "auto" for the newest one in the log dir
        log_interval=10,
        eval_interval=5,
        save_interval=10000,
    )
    defaults.update(classifier_and_diffusion_defaults())
    parser = argparse.ArgumentParser(description=__doc__)
    add_dict_to_argparser(parser, defaults)
    train_setup.add_training_flags(parser)
    return parser


if __name__ == "__main__":
    train_setup.run_cli(main)
