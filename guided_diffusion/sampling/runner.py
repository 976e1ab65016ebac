"""
The tail every sampling script shares: skip a seeded run that already finished, otherwise run the
resumable shard loop (`sharded`) and write the final npz, grid and run record (`outputs`).
"""

from ..runtime import distributed as dist_util
from ..runtime import logger
from .outputs import save_samples
from .record import find_finished
from .sharded import run_sharded


def sample_to_npz(out_dir, config, num_samples, batch_size, make_batch, progress=True, should_stop=None):
    """
    Produce `num_samples` samples into `out_dir`, resuming from finished shards. A seeded run
    whose final npz already exists for the same configuration is not redone.

    :param config: the run record (`record.run_config`).
    :param make_batch: callable(indices: int64 np array, seed) -> dict of arrays (see `run_sharded`).
    :param progress: tqdm bar on rank 0.
    :param should_stop: passed to `run_sharded` (stop early, keeping the finished shards).
    :return: the npz path on rank 0, None elsewhere.
    """
    comm = dist_util.mpi_comm()
    done = find_finished(out_dir, config, num_samples) if comm.Get_rank() == 0 else None
    done = comm.bcast(done, root=0)
    if done is not None:
        logger.log(f"already complete for this configuration and seed: {done}")
        return done if comm.Get_rank() == 0 else None
    arrays, store = run_sharded(out_dir, config, num_samples, batch_size, make_batch,
                                progress=progress, should_stop=should_stop)
    path = None
    if arrays is not None:
        path = save_samples(out_dir, arrays, description=store.describe())
        store.remove()
    comm.Barrier()
    logger.log("sampling complete")
    return path
