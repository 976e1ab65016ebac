"""
Generate a large batch of samples from a super resolution model, given a batch of samples from
a regular model from image_sample.py (`--base_samples`, an npz with `arr_0` and, for
class-conditional models, `arr_1`). Sample i upsamples base sample i % M.

Unlike the original, --use_ddim True is honoured (with --eta), and class-conditional runs also
record the labels as `arr_1`. New flags: --seed, --output_dir, --eta, --progress.
"""

import argparse
import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch as th

from guided_diffusion import dist_util, logger
from guided_diffusion.sampling.seeds import PerSampleNoise
from guided_diffusion.sampling.runner import (
    add_sampling_flags,
    cli_main,
    generate,
    images_to_uint8,
    load_base_samples,
    load_for_inference,
    run_config,
    sample_to_npz,
    setup_output,
    validate_sampling_args,
)
from guided_diffusion.script_util import (
    NUM_CLASSES,
    add_dict_to_argparser,
    args_to_dict,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
)


def main():
    args = create_argparser().parse_args()
    validate_sampling_args(args)
    base_images, base_labels = load_base_samples(args.base_samples, args.small_size, args.class_cond, NUM_CLASSES)

    out_dir = setup_output(args)
    logger.log("creating model...")
    flags = args_to_dict(args, sr_model_and_diffusion_defaults().keys())
    model, diffusion = sr_create_model_and_diffusion(**flags)
    load_for_inference(model, args.model_path, flags, "sr", "--model_path", args.use_fp16)
    shape = (3, args.large_size, args.large_size)

    def make_batch(indices, seed):
        rows = indices % len(base_images)
        low_res = th.from_numpy(base_images[rows]).float() / 127.5 - 1.0
        model_kwargs = {"low_res": low_res.permute(0, 3, 1, 2).contiguous().to(dist_util.dev())}
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
        out["arr_0"] = images_to_uint8(sample)
        return out

    logger.log("creating samples...")
    config = run_config("super_res_sample", args, file_flags=("model_path", "base_samples"))
    sample_to_npz(out_dir, config, args, make_batch)


def create_argparser():
    defaults = dict(
        clip_denoised=True,
        num_samples=10000,
        batch_size=16,
        use_ddim=False,
        base_samples="",
        model_path="",
    )
    defaults.update(sr_model_and_diffusion_defaults())
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_dict_to_argparser(parser, defaults)
    add_sampling_flags(parser)
    return parser


if __name__ == "__main__":
    cli_main(main)
