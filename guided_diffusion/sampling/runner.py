"""
Shared machinery of the sampling scripts: output folder, checkpoint loading with clear errors,
per-sample seeded generation, the distributed resumable shard loop, and the final npz + PNG grid.

Work split: the N samples form ceil(N / batch_size) global shards (see `sample_shards`). Rank 0
lists the shards not yet on disk and deals them round-robin to the ranks; after each round every
rank's batch is gathered to rank 0, which writes it atomically. Because every sample draws its
noise and label from its own seeded stream (`sample_seeds`), the result does not depend on the
number of ranks, and a killed run resumes where it stopped.
"""

import os
import secrets
import sys

import numpy as np

from .shards import ShardStore, file_fingerprint, shard_ranges

# Test hook: stop (as if killed) after this many shards were written by the current run.
STOP_AFTER_ENV = "GUIDED_DIFFUSION_STOP_AFTER_SHARDS"
INTERRUPTED_EXIT_CODE = 75
DEBUG_ENV = "GUIDED_DIFFUSION_DEBUG"


class SamplingInterrupted(Exception):
    """Raised when the run stops before every shard exists (nothing final was written)."""


def add_sampling_flags(parser):
    """Add the flags of ours shared by every sampling script (none changes an original flag)."""
    parser.add_argument("--seed", type=int, default=None,
                        help="run seed: sample i always gets the same noise and label (default: fresh)")
    parser.add_argument("--output_dir", type=str, default="",
                        help="where to write results (default: $OPENAI_LOGDIR, else a temp folder)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta (needs --use_ddim True)")
    from ..config.flags import str2bool

    parser.add_argument("--progress", type=str2bool, default=True, help="tqdm bar on rank 0")


def validate_sampling_args(args):
    """
    :raises ValueError: for counts <= 0, a negative seed, or eta without DDIM.
    """
    if args.num_samples <= 0:
        raise ValueError(f"--num_samples must be a positive integer, got {args.num_samples}")
    if args.batch_size <= 0:
        raise ValueError(f"--batch_size must be a positive integer, got {args.batch_size}")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {args.seed}")
    if getattr(args, "eta", 0.0) < 0:
        raise ValueError(f"--eta must be >= 0, got {args.eta}")
    if getattr(args, "eta", 0.0) != 0 and not args.use_ddim:
        raise ValueError(f"--eta {args.eta} only applies to DDIM sampling: add --use_ddim True")


def setup_output(args):
    """
    Set up distributed state and the logger; every rank logs into rank 0's folder.

    :return: the output directory (same string on every rank).
    """
    from ..runtime import distributed as dist_util
    from ..runtime import logger

    dist_util.setup_dist()
    comm = dist_util.mpi_comm()
    out_dir = args.output_dir or os.getenv("OPENAI_LOGDIR") or None
    if comm.Get_size() > 1:
        if comm.Get_rank() == 0 and out_dir is None:
            logger.configure()
            out_dir = logger.get_dir()
        out_dir = comm.bcast(out_dir, root=0)
    logger.configure(dir=out_dir)
    return logger.get_dir()


