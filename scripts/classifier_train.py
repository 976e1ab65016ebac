"""
Train a noised (or, with --noised False, clean) image classifier for classifier guidance.

Without --data_dir the embedded digits are used: the training split for training and, unless
--val_data_dir is given, the held-out split for validation.
Logs and checkpoints go to --output_dir (else $OPENAI_LOGDIR, else a new temp folder);
--resume_checkpoint auto continues the newest complete checkpoint there, and a run whose last
checkpoint is already at the end says "nothing to do". Resolved flags go to args.json.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion import dist_util, logger  # noqa: E402
from guided_diffusion.config.flags import args_to_dict, flag_parser, parse_and_validate  # noqa: E402
from guided_diffusion.image_datasets import load_data  # noqa: E402
from guided_diffusion.resample import create_named_schedule_sampler  # noqa: E402
from guided_diffusion.runtime.cli import run_cli  # noqa: E402
from guided_diffusion.runtime.speed import speed_defaults  # noqa: E402
from guided_diffusion.script_util import (  # noqa: E402
    classifier_and_diffusion_defaults,
    create_classifier_and_diffusion,
)
from guided_diffusion.training import flags as train_flags  # noqa: E402
from guided_diffusion.training import setup as train_setup  # noqa: E402
from guided_diffusion.training.classifier import ClassifierTrainLoop  # noqa: E402


def main():
    args = parse_and_validate(create_argparser())
    dist_util.setup_dist()
    run = train_setup.start_run(args, "iterations")
    if run.finished:
        return 0
    data_flags = train_setup.choose_data(args, args.image_size, with_val=True, labelled=True)
    train_setup.write_args_json(args, **data_flags)

    logger.log("creating model and diffusion...")
    model_flags = args_to_dict(args, classifier_and_diffusion_defaults().keys())
    model, diffusion = create_classifier_and_diffusion(**model_flags)
    model.to(dist_util.dev())

    logger.log("creating data loader...")
    data = load_data(data_dir=data_flags["data_dir"], batch_size=args.batch_size, image_size=args.image_size,
                     class_cond=True, random_crop=True, random_flip=data_flags["random_flip"])
    val_data = None
    if data_flags["val_data_dir"]:
        val_data = load_data(data_dir=data_flags["val_data_dir"], batch_size=args.batch_size,
                             image_size=args.image_size, class_cond=True, random_flip=data_flags["random_flip"])

    logger.log(f"training classifier model (noised {args.noised})...")
    loop = ClassifierTrainLoop(
        model=model,
        diffusion=diffusion,
        data=data,
        val_data=val_data,
        schedule_sampler=create_named_schedule_sampler(args.schedule_sampler, diffusion) if args.noised else None,
        resume_checkpoint=run.resume_checkpoint,
        use_fp16=args.classifier_use_fp16,
        model_flags=model_flags,
        **args_to_dict(args, train_flags.CLASSIFIER_LOOP_FLAGS + train_flags.SPEED_LOOP_FLAGS),
    )
    loop.run_loop()
    return train_setup.finish(loop)


def create_argparser():
    return flag_parser(__doc__, train_flags.classifier_training_defaults(), classifier_and_diffusion_defaults(),
                       train_flags.run_defaults(), speed_defaults())


if __name__ == "__main__":
    run_cli(main)
