"""
The run of scripts/image_interpolate.py: its flags, its two sources, the interpolation split
over MPI ranks, and its output files.

Sources (`load_sources`): two images of `--data_dir`, two rows of `--base_samples`, or, with
neither, samples 0 and 1 that the model draws itself with `generate_samples` (the first two
samples of `image_sample.py --seed S --class_labels L` with the same model flags).

Randomness comes from the run seed through `seeds.derive_seed` on streams of their own: the
q_sample noise shared by both sources ("ddpm"), and the step noise of the reverse process, which
every row shares (so rows differ only through their latents) and every rank and every batch of
rows redraws from the same stream (so a row does not depend on how rows are split).

Under mpiexec, rank 0 makes the sources and their latents and broadcasts the latents; each rank
decodes its share of the rows (`np.array_split` of the rows over the ranks, in chunks of
`--batch_size`); rank 0 gathers them and writes every file.
"""

import json
import os
import secrets

import numpy as np
import torch as th

from ..data.pixels import from_uint8_nhwc, to_uint8_nhwc
from ..runtime import distributed as dist_util
from ..runtime import logger
from ..runtime.fileio import atomic_savez, atomic_write
from . import interpolation as interp
from .generate import generate_samples
from .grid import save_grid
from .interp_sources import check_model_size, folder_sources, npz_sources, parse_indices
from .labels import labels_for_indices, parse_class_labels
from .seeds import derive_seed

# streams 0 and 1 of `seeds` are a sample's noise and label; these two are the interpolation's
Q_NOISE_STREAM = 2
STEP_NOISE_STREAM = 3

FLAG_HELP = {
    "mode": "ddpm: q_sample both sources to --interp_t with the same noise, mix linearly, decode "
            "(Ho et al. 2020, Sec. 4.3); ddim: invert both to x_T with DDIM, slerp, decode deterministically",
    "num_lambdas": "interpolants, lambda = 0 .. 1 in this many even steps (both ends included; >= 2)",
    "interp_t": "--mode ddpm: the step (of the respaced process) where the latents mix; -1: half the steps",
    "data_dir": "a folder of images: interpolate between its first two (sorted), or the --indices ones",
    "base_samples": "an npz (arr_0 uint8 [M, H, W, 3]): interpolate between its rows --indices",
    "indices": "'i,j': which two images of --data_dir or --base_samples ('': the first two)",
    "class_labels": "class-conditional models: the one label every row is decoded with ('': drawn "
                    "from the seed, the label image_sample.py gives sample 0; null: the null label of a "
                    "model trained with --class_dropout_prob)",
    "batch_size": "interpolation rows per forward pass, on each process",
}


def interpolation_defaults():
    """The script's own flags (model and diffusion flags come from the model defaults)."""
    return dict(model_path="", mode="ddpm", num_lambdas=11, interp_t=-1, data_dir="", base_samples="",
                indices="", class_labels="", seed=-1, batch_size=16, clip_denoised=True, output_dir="",
                progress=True)


def check_flags(args):
    """
    Check the flags that need no model, before any work.

    :return: the two source indices (i, j).
    :raises ValueError: naming the flag, for a bad mode, two source flags, --indices without a
                        source, or --interp_t with --mode ddim.
    """
    interp.check_mode(args.mode)
    if args.data_dir and args.base_samples:
        raise ValueError("give at most one of --data_dir and --base_samples (neither: the model samples "
                         "its own two sources from --seed)")
    if args.indices and not (args.data_dir or args.base_samples):
        raise ValueError("--indices picks images of --data_dir or --base_samples; without either the "
                         "sources are the model's samples 0 and 1 (change --seed for others)")
    if args.mode == "ddim" and args.interp_t != -1:
        raise ValueError("--interp_t applies to --mode ddpm only (ddim inverts the sources to the last step)")
    return parse_indices(args.indices) if args.indices else (0, 1)


def load_sources(args, indices, image_size):
    """
    :return: (uint8 [2, H, W, 3], a description for the record), or (None, description) when the
             model is to sample the sources itself.
    :raises ValueError: naming the flag, for unreadable sources, or sources of different sizes or
                        of a size other than the model's.
    """
    if args.data_dir:
        images, paths = folder_sources(args.data_dir, indices)
        return check_model_size(images, image_size, "--data_dir"), {"data_dir": paths}
    if args.base_samples:
        images = npz_sources(args.base_samples, indices)
        return (check_model_size(images, image_size, "--base_samples"),
                {"base_samples": os.path.abspath(args.base_samples), "indices": list(indices)})
    return None, {"sampled": "samples 0 and 1 of the model (ancestral, --seed)"}


def resolve_label(args, seed):
    """
    The one label every row is decoded with: --class_labels (one label or class name), else the
    label image_sample.py draws for sample 0 of this seed; None for an unconditional model.
    "null" is the null label (index num_classes) of a model trained with label dropout.

    :raises ValueError: for labels on an unconditional model, or more than one label.
    """
    if not args.class_cond:
        if args.class_labels:
            raise ValueError("--class_labels needs a class-conditional model (--class_cond True)")
        return None
    if str(args.class_labels).strip().lower() == "null":
        if args.class_dropout_prob <= 0:
            raise ValueError("--class_labels null needs the null label of a model trained with label dropout: "
                             "pass that model's --class_dropout_prob (> 0)")
        return int(args.num_classes)
    parsed = parse_class_labels(args.class_labels, args.num_classes, [("--model_path", args.model_path)])
    if parsed is not None and (isinstance(parsed, str) or len(parsed) != 1):
        raise ValueError(f"--class_labels takes one label here (every row is decoded with it), "
                         f"got {args.class_labels!r}")
    return int(labels_for_indices(parsed, seed, [0], args.num_classes)[0])


