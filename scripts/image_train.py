"""
Train a diffusion model on images.

Without --data_dir the embedded handwritten digits (training split) are used at --image_size.
Logs and checkpoints go to --output_dir (else $OPENAI_LOGDIR, else a new temp folder);
--resume_checkpoint auto continues the newest complete checkpoint there, and a run whose last
checkpoint is already at the end says "nothing to do". Resolved flags go to args.json.
With --class_cond True --class_dropout_prob p, each label becomes the null class with
probability p, so the model also learns the unconditional prediction (classifier-free guidance).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion.config.flags import args_to_dict, flag_parser, parse_and_validate  # noqa: E402
from guided_diffusion.runtime.cli import run_cli  # noqa: E402
from guided_diffusion.runtime.speed import speed_defaults  # noqa: E402
from guided_diffusion.script_util import create_model_and_diffusion, model_and_diffusion_defaults  # noqa: E402
from guided_diffusion.train_util import TrainLoop  # noqa: E402
from guided_diffusion.training import flags as train_flags  # noqa: E402
from guided_diffusion.training.label_dropout import label_dropout_wrapper  # noqa: E402
from guided_diffusion.training import setup as train_setup  # noqa: E402


def main():
    args = parse_and_validate(create_argparser())
    model_flags = args_to_dict(args, model_and_diffusion_defaults().keys())
    return train_setup.train_diffusion(args, model_flags, create_model_and_diffusion, args.image_size, TrainLoop,
                                       wrap_data=label_dropout_wrapper(args.class_dropout_prob, args.num_classes))


def create_argparser():
    # the model's `use_fp16` is also a training flag
    return flag_parser(__doc__, train_flags.diffusion_training_defaults(), model_and_diffusion_defaults(),
                       train_flags.run_defaults(), speed_defaults())


if __name__ == "__main__":
    run_cli(main)
