"""
The distributed, resumable shard loop.

The N samples form ceil(N / batch_size) global shards (see `shards.shard_ranges`). Rank 0 lists
the shards not yet on disk and deals them round-robin to the ranks; after each round every
rank's batch is gathered to rank 0, which writes it atomically. Because every sample draws its
noise and label from its own seeded stream (`seeds`), the result does not depend on the number
of ranks, and a killed run resumes where it stopped.
"""

import secrets
import signal
import sys

import numpy as np
from tqdm.auto import tqdm

from ..runtime import distributed as dist_util
from ..runtime import logger
from ..runtime.cli import RunInterrupted, StoppedBySignal
from .shards import ShardStore, shard_ranges


class _Tally:
    """Rank 0's count of finished samples, and its progress bar (or None)."""

    def __init__(self, samples, bar):
        self.samples, self.bar = samples, bar

    def add(self, count):
        self.samples += count
        if self.bar is not None:
            self.bar.update(count)


def _plan(store, ranges):
    """Rank 0: settle the seed and list the missing shards. :return: (seed, pending, done)."""
    seed = store.open(fresh_seed=secrets.randbits(31))
    done = store.done(ranges)
    if done:
        logger.log(f"resuming: {len(done)} of {len(ranges)} shards already in {store.dir}")
    logger.log(f"seed {seed}; shards in {store.dir}")
    return seed, [k for k in range(len(ranges)) if k not in set(done)], done


def _make(make_batch, shard, seed, rank, world):
    """One rank's batch, or on failure (with other ranks waiting) a line saying what failed."""
    start, end = shard
    try:
        return make_batch(np.arange(start, end, dtype=np.int64), seed)
    except Exception as e:  # tell rank 0, so no rank waits forever on the others
        if world == 1:
            raise
        return f"rank {rank}: {type(e).__name__}: {e}"


def _round(comm, store, ranges, shards, make_batch, seed, tally):
    """Make `shards` (one per rank, in rank order), gather them to rank 0 and write them there."""
    rank, world = comm.Get_rank(), comm.Get_size()
    result = None
    if rank < len(shards):
        result = (shards[rank], _make(make_batch, ranges[shards[rank]], seed, rank, world))
    gathered = comm.gather(result, root=0)
    failure = None
    if rank == 0:
        for k, arrays in filter(None, gathered):
            if isinstance(arrays, str):
                failure = failure or arrays
                continue
            store.save(k, *ranges[k], arrays)
            tally.add(ranges[k][1] - ranges[k][0])
        logger.log(f"created {tally.samples} samples")
    if world > 1:
        failure = comm.bcast(failure, root=0)
    if failure:
        raise RuntimeError(f"sampling failed on {failure}; finished shards are kept for a rerun")


def _kept(rank, ranges, store, what, verb):
    """The one line a stopped run prints (rank 0 only, so that an MPI run prints it once)."""
    if rank != 0:
        return ""
    kept = store.count_written(ranges)  # from disk: a Ctrl-C may land between a write and any count
    return f"{what}: {kept} of {len(ranges)} shards kept in {store.dir}; rerun the same command to {verb}"


def run_sharded(out_dir, config, num_samples, batch_size, make_batch, progress=True, should_stop=None):
    """
    Produce all samples, resuming from shards already on disk.

    :param out_dir: output folder (shards live in a sub-folder).
    :param config: run configuration dict (see `record.run_config`), with "seed" possibly None.
    :param make_batch: callable(indices: int64 np array, seed) -> dict of arrays with
                       len(indices) rows (e.g. arr_0 uint8 NHWC, arr_1 int64 labels).
    :param progress: show a tqdm bar (samples) on rank 0.
    :param should_stop: optional callable(shards written by this run) -> bool, asked after each
                        round on every rank; True stops the run with the finished shards kept.
    :return: (arrays, store): on rank 0 the dict of assembled arrays (exactly num_samples rows),
             None on other ranks; `store` is this configuration's `ShardStore` on every rank.
    :raises RunInterrupted: when `should_stop` stopped the run (no final output written).
    :raises StoppedBySignal: on Ctrl-C; rank 0's message says how many shards are kept.
    """
    comm = dist_util.mpi_comm()
    rank, world = comm.Get_rank(), comm.Get_size()
    ranges = shard_ranges(num_samples, batch_size)
    store = ShardStore(out_dir, config)
    seed, pending, done = comm.bcast(_plan(store, ranges) if rank == 0 else None, root=0)
    initial = sum(ranges[k][1] - ranges[k][0] for k in done)
    bar = (tqdm(total=num_samples, initial=initial, unit="img", desc="sampling", file=sys.stderr)
           if rank == 0 and progress else None)
    tally = _Tally(initial, bar)
    try:
        for start in range(0, len(pending), world):
            _round(comm, store, ranges, pending[start:start + world], make_batch, seed, tally)
            written = min(start + world, len(pending))
            if should_stop is not None and written < len(pending) and should_stop(written):
                raise RunInterrupted(_kept(rank, ranges, store, "stopped early", "finish"))
    except KeyboardInterrupt:
        raise StoppedBySignal(signal.SIGINT, _kept(rank, ranges, store, "interrupted", "resume")) from None
    finally:
        if bar is not None:
            bar.close()
    return (store.assemble(ranges) if rank == 0 else None), store