def resolve_seed(seed):
    """The run seed: `seed`, or for -1 one drawn on rank 0 and shared with every rank."""
    if seed >= 0:
        return int(seed)
    return dist_util.mpi_comm().bcast(secrets.randbits(31) if dist_util.get_rank() == 0 else None, root=0)


def _stream(seed, stream):
    return th.Generator().manual_seed(derive_seed(seed, 0, stream))


def _label_kwargs(label, n, device):
    return {} if label is None else {"y": th.full((n,), int(label), dtype=th.long, device=device)}


def _encode(model, diffusion, sources, mode, t, seed, label, clip_denoised, device):
    """Rank 0: (sources uint8 [2, H, W, 3], latents [2, C, H, W] on the CPU)."""
    if sources is None:
        sources, _ = generate_samples(model, diffusion, indices=[0, 1], batch_size=2, seed=seed,
                                      labels=None if label is None else (label,), clip_denoised=clip_denoised,
                                      device=device, progress=False)
    x = from_uint8_nhwc(sources, device)
    noise = th.randn(x.shape[1:], generator=_stream(seed, Q_NOISE_STREAM)).to(device)
    latents, _ = interp.encode(diffusion, model, x, mode, t, noise=noise, clip_denoised=clip_denoised,
                               model_kwargs=_label_kwargs(label, 2, device))
    return sources, latents.cpu()


def decode_rows(model, diffusion, mixed, rows, mode, t, seed, label, batch_size, clip_denoised, device,
                progress=False):
    """
    Decode the latents `mixed[rows]` in chunks of batch_size, every chunk with the same step noise.

    :param mixed: [R, C, H, W] mixed latents at timestep t.
    :param rows: indices into mixed.
    :return: uint8 [len(rows), H, W, 3].
    """
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = mixed[list(rows[start:start + batch_size])].to(device)
        g = _stream(seed, STEP_NOISE_STREAM)
        noise_fn = interp.shared_noise_fn(lambda row: th.randn(row.shape, generator=g).to(row.device, row.dtype))
        images = interp.decode(diffusion, model, chunk, mode, t, noise_fn=noise_fn, clip_denoised=clip_denoised,
                               model_kwargs=_label_kwargs(label, len(chunk), device), progress=progress)
        out.append(to_uint8_nhwc(images))
    return np.concatenate(out) if out else np.zeros((0,) + tuple(mixed.shape[2:]) + (mixed.shape[1],), np.uint8)


def interpolate_images(model, diffusion, sources, *, mode="ddpm", num_lambdas=11, interp_t=-1, seed=0,
                       label=None, batch_size=16, clip_denoised=True, device=None, progress=False):
    """
    Interpolate between two images (every rank calls this; see the module docstring).

    :param sources: uint8 [2, H, W, 3] of the model's size, or None: the model samples them.
    :param mode: "ddpm" or "ddim" (`interpolation`).
    :param interp_t: "ddpm": the mixing step, -1 for half the steps.
    :param label: the class every row is decoded with (class-conditional models), else None.
    :param batch_size: rows per forward pass.
    :return: on rank 0 a dict with "images" uint8 [num_lambdas + 2, H, W, 3] (source A, the
             interpolants for lambda = 0 .. 1, source B), "lambdas" float64 [num_lambdas] and
             "t" (the latents' step); None on other ranks.
    """
    comm = dist_util.mpi_comm()
    rank, world = comm.Get_rank(), comm.Get_size()
    device = device or next(model.parameters()).device
    n = interp.check_num_lambdas(num_lambdas)
    t = interp.resolve_interp_t(interp_t, diffusion.num_timesteps) if mode == "ddpm" else diffusion.num_timesteps - 1
    with th.no_grad():
        encoded = _encode(model, diffusion, sources, mode, t, seed, label, clip_denoised, device) if rank == 0 else None
        sources, latents = comm.bcast(encoded, root=0)
        mixed = interp.mix_latents(latents[0], latents[1], n, mode)
        rows = np.array_split(np.arange(n), world)[rank]
        mine = decode_rows(model, diffusion, mixed, rows, mode, t, seed, label, batch_size, clip_denoised,
                           device, progress=progress and rank == 0)
    gathered = comm.gather(mine, root=0)
    if rank != 0:
        return None
    images = np.concatenate([sources[:1]] + list(gathered) + [sources[1:]])
    return {"images": images, "lambdas": interp.mixing_lambdas(n), "t": int(t)}


def row_captions(lambdas):
    """Grid captions: "source A", each lambda with two decimals, "source B"."""
    return ["source A"] + [f"{v:.2f}" for v in lambdas] + ["source B"]


def save_interpolation(out_dir, mode, result, record):
    """
    Write `interp_{mode}_{R}x{H}x{W}x3.npz` (arr_0: the rows, uint8 NHWC; lambdas: float64
    [R - 2] of the rows between the sources), a one-row PNG grid captioned by lambda, and the
    JSON run record beside them.

    :param result: the dict of `interpolate_images`.
    :param record: a JSON-serialisable dict (flags, seed, sources, label).
    :return: the npz path.
    """
    images = result["images"]
    stem = os.path.join(out_dir, f"interp_{mode}_" + "x".join(str(s) for s in images.shape))
    atomic_savez(stem + ".npz", arr_0=images, lambdas=np.asarray(result["lambdas"], dtype=np.float64))
    save_grid(stem + ".png", images, row_captions(result["lambdas"]), max_images=len(images),
              max_cols=len(images))
    text = json.dumps(dict(record, interp_t=result["t"]), indent=1, sort_keys=True, default=str)
    atomic_write(stem + ".json", lambda f: f.write(text), binary=False)
    logger.log(f"interpolation rows: {stem}.npz, grid {stem}.png")
    return stem + ".npz"
