"""
Interpolate between two images through a diffusion model, and save the rows as an npz and a PNG.

Sources: --data_dir DIR (its first two images, or --indices i,j), --base_samples FILE.npz (rows
--indices i,j), or neither: the model's own samples 0 and 1 for --seed.

--mode ddpm (default; Ho et al. 2020, Sec. 4.3): q_sample both sources to step --interp_t
(default half the steps) with the same noise, mix the latents linearly for --num_lambdas values of
lambda from 0 to 1, and decode each with the ancestral reverse process. --mode ddim: invert both
sources to x_T with DDIM, mix them by spherical interpolation, and decode deterministically.

Writes interp_{mode}_{R}x{H}x{W}x3.npz (arr_0 uint8 NHWC: source A, the interpolants for lambda =
0 .. 1, source B; lambdas), a PNG grid captioned by lambda, and a JSON run record. Under mpiexec
the rows are split over the ranks and rank 0 writes the files.
"""

import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion import dist_util, logger
from guided_diffusion.config.flags import flag_parser, parse_and_validate
from guided_diffusion.runtime.cli import run_cli
from guided_diffusion.sampling import interpolation_run as run
from guided_diffusion.sampling.interpolation import resolve_interp_t
from guided_diffusion.sampling.loading import build_from_flags, load_for_inference
from guided_diffusion.sampling.logdir import setup_output
from guided_diffusion.sampling.record import run_config
from guided_diffusion.script_util import model_and_diffusion_defaults


def main():
    args = parse_and_validate(create_argparser())
    indices = run.check_flags(args)
    sources, described = run.load_sources(args, indices, args.image_size)

    out_dir = setup_output(args.output_dir)
    seed = run.resolve_seed(args.seed)
    label = run.resolve_label(args, seed)
    logger.log("creating model and diffusion...")
    model, diffusion, flags = build_from_flags(args, "model")
    if args.mode == "ddpm":
        resolve_interp_t(args.interp_t, diffusion.num_timesteps)
    load_for_inference(model, args.model_path, flags, "model", "--model_path", args.use_fp16)

    logger.log(f"interpolating ({args.mode}, {args.num_lambdas} values of lambda, seed {seed})...")
    result = run.interpolate_images(model, diffusion, sources, mode=args.mode, num_lambdas=args.num_lambdas,
                                    interp_t=args.interp_t, seed=seed, label=label, batch_size=args.batch_size,
                                    clip_denoised=args.clip_denoised, device=dist_util.dev(),
                                    progress=args.progress)
    if result is not None:
        record = dict(config=run_config("image_interpolate", args, file_flags=("model_path", "base_samples")),
                      seed=seed, label=label, sources=described)
        run.save_interpolation(out_dir, args.mode, result, record)
    dist_util.mpi_comm().Barrier()
    logger.log("interpolation complete")


def create_argparser():
    return flag_parser(__doc__, run.interpolation_defaults(), model_and_diffusion_defaults(), help_text=run.FLAG_HELP)


if __name__ == "__main__":
    run_cli(main)
