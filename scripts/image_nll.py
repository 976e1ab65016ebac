"""
Approximate the bits/dimension for an image model over a folder of images (`--data_dir`), with
the variational bound computed by `calc_bpd_loop`.

Writes `vb_terms.npz`, `mse_terms.npz` and `xstart_mse_terms.npz` (`arr_0`: the per-timestep
mean over samples) into the log directory, like the original. Differences: exactly
--num_samples images are averaged (per image, not per batch), images are not randomly flipped,
`--seed` makes the bound's noise reproducible, and the final means are logged as key/values
(bpd, prior_bpd, vb, mse, xstart_mse).
"""

import argparse
import os
import sys

# run from a checkout without installing the package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np
import torch as th

from guided_diffusion import dist_util, logger
from guided_diffusion.runtime.fileio import atomic_savez
from guided_diffusion.image_datasets import load_data
from guided_diffusion.sampling.runner import cli_main, load_for_inference, setup_output
from guided_diffusion.script_util import (
    add_dict_to_argparser,
    args_to_dict,
    create_model_and_diffusion,
    model_and_diffusion_defaults,
)

TERM_KEYS = ("vb", "mse", "xstart_mse")


def main():
    args = create_argparser().parse_args()
    if args.num_samples <= 0 or args.batch_size <= 0:
        raise ValueError(f"--num_samples and --batch_size must be positive, got {args.num_samples}, {args.batch_size}")
    if not args.data_dir or not os.path.isdir(args.data_dir):
        raise ValueError(f"--data_dir {args.data_dir!r} is not a folder of images")
    setup_output(args)
    comm = dist_util.mpi_comm()
    if args.seed is not None:
        th.manual_seed(args.seed * 1000 + comm.Get_rank())

    logger.log("creating model and diffusion...")
    flags = args_to_dict(args, model_and_diffusion_defaults().keys())
    model, diffusion = create_model_and_diffusion(**flags)
    load_for_inference(model, args.model_path, flags, "model", "--model_path", args.use_fp16)

    logger.log("creating data loader...")
    data = load_data(data_dir=args.data_dir, batch_size=args.batch_size, image_size=args.image_size,
                     class_cond=args.class_cond, deterministic=True, random_flip=False)

    logger.log("evaluating...")
    results = run_bpd_evaluation(model, diffusion, data, args.num_samples, args.clip_denoised, comm)
    if comm.Get_rank() == 0:
        for name in TERM_KEYS:
            out_path = os.path.join(logger.get_dir(), f"{name}_terms.npz")
            logger.log(f"saving {name} terms to {out_path}")
            atomic_savez(out_path, arr_0=results[name].mean(axis=0))
        logger.logkv("bpd", float(results["total_bpd"].mean()))
        logger.logkv("prior_bpd", float(results["prior_bpd"].mean()))
        for name in TERM_KEYS:
            reduce = np.sum if name == "vb" else np.mean
            logger.logkv(name, float(reduce(results[name].mean(axis=0))))
        logger.logkv("samples", len(results["total_bpd"]))
        logger.dumpkvs()
    comm.Barrier()
    logger.log("evaluation complete")


def run_bpd_evaluation(model, diffusion, data, num_samples, clip_denoised, comm=None):
    """
    Evaluate the bound on exactly `num_samples` images spread over the ranks.

    :param comm: MPI communicator (default: the world, or a single-process stand-in).

    :return: on rank 0 a dict of numpy arrays: total_bpd, prior_bpd [num_samples] and
             vb, mse, xstart_mse [num_samples, T]; None on other ranks.
    """
    comm = comm or dist_util.mpi_comm()
    collected = {k: [] for k in ("total_bpd", "prior_bpd") + TERM_KEYS}
    done = 0
    while done < num_samples:
        batch, model_kwargs = next(data)
        batch = batch.to(dist_util.dev())
        model_kwargs = {k: v.to(dist_util.dev()) for k, v in model_kwargs.items()}
        with th.no_grad():
            metrics = diffusion.calc_bpd_loop(model, batch, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        local = {k: metrics[k].detach().float().cpu().numpy() for k in collected}
        gathered = comm.gather(local, root=0)
        if comm.Get_rank() == 0:
            for part in gathered:
                for k in collected:
                    collected[k].extend(part[k])
            done = min(len(collected["total_bpd"]), num_samples)
            logger.log(f"done {done} samples: bpd={np.mean(collected['total_bpd'][:done])}")
        done = comm.bcast(done, root=0)
    if comm.Get_rank() != 0:
        return None
    return {k: np.stack(v[:num_samples]) for k, v in collected.items()}


def create_argparser():
    defaults = dict(data_dir="", clip_denoised=True, num_samples=1000, batch_size=1, model_path="")
    defaults.update(model_and_diffusion_defaults())
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_dict_to_argparser(parser, defaults)
    parser.add_argument("--seed", type=int, default=None, help="seed of the bound's noise (default: random)")
    parser.add_argument("--output_dir", type=str, default="", help="default: $OPENAI_LOGDIR, else a temp folder")
    return parser


if __name__ == "__main__":
    cli_main(main)