def load_checkpoint(model, path, flags, kind, flag_name, check=None):
    """
    Load `path` into `model` strictly, turning every failure into a ValueError that names the flag.

    :param model: the freshly built module.
    :param path: the checkpoint path given by the user.
    :param flags: dict of the flags the model was built from (for the mismatch hint).
    :param kind: "model", "classifier" or "sr".
    :param flag_name: e.g. "--model_path".
    :param check: optional callable(state_dict) raising ValueError with a more specific message.
    """
    from ..runtime import distributed as dist_util
    from ..config.checkpoint import load_model_checkpoint

    if not path:
        raise ValueError(f"{flag_name} is required")
    try:
        state = dist_util.load_state_dict(path, map_location="cpu")
    except FileNotFoundError as e:
        raise ValueError(f"{flag_name} {path!r}: {e}") from None
    except Exception as e:  # unpickling / zip errors from torch.load
        raise ValueError(f"{flag_name} {path!r} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if check is not None:
        check(state)
    try:
        load_model_checkpoint(model, state, flags=flags, kind=kind)
    except ValueError as e:
        raise ValueError(f"{flag_name} {path!r} does not fit the {kind} built from the flags:\n{e}") from None


def load_for_inference(model, path, flags, kind, flag_name, use_fp16, check=None):
    """
    `load_checkpoint`, then move the network to this rank's device, convert it to fp16 when asked,
    switch to eval mode and freeze its parameters (sampling needs no parameter gradients; the
    classifier's input gradient still flows).

    :return: the model.
    """
    from ..runtime import distributed as dist_util

    load_checkpoint(model, path, flags, kind, flag_name, check=check)
    model.to(dist_util.dev())
    if use_fp16:
        model.convert_to_fp16()
    model.eval()
    model.requires_grad_(False)
    return model


def load_base_samples(path, small_size, class_cond, num_classes):
    """
    Read and check the low-resolution inputs of super-resolution sampling.

    :param path: npz with `arr_0` uint8 [M, small_size, small_size, 3] and, for class-conditional
                 models, `arr_1` integer labels [M] in [0, num_classes).
    :return: (images uint8 [M, s, s, 3], labels int64 [M] or None).
    :raises ValueError: naming the file and what is wrong with it.
    """
    if not path:
        raise ValueError("--base_samples is required (an npz written by image_sample.py or classifier_sample.py)")
    import zipfile

    if not os.path.isfile(path):
        raise ValueError(f"--base_samples {path!r}: no such file")
    try:
        f = np.load(path, allow_pickle=False)
        if not hasattr(f, "files"):
            raise ValueError("it holds a single array (.npy), not named arrays")
        with f:
            arrays = {name: f[name] for name in f.files if name in ("arr_0", "arr_1")}
            names = sorted(f.files)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"--base_samples {path!r} is not a readable npz file ({e})") from None
    if "arr_0" not in arrays:
        raise ValueError(f"--base_samples {path!r} has arrays {names}, but needs 'arr_0' (images)")
    images, labels = arrays["arr_0"], arrays.get("arr_1")
    want = ("M", small_size, small_size, 3)
    if images.ndim != 4 or tuple(images.shape[1:]) != want[1:] or images.shape[0] == 0:
        raise ValueError(f"--base_samples {path!r}: arr_0 has shape {images.shape}, expected {want} with M >= 1 "
                         f"(--small_size is {small_size})")
    if images.dtype != np.uint8:
        raise ValueError(f"--base_samples {path!r}: arr_0 has dtype {images.dtype}, expected uint8 pixels")
    if not class_cond:
        return images, None
    if labels is None:
        raise ValueError(f"--base_samples {path!r} has no 'arr_1' labels, which a class-conditional model needs")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"--base_samples {path!r}: arr_1 has {labels.dtype} shape {labels.shape}, "
                         f"expected integer labels of shape ({images.shape[0]},)")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"--base_samples {path!r}: labels must lie in [0, {num_classes})")
    return images, labels.astype(np.int64)


