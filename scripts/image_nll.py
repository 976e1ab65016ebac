"""
Approximate the bits/dimension for an image model over a folder of images (`--data_dir`), with
the variational bound computed by `calc_bpd_loop`.

Writes `vb_terms.npz`, `mse_terms.npz` and `xstart_mse_terms.npz` (`arr_0`: the per-timestep
mean over samples) into the log directory, like the original. Differences: exactly
--num_samples images are averaged (per image, not per batch), images are not randomly flipped,
`--seed` makes the bound's noise reproducible, a progress bar follows the timestep loop, and the
final means are logged as key/values (bpd, prior_bpd, vb, mse, xstart_mse, samples).
"""

import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch as th

from guided_diffusion import dist_util, logger
from guided_diffusion.config.flags import flag_parser, parse_and_validate
from guided_diffusion.image_datasets import load_data
from guided_diffusion.runtime.cli import run_cli
from guided_diffusion.sampling.loading import build_and_load
from guided_diffusion.sampling.logdir import setup_output
from guided_diffusion.scoring.bpd import run_bpd_evaluation, save_terms, summarize
from guided_diffusion.script_util import model_and_diffusion_defaults


def main():
    args = parse_and_validate(create_argparser())
    if not args.data_dir or not os.path.isdir(args.data_dir):
        raise ValueError(f"--data_dir {args.data_dir!r} is not a folder of images")
    setup_output(args.output_dir)
    comm = dist_util.mpi_comm()
    if args.seed >= 0:
        th.manual_seed(args.seed * 1000 + comm.Get_rank())

    logger.log("creating model and diffusion...")
    model, diffusion = build_and_load(args, "model")

    logger.log("creating data loader...")
    data = load_data(data_dir=args.data_dir, batch_size=args.batch_size, image_size=args.image_size,
                     class_cond=args.class_cond, deterministic=True, random_flip=False)

    logger.log("evaluating...")
    results = run_bpd_evaluation(model, diffusion, data, args.num_samples, args.clip_denoised, comm,
                                 progress=args.progress)
    if comm.Get_rank() == 0:
        for path in save_terms(logger.get_dir(), results):
            logger.log(f"saved {path}")
        logger.logkvs(summarize(results))
        logger.dumpkvs()
    comm.Barrier()
    logger.log("evaluation complete")


def create_argparser():
    defaults = dict(data_dir="", clip_denoised=True, num_samples=1000, batch_size=1, model_path="",
                    seed=-1, output_dir="", progress=True)
    return flag_parser(__doc__, defaults, model_and_diffusion_defaults())


if __name__ == "__main__":
    run_cli(main)
