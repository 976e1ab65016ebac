"""
Generate a large batch of samples from a super resolution model, given a batch of samples from
a regular model from image_sample.py (`--base_samples`, an npz with `arr_0` and, for
class-conditional models, `arr_1`). Sample i upsamples base sample i % M.

Unlike the original, --use_ddim True is honoured (with --eta), and class-conditional runs also
record the labels as `arr_1`. Flags beyond the original's: --sampler, --seed, --output_dir,
--eta, --progress, --save_trajectory, --precision, --compile (README "Speed").
"""

import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion import dist_util, logger
from guided_diffusion.config.flags import flag_parser, parse_and_validate
from guided_diffusion.runtime.cli import run_cli
from guided_diffusion.runtime.precision import resolve_precision
from guided_diffusion.runtime.speed import speed_defaults
from guided_diffusion.sampling.base_samples import load_base_samples
from guided_diffusion.sampling.defaults import sampling_defaults
from guided_diffusion.sampling.generate import shard_batches
from guided_diffusion.sampling.loading import build_and_load
from guided_diffusion.sampling.logdir import setup_output
from guided_diffusion.sampling.record import run_config
from guided_diffusion.sampling.runner import sample_to_npz
from guided_diffusion.sampling.samplers import resolve_sampler_flags
from guided_diffusion.sampling.trajectory import samples_stem
from guided_diffusion.script_util import sr_model_and_diffusion_defaults


def main():
    args = parse_and_validate(create_argparser())
    resolve_sampler_flags(args)
    base_images, base_labels = load_base_samples(args.base_samples, args.small_size, args.class_cond,
                                                 args.num_classes)
    precision = resolve_precision(args.precision, dist_util.dev(), use_fp16=args.use_fp16).precision

    out_dir = setup_output(args.output_dir)
    logger.log("creating model...")
    model, diffusion = build_and_load(args, "sr")

    logger.log(f"creating samples ({args.sampler})...")
    make_batch = shard_batches(model, diffusion, sampler=args.sampler, eta=args.eta, clip_denoised=args.clip_denoised,
                               labels=base_labels, low_res=base_images, device=dist_util.dev(),
                               save_trajectory=args.save_trajectory,
                               trajectory_stem=samples_stem(out_dir, args.num_samples, args.large_size),
                               precision=args.precision, compile=args.compile)
    config = run_config("super_res_sample", args, file_flags=("model_path", "base_samples"), precision=precision)
    sample_to_npz(out_dir, config, args.num_samples, args.batch_size, make_batch, progress=args.progress)


def create_argparser():
    return flag_parser(__doc__, sampling_defaults(), dict(base_samples=""), speed_defaults(),
                       sr_model_and_diffusion_defaults())


if __name__ == "__main__":
    run_cli(main)
