"""
Train a super-resolution model: the low-resolution input is the batch area-downsampled to
--small_size. Without --data_dir the embedded digits are used at --large_size.
New flags: --seed, --random_flip, --resume_checkpoint auto. Resolved flags go to args.json.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion import dist_util, logger  # noqa: E402
from guided_diffusion.training import setup as train_setup  # noqa: E402
from guided_diffusion.image_datasets import SuperResData, load_data  # noqa: E402
from guided_diffusion.resample import create_named_schedule_sampler  # noqa: E402
from guided_diffusion.script_util import (  # noqa: E402
    add_dict_to_argparser,
    args_to_dict,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)
from guided_diffusion.train_util import TrainLoop  # noqa: E402


def main():
    args = create_argparser().parse_args()

    dist_util.setup_dist()
    logger.configure()
    args.seed = train_setup.seed_everything(args.seed, dist_util.get_rank())
    data_dir, embedded = train_setup.choose_data_dir(args.data_dir, args.large_size)
    random_flip = train_setup.resolve_flip(args.random_flip, embedded)
    logger.log(f"seed {args.seed}, random_flip {random_flip}")
    train_setup.write_args_json(
        args, data_dir=data_dir, random_flip=random_flip,
        data_source="embedded-digits" if embedded else "data_dir",
    )

    logger.log("creating model...")
    model_flags = args_to_dict(args, sr_model_and_diffusion_defaults().keys())
    model, diffusion = sr_create_model_and_diffusion(**model_flags)
    model.to(dist_util.dev())
    schedule_sampler = create_named_schedule_sampler(args.schedule_sampler, diffusion)

    logger.log("creating data loader...")
    data = load_superres_data(
        data_dir, args.batch_size, large_size=args.large_size, small_size=args.small_size,
        class_cond=args.class_cond, random_flip=random_flip,
    )

    logger.log("training...")
    loop = TrainLoop(
        model=model,
        diffusion=diffusion,
        data=data,
        batch_size=args.batch_size,
        microbatch=args.microbatch,
        lr=args.lr,
        ema_rate=args.ema_rate,
        log_interval=args.log_interval,
        save_interval=args.save_interval,
        resume_checkpoint=args.resume_checkpoint,
        use_fp16=args.use_fp16,
        fp16_scale_growth=args.fp16_scale_growth,
        schedule_sampler=schedule_sampler,
        weight_decay=args.weight_decay,
        lr_anneal_steps=args.lr_anneal_steps,
        model_flags=model_flags,
    )
    loop.run_loop()
    return 128 + loop.stopped_by if loop.stopped_by else 0


def load_superres_data(data_dir, batch_size, large_size, small_size, class_cond=False, random_flip=True):
    """Batches at large_size with `cond["low_res"]` area-downsampled to small_size (resumable)."""
    data = load_data(
        data_dir=data_dir, batch_size=batch_size, image_size=large_size,
        class_cond=class_cond, random_flip=random_flip,
    )
    return SuperResData(data, small_size)


def create_argparser():
    defaults = dict(
        data_dir="",
        schedule_sampler="uniform",
        lr=1e-4,
        weight_decay=0.0,
        lr_anneal_steps=0,
        batch_size=1,
        microbatch=-1,
        ema_rate="0.9999",
        log_interval=10,
        save_interval=10000,
        resume_checkpoint="",
        use_fp16=False,
        fp16_scale_growth=1e-3,
    )
    defaults.update(sr_model_and_diffusion_defaults())
    parser = argparse.ArgumentParser(description=__doc__)
    add_dict_to_argparser(parser, defaults)
    train_setup.add_training_flags(parser)
    return parser


if __name__ == "__main__":
    train_setup.run_cli(main)
