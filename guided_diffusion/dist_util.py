"""
Distributed helpers (the original's module path): MPI finds the ranks, torch.distributed moves tensors.
Implementation: `guided_diffusion.runtime.distributed`.
"""

from .runtime.distributed import (  # noqa: F401
    dev,
    get_rank,
    get_world_size,
    GPUS_PER_NODE,
    launched_by_mpi,
    load_state_dict,
    mpi_comm,
    setup_dist,
    SETUP_RETRY_COUNT,
    SETUP_TIMEOUT_S,
    sync_params,
    _destroy_process_group,
    _find_free_port,
    _local_rank,
    _local_rank_of,
    _LOCAL_RANK_VARS,
    _read_bytes,
    _SINGLE,
    _SingleProcessComm,
    _SIZE_VARS,
)
