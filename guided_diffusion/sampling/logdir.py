"""Where a sampling or evaluation run writes: one folder for every rank, and the logger in it."""

import os

from ..runtime import distributed as dist_util
from ..runtime import logger


def setup_output(output_dir=""):
    """
    Set up distributed state and the logger. The folder is `output_dir`, else $OPENAI_LOGDIR,
    else a fresh temp folder chosen by rank 0; every rank logs into that same folder.

    :param output_dir: the --output_dir flag ("" for the fallbacks).
    :return: the output directory (the same string on every rank).
    """
    dist_util.setup_dist()
    comm = dist_util.mpi_comm()
    out_dir = output_dir or os.getenv("OPENAI_LOGDIR") or None
    if comm.Get_size() > 1:
        if comm.Get_rank() == 0 and out_dir is None:
            logger.configure()
            out_dir = logger.get_dir()
        out_dir = comm.bcast(out_dir, root=0)
    logger.configure(dir=out_dir)
    return logger.get_dir()
