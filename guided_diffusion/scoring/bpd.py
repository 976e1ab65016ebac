"""
Bits per dimension of a diffusion model over real images: the variational bound of
`GaussianDiffusion.calc_bpd_loop`, on exactly `num_samples` images spread over the MPI ranks.
"""

import math
import os
import sys

import numpy as np
import torch as th
from tqdm.auto import tqdm

from ..runtime import distributed as dist_util
from ..runtime import logger
from ..runtime.fileio import atomic_savez

TERM_KEYS = ("vb", "mse", "xstart_mse")
METRIC_KEYS = ("total_bpd", "prior_bpd") + TERM_KEYS


class _TickingModel:
    """
    Calls `model` and advances `bar` by one per call: `calc_bpd_loop` evaluates the model once
    per timestep, so the bar counts the timestep loop from outside it.
    """

    def __init__(self, model, bar):
        self.model, self.bar = model, bar

    def __call__(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        self.bar.update(1)
        return out


def _batch_metrics(model, diffusion, data, clip_denoised, device):
    """:return: dict METRIC_KEYS -> numpy arrays for the next local batch of `data`."""
    batch, model_kwargs = next(data)
    batch = batch.to(device)
    model_kwargs = {k: v.to(device) for k, v in model_kwargs.items()}
    with th.no_grad():
        metrics = diffusion.calc_bpd_loop(model, batch, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
    return {k: metrics[k].detach().float().cpu().numpy() for k in METRIC_KEYS}


def run_bpd_evaluation(model, diffusion, data, num_samples, clip_denoised=True, comm=None, device=None,
                       progress=True):
    """
    Evaluate the bound on exactly `num_samples` images spread over the ranks.

    :param model: the diffusion model, called as model(x, t, **model_kwargs).
    :param data: iterator of (images [B x C x H x W] in [-1, 1], model_kwargs), one per rank.
    :param comm: MPI communicator (default: the world, or a single-process stand-in).
    :param device: where batches go (default: this rank's device).
    :param progress: tqdm bar over the timestep loop (all batches) on rank 0.
    :return: on rank 0 a dict of numpy arrays: total_bpd, prior_bpd [num_samples] and
             vb, mse, xstart_mse [num_samples, T]; None on other ranks.
    """
    comm = comm or dist_util.mpi_comm()
    device = device or dist_util.dev()
    rank0 = comm.Get_rank() == 0
    bar = tqdm(unit="step", desc="bpd timesteps", file=sys.stderr) if rank0 and progress else None
    collected = {k: [] for k in METRIC_KEYS}
    done = 0
    while done < num_samples:
        local = _batch_metrics(_TickingModel(model, bar) if bar is not None else model, diffusion, data,
                               clip_denoised, device)
        if bar is not None and bar.total is None:
            rounds = math.ceil(num_samples / (len(local["total_bpd"]) * comm.Get_size()))
            bar.total = rounds * diffusion.num_timesteps
            bar.refresh()
        gathered = comm.gather(local, root=0)
        if rank0:
            for part in gathered:
                for k in collected:
                    collected[k].extend(part[k])
            done = min(len(collected["total_bpd"]), num_samples)
            logger.log(f"done {done} samples: bpd={np.mean(collected['total_bpd'][:done])}")
        done = comm.bcast(done, root=0)
    if bar is not None:
        bar.close()
    if not rank0:
        return None
    return {k: np.stack(v[:num_samples]) for k, v in collected.items()}


def summarize(results):
    """
    :param results: rank 0's output of `run_bpd_evaluation`.
    :return: dict of floats: bpd and prior_bpd (means over samples), vb (the bound's per-timestep
             terms, averaged over samples, summed over t), mse and xstart_mse (averaged over both),
             and samples (the count).
    """
    out = {"bpd": float(results["total_bpd"].mean()), "prior_bpd": float(results["prior_bpd"].mean())}
    for name in TERM_KEYS:
        reduce = np.sum if name == "vb" else np.mean
        out[name] = float(reduce(results[name].mean(axis=0)))
    out["samples"] = len(results["total_bpd"])
    return out


def save_terms(out_dir, results):
    """
    Write `<term>_terms.npz` per term (`arr_0`: the per-timestep mean over samples, [T]).

    :return: the paths written.
    """
    paths = []
    for name in TERM_KEYS:
        path = os.path.join(out_dir, f"{name}_terms.npz")
        atomic_savez(path, arr_0=results[name].mean(axis=0))
        paths.append(path)
    return paths