def images_to_uint8(x):
    """
    :param x: float tensor [N, 3, H, W] in [-1, 1].
    :return: uint8 numpy array [N, H, W, 3], pixels clamp((x + 1) * 127.5, 0, 255).
    """
    import torch as th

    x = ((x.float() + 1) * 127.5).clamp(0, 255).to(th.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def generate(diffusion, model_fn, shape, noise, *, use_ddim=False, eta=0.0, clip_denoised=True,
             model_kwargs=None, cond_fn=None, device=None):
    """
    Run one reverse-diffusion batch with per-sample noise.

    :param diffusion: a (Spaced)GaussianDiffusion.
    :param model_fn: model(x, t, **model_kwargs).
    :param shape: (N, C, H, W).
    :param noise: a `sample_seeds.PerSampleNoise` for the N samples.
    :param use_ddim: DDIM (with `eta`) instead of ancestral sampling.
    :return: float tensor [N, C, H, W] in [-1, 1].
    """
    kwargs = dict(
        noise=noise.initial_noise(shape, device),
        clip_denoised=clip_denoised,
        cond_fn=cond_fn,
        model_kwargs=model_kwargs or {},
        device=device,
        progress=False,
        noise_fn=noise.noise_fn,
    )
    if use_ddim:
        return diffusion.ddim_sample_loop(model_fn, shape, eta=eta, **kwargs)
    return diffusion.p_sample_loop(model_fn, shape, **kwargs)


def run_config(script, args, file_flags=("model_path",), ignore=("output_dir", "progress")):
    """
    The configuration that keys the shards: all flags but the output place, plus checkpoint
    fingerprints so a retrained checkpoint at the same path is not mixed in.
    """
    flags = {k: v for k, v in sorted(vars(args).items()) if k not in ignore}
    files = {k: file_fingerprint(getattr(args, k)) for k in file_flags}
    return {"script": script, "flags": flags, "files": files, "seed": args.seed}


def run_sharded(out_dir, config, num_samples, batch_size, make_batch, progress=True):
    """
    Produce all samples, resuming from shards already on disk.

    :param out_dir: output folder (shards live in a sub-folder).
    :param config: run configuration dict (see `run_config`), with "seed" possibly None.
    :param make_batch: callable(indices: int64 np array, seed) -> dict of arrays with
                       len(indices) rows (e.g. arr_0 uint8 NHWC, arr_1 int64 labels).
    :return: on rank 0 the dict of assembled arrays (exactly num_samples rows); None elsewhere.
    :raises SamplingInterrupted: when the test hook stops the run early (no output written).
    """
    from ..runtime import distributed as dist_util
    from ..runtime import logger

    comm = dist_util.mpi_comm()
    rank, world = comm.Get_rank(), comm.Get_size()
    ranges = shard_ranges(num_samples, batch_size)
    store = ShardStore(out_dir, config)
    plan = None
    if rank == 0:
        seed = store.open(fresh_seed=secrets.randbits(31))
        done = store.done(ranges)
        pending = [k for k in range(len(ranges)) if k not in set(done)]
        stop_after = os.getenv(STOP_AFTER_ENV)
        interrupted = stop_after is not None and int(stop_after) < len(pending)
        if interrupted:
            pending = pending[: int(stop_after)]
        plan = (seed, pending, interrupted, sum(ranges[k][1] - ranges[k][0] for k in done))
        if done:
            logger.log(f"resuming: {len(done)} of {len(ranges)} shards already in {store.dir}")
        logger.log(f"seed {seed}; shards in {store.dir}")
    seed, pending, interrupted, done_count = comm.bcast(plan, root=0)

    bar = None
    if rank == 0 and progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_samples, initial=done_count, unit="img", desc="sampling", file=sys.stderr)
    for round_start in range(0, len(pending), world):
        mine = round_start + rank
        result = None
        if mine < len(pending):
            k = pending[mine]
            start, end = ranges[k]
            try:
                result = (k, make_batch(np.arange(start, end, dtype=np.int64), seed))
            except Exception as e:  # tell rank 0, so no rank waits forever on the others
                if world == 1:
                    raise
                result = (k, f"rank {rank}: {type(e).__name__}: {e}")
        gathered = comm.gather(result, root=0)
        failure = None
        if rank == 0:
            for item in gathered:
                if item is None:
                    continue
                k, arrays = item
                if isinstance(arrays, str):
                    failure = failure or arrays
                    continue
                store.save(k, *ranges[k], arrays)
                done_count += ranges[k][1] - ranges[k][0]
                if bar is not None:
                    bar.update(ranges[k][1] - ranges[k][0])
            logger.log(f"created {done_count} samples")
        if world > 1:
            failure = comm.bcast(failure, root=0)
        if failure:
            raise RuntimeError(f"sampling failed on {failure}; finished shards are kept for a rerun")
    if bar is not None:
        bar.close()
    if interrupted:
        raise SamplingInterrupted(f"stopped early by {STOP_AFTER_ENV}; rerun the same command to finish")
    arrays = store.assemble(ranges) if rank == 0 else None
    return arrays, store


