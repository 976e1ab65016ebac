"""
Like image_sample.py, but use a noisy image classifier to guide the sampling process towards
more realistic images (classifier guidance). Saves `samples_{N}x{H}x{W}x3.npz` with `arr_0`
images and `arr_1` the requested labels.

Ancestral sampling shifts the mean by the scaled classifier gradient (condition_mean); DDIM and
the DPM-Solver++ samplers shift the predicted noise instead (condition_score). Flags beyond the
original's: --sampler, --seed, --output_dir, --eta, --progress, --class_labels, --num_classes,
--save_trajectory, --precision, --compile (README "Speed").
With --classifier_scale 0 the classifier is loaded (checked) but never evaluated, so the result
equals unguided sampling with the same seed.

A model trained with --class_dropout_prob is guided on its null-label (unconditional) branch, as
the original guides an unconditional model; --guidance_scale w makes the classifier shift the
classifier-free guided prediction instead (both kinds at once). --guidance_interval lo,hi limits
either kind to training timesteps lo <= t <= hi; outside, no classifier gradient is computed.
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
from guided_diffusion.sampling.guidance import check_classifier_size
from guided_diffusion.sampling.labels import parse_class_labels
from guided_diffusion.sampling.loading import build_and_load, build_from_flags, load_for_inference
from guided_diffusion.sampling.logdir import setup_output
from guided_diffusion.sampling.record import run_config
from guided_diffusion.sampling.runner import sample_to_npz
from guided_diffusion.sampling.samplers import resolve_sampler_flags
from guided_diffusion.sampling.trajectory import samples_stem
from guided_diffusion.script_util import classifier_defaults, model_and_diffusion_defaults


def main():
    args = parse_and_validate(create_argparser())
    resolve_sampler_flags(args)
    check_guidance_flags(args, classifier_guided=True)
    labels = parse_class_labels(args.class_labels, args.num_classes,
                                [("--model_path", args.model_path), ("--classifier_path", args.classifier_path)])
    precision = resolve_precision(args.precision, dist_util.dev(),
                                  use_fp16=args.use_fp16 or args.classifier_use_fp16).precision

    out_dir = setup_output(args.output_dir)
    logger.log("creating model and diffusion...")
    model, diffusion = build_and_load(args, "model", check=model_checkpoint_check(args))

    logger.log("loading classifier...")
    classifier, _, cflags = build_from_flags(args, "classifier")
    load_for_inference(classifier, args.classifier_path, cflags, "classifier", "--classifier_path",
                       args.classifier_use_fp16,
                       check=lambda sd: check_classifier_size(sd, classifier, args.image_size))

    logger.log(f"sampling ({args.sampler})...")
    make_batch = shard_batches(model, diffusion, sampler=args.sampler, eta=args.eta, clip_denoised=args.clip_denoised,
                               classifier=classifier, classifier_scale=args.classifier_scale,
                               guidance_scale=args.guidance_scale, guidance_interval=args.guidance_interval, labels=labels,
                               num_classes=args.num_classes, device=dist_util.dev(), save_trajectory=args.save_trajectory,
                               trajectory_stem=samples_stem(out_dir, args.num_samples, args.image_size),
                               precision=args.precision, compile=args.compile)
    config = run_config("classifier_sample", args, file_flags=("model_path", "classifier_path"), precision=precision)
    sample_to_npz(out_dir, config, args.num_samples, args.batch_size, make_batch, progress=args.progress)


def create_argparser():
    return flag_parser(__doc__, sampling_defaults(), class_label_defaults(), guidance_defaults(), speed_defaults(),
                       dict(classifier_path="", classifier_scale=1.0), model_and_diffusion_defaults(),
                       classifier_defaults())


if __name__ == "__main__":
    run_cli(main)
