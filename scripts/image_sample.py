"""
Generate a large batch of image samples from a model and save them as a large numpy array
(`samples_{N}x{H}x{W}x3.npz`, plus `arr_1` labels for class-conditional models). This can be
used to produce samples for FID evaluation.

Flags beyond the original's: --sampler, --seed, --output_dir, --eta, --progress,
--class_labels, --num_classes, --class_dropout_prob, --guidance_scale, --guidance_interval,
--save_trajectory K (PNG strips of x_t and predicted x_0 at K timesteps of the first samples),
--precision, --compile (README "Speed").
A model trained with --class_dropout_prob samples with classifier-free guidance at
--guidance_scale w (1: plain conditional), and its unconditional branch with --class_labels null.
Finished batches are kept as shards, so rerunning the same command after an interruption only
samples what is missing.
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
from guided_diffusion.sampling.defaults import class_label_defaults, guidance_defaults, sampling_defaults
from guided_diffusion.sampling.generate import shard_batches
from guided_diffusion.sampling.guided import check_guidance_flags, model_checkpoint_check
from guided_diffusion.sampling.labels import parse_class_labels
from guided_diffusion.sampling.loading import build_and_load
from guided_diffusion.sampling.logdir import setup_output
from guided_diffusion.sampling.record import run_config
from guided_diffusion.sampling.runner import sample_to_npz
from guided_diffusion.sampling.samplers import resolve_sampler_flags
from guided_diffusion.sampling.trajectory import samples_stem
from guided_diffusion.script_util import model_and_diffusion_defaults


def main():
    args = parse_and_validate(create_argparser())
    resolve_sampler_flags(args)
    check_guidance_flags(args, classifier_guided=False)
    if args.class_labels and not args.class_cond:
        raise ValueError("--class_labels needs a class-conditional model (--class_cond True); "
                         "use classifier_sample.py to steer an unconditional model")
    labels = (parse_class_labels(args.class_labels, args.num_classes, [("--model_path", args.model_path)])
              if args.class_cond else None)
    precision = resolve_precision(args.precision, dist_util.dev(), use_fp16=args.use_fp16).precision

    out_dir = setup_output(args.output_dir)
    logger.log("creating model and diffusion...")
    model, diffusion = build_and_load(args, "model", check=model_checkpoint_check(args))

    logger.log(f"sampling ({args.sampler})...")
    make_batch = shard_batches(model, diffusion, sampler=args.sampler, eta=args.eta, clip_denoised=args.clip_denoised,
                               labels=labels, num_classes=args.num_classes if args.class_cond else None,
                               guidance_scale=args.guidance_scale, guidance_interval=args.guidance_interval,
                               device=dist_util.dev(), save_trajectory=args.save_trajectory,
                               trajectory_stem=samples_stem(out_dir, args.num_samples, args.image_size),
                               precision=args.precision, compile=args.compile)
    sample_to_npz(out_dir, run_config("image_sample", args, precision=precision), args.num_samples, args.batch_size, make_batch,
                  progress=args.progress)


def create_argparser():
    return flag_parser(__doc__, sampling_defaults(), class_label_defaults(), guidance_defaults(), speed_defaults(),
                       model_and_diffusion_defaults())


if __name__ == "__main__":
    run_cli(main)
