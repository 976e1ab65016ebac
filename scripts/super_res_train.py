"""
Train a super-resolution model: the low-resolution input is the batch area-downsampled to
--small_size. Without --data_dir the embedded digits are used at --large_size.
Logs and checkpoints go to --output_dir (else $OPENAI_LOGDIR, else a new temp folder);
--resume_checkpoint auto continues the newest complete checkpoint there, and a run whose last
checkpoint is already at the end says "nothing to do". Resolved flags go to args.json.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion.config.flags import args_to_dict, flag_parser, parse_and_validate  # noqa: E402
from guided_diffusion.image_datasets import SuperResData  # noqa: E402
from guided_diffusion.runtime.cli import run_cli  # noqa: E402
from guided_diffusion.runtime.speed import speed_defaults  # noqa: E402
from guided_diffusion.script_util import sr_create_model_and_diffusion, sr_model_and_diffusion_defaults  # noqa: E402
from guided_diffusion.train_util import TrainLoop  # noqa: E402
from guided_diffusion.training import flags as train_flags  # noqa: E402
from guided_diffusion.training import setup as train_setup  # noqa: E402


def main():
    args = parse_and_validate(create_argparser())
    model_flags = args_to_dict(args, sr_model_and_diffusion_defaults().keys())
    return train_setup.train_diffusion(
        args, model_flags, sr_create_model_and_diffusion, args.large_size, TrainLoop,
        wrap_data=lambda data: SuperResData(data, args.small_size),
    )


def create_argparser():
    # the model's `use_fp16` is also a training flag
    return flag_parser(__doc__, train_flags.diffusion_training_defaults(), sr_model_and_diffusion_defaults(),
                       train_flags.run_defaults(), speed_defaults())


if __name__ == "__main__":
    run_cli(main)