def save_samples(out_dir, arrays, grid=True, description=None):
    """
    Write the final `samples_{N}x{H}x{W}x3.npz` (arr_0, and arr_1 when present) atomically, a
    PNG grid of the first 64 samples beside it, and (when given) `description`, the JSON text of
    the flags and seed, as `samples_{N}x{H}x{W}x3.json`.

    :return: the npz path.
    """
    from ..runtime import logger
    from ..runtime.fileio import atomic_savez, atomic_write
    from .grid import save_grid

    arr = arrays["arr_0"]
    shape_str = "x".join(str(s) for s in arr.shape)
    out_path = os.path.join(out_dir, f"samples_{shape_str}.npz")
    logger.log(f"saving to {out_path}")
    payload = {"arr_0": arr}
    if "arr_1" in arrays:
        payload["arr_1"] = arrays["arr_1"].astype(np.int64)
    atomic_savez(out_path, **payload)
    if grid:
        png = os.path.join(out_dir, f"samples_{shape_str}.png")
        save_grid(png, arr, payload.get("arr_1"))
        logger.log(f"grid of the first samples: {png}")
    if description is not None:
        atomic_write(os.path.join(out_dir, f"samples_{shape_str}.json"), lambda f: f.write(description), binary=False)
    return out_path


def find_finished(out_dir, config, num_samples):
    """
    A final npz this exact seeded configuration already produced in `out_dir`, if any.

    Unseeded runs never match (each run of those draws fresh samples, as the original).

    :return: the npz path, or None.
    """
    import json

    if config.get("seed") is None or not os.path.isdir(out_dir):
        return None
    for name in sorted(os.listdir(out_dir)):
        if not (name.startswith(f"samples_{num_samples}x") and name.endswith(".json")):
            continue
        npz = os.path.join(out_dir, name[: -len(".json")] + ".npz")
        try:
            with open(os.path.join(out_dir, name)) as f:
                recorded = json.load(f)
        except (OSError, ValueError):
            continue
        same = json.dumps(recorded.get("config"), sort_keys=True) == json.dumps(config, sort_keys=True, default=str)
        if same and os.path.exists(npz):
            return npz
    return None


def sample_to_npz(out_dir, config, args, make_batch):
    """
    The whole tail of a sampling script: sharded generation, then (rank 0) the final files.
    A seeded run whose final npz already exists for the same configuration is not redone.

    :return: the npz path on rank 0, None elsewhere.
    """
    from ..runtime import distributed as dist_util
    from ..runtime import logger

    comm = dist_util.mpi_comm()
    done = find_finished(out_dir, config, args.num_samples) if comm.Get_rank() == 0 else None
    done = comm.bcast(done, root=0)
    if done is not None:
        logger.log(f"already complete for this configuration and seed: {done}")
        return done if comm.Get_rank() == 0 else None
    arrays, store = run_sharded(out_dir, config, args.num_samples, args.batch_size, make_batch,
                                progress=args.progress)
    path = None
    if arrays is not None:
        path = save_samples(out_dir, arrays, description=store.describe())
        store.remove()
    comm.Barrier()
    logger.log("sampling complete")
    return path


def cli_main(main):
    """
    Run a script's main(); user errors (ValueError, SamplingInterrupted) print one line to stderr
    and exit non-zero without a traceback. Set GUIDED_DIFFUSION_DEBUG=1 to see the traceback.
    """
    prog = os.path.basename(sys.argv[0])
    try:
        main()
    except SamplingInterrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)
    except (ValueError, FileNotFoundError) as e:
        if os.getenv(DEBUG_ENV):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
