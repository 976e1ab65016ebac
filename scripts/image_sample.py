"""
Generate a large batch of image samples from a model and save them as a large numpy array
(`samples_{N}x{H}x{W}x3.npz`, plus `arr_1` labels for class-conditional models). This can be
used to produce samples for FID evaluation.

New flags (the original ones keep their meaning): --seed, --output_dir, --eta, --progress,
--class_labels, --num_classes. Finished batches are kept as shards, so rerunning the same command
after an interruption only samples what is missing.
"""

import argparse
import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch as th

from guided_diffusion import dist_util, logger
from guided_diffusion.sampling.labels import labels_for_indices, parse_class_labels, resolve_num_classes
from guided_diffusion.sampling.seeds import PerSampleNoise
from guided_diffusion.sampling.runner import (
    add_sampling_flags,
    cli_main,
    generate,
    images_to_uint8,
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
    create_model_and_diffusion,
    model_and_diffusion_defaults,
)


def main():
    args = create_argparser().parse_args()
    validate_sampling_args(args)
    num_classes = resolve_num_classes(args.num_classes, NUM_CLASSES)
    if args.class_labels and not args.class_cond:
        raise ValueError("--class_labels needs a class-conditional model (--class_cond True); "
                         "use classifier_sample.py to steer an unconditional model")
    label_spec = parse_class_labels(args.class_labels, num_classes) if args.class_cond else None

    out_dir = setup_output(args)
    logger.log("creating model and diffusion...")
    flags = args_to_dict(args, model_and_diffusion_defaults().keys())
    model, diffusion = create_model_and_diffusion(**flags)
    load_for_inference(model, args.model_path, flags, "model", "--model_path", args.use_fp16)

    shape = (3, args.image_size, args.image_size)

    def make_batch(indices, seed):
        noise = PerSampleNoise(seed, indices, dist_util.dev())
        model_kwargs = {}
        out = {}
        if args.class_cond:
            labels = labels_for_indices(label_spec, seed, indices, num_classes)
            model_kwargs["y"] = th.from_numpy(labels).to(dist_util.dev())
            out["arr_1"] = labels
        with th.no_grad():
            sample = generate(
                diffusion, model, (len(indices),) + shape, noise,
                use_ddim=args.use_ddim, eta=args.eta, clip_denoised=args.clip_denoised,
                model_kwargs=model_kwargs, device=dist_util.dev(),
            )
        out["arr_0"] = images_to_uint8(sample)
        return out

    logger.log("sampling...")
    sample_to_npz(out_dir, run_config("image_sample", args), args, make_batch)


def create_argparser():
    defaults = dict(
        clip_denoised=True,
        num_samples=10000,
        batch_size=16,
        use_ddim=False,
        model_path="",
    )
    defaults.update(model_and_diffusion_defaults())
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_dict_to_argparser(parser, defaults)
    add_sampling_flags(parser)
    parser.add_argument("--class_labels", type=str, default="",
                        help="class-conditional models: '' random, 'balanced', or a comma list (cycled)")
    parser.add_argument("--num_classes", type=int, default=0,
                        help=f"random/balanced labels come from [0, num_classes) (default {NUM_CLASSES})")
    return parser


if __name__ == "__main__":
    cli_main(main)
