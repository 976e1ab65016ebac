"""
Generate a large batch of samples from a super resolution model, given a batch of samples from
a regular model from image_sample.py (`--base_samples`, an npz with `arr_0` and, for
class-conditional models, `arr_1`). Sample i upsamples base sample i % M.

Unlike the original, --use_ddim True is honoured (with --eta), and class-conditional runs also
record the labels as `arr_1`. Flags beyond the original's: --seed, --output_dir, --eta, --progress.
"""

import argparse
import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch as th

from guided_diffusion import dist_util, logger
from guided_diffusion.config.flags import parse_and_validate
from guided_diffusion.data.pixels import from_uint8_nhwc, to_uint8_nhwc
from guided_diffusion.runtime.cli import run_cli
from guided_diffusion.sampling.base_samples import load_base_samples
from guided_diffusion.sampling.defaults import sampling_defaults
from guided_diffusion.sampling.generate import check_eta, generate
from guided_diffusion.sampling.loading import load_for_inference
from guided_diffusion.sampling.logdir import setup_output
from guided_diffusion.sampling.record import run_config
from guided_diffusion.sampling.runner import sample_to_npz
from guided_diffusion.sampling.seeds import PerSampleNoise
from guided_diffusion.script_util import (
    NUM_CLASSES,
    add_dict_to_argparser,
    args_to_dict,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)


def main():
    args = parse_and_validate(create_argparser())
    check_eta(args.eta, args.use_ddim)
    base_images, base_labels = load_base_samples(args.base_samples, args.small_size, args.class_cond, NUM_CLASSES)

    out_dir = setup_output(args.output_dir)
    logger.log("creating model...")
    flags = args_to_dict(args, sr_model_and_diffusion_defaults().keys())
    model, diffusion = sr_create_model_and_diffusion(**flags)
    load_for_inference(model, args.model_path, flags, "sr", "--model_path", args.use_fp16)
    shape = (3, args.large_size, args.large_size)

    def make_batch(indices, seed):
        rows = indices % len(base_images)
        model_kwargs = {"low_res": from_uint8_nhwc(base_images[rows], dist_util.dev())}
        out = {}
        if args.class_cond:
            model_kwargs["y"] = th.from_numpy(base_labels[rows]).to(dist_util.dev())
            out["arr_1"] = base_labels[rows]
        with th.no_grad():
            sample = generate(
                diffusion, model, (len(indices),) + shape, PerSampleNoise(seed, indices, dist_util.dev()),
                use_ddim=args.use_ddim, eta=args.eta, clip_denoised=args.clip_denoised,
                model_kwargs=model_kwargs, device=dist_util.dev(),
            )
        out["arr_0"] = to_uint8_nhwc(sample)
        return out

    logger.log("creating samples...")
    config = run_config("super_res_sample", args, file_flags=("model_path", "base_samples"))
    sample_to_npz(out_dir, config, args.num_samples, args.batch_size, make_batch, progress=args.progress)


def create_argparser():
    defaults = sampling_defaults()
    defaults.update(base_samples="")
    defaults.update(sr_model_and_diffusion_defaults())
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_dict_to_argparser(parser, defaults)
    return parser


if __name__ == "__main__":
    run_cli(main)
