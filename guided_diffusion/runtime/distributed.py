"""
Helpers for distributed training: MPI finds the ranks, torch.distributed moves the tensors.

Run under `mpiexec -n N python script.py ...` for N processes, or plainly as one process
(mpi4py is then not even imported). The backend is gloo on CPU and nccl on CUDA. Unlike the
original, a user's `CUDA_VISIBLE_DEVICES` is respected: each process takes the visible GPU
`local_rank % device_count` instead of having the variable overwritten.
"""

import atexit
import datetime
import io
import os
import socket

import torch as th
import torch.distributed as dist

SETUP_TIMEOUT_S = 600
GPUS_PER_NODE = 8  # the original's constant, unused: the device comes from the local rank
SETUP_RETRY_COUNT = 3  # the original's constant, unused

# Environment variables set by MPI launchers (MPICH/Hydra, Open MPI, PMIx) in every process.
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")
_LOCAL_RANK_VARS = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "PMIX_LOCAL_RANK")

_local_rank = 0


class _SingleProcessComm:
    """Stand-in for an mpi4py communicator when there is only this process."""

    rank = 0
    size = 1

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def bcast(self, obj, root=0):
        return obj

    def gather(self, obj, root=0):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def allreduce(self, obj, op=None):
        return obj

    def Barrier(self):
        pass

    barrier = Barrier


_SINGLE = _SingleProcessComm()


def launched_by_mpi():
    """True when an MPI launcher (mpiexec/mpirun/srun with PMI) started this process."""
    return any(v in os.environ for v in _SIZE_VARS + ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"))


def mpi_comm():
    """
    The world communicator: mpi4py's COMM_WORLD under an MPI launcher, else a single-process
    stand-in with the same methods (rank, size, bcast, gather, allgather, Barrier).
    """
    if not launched_by_mpi():
        return _SINGLE
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise RuntimeError(
            "this process was started by an MPI launcher but mpi4py is not importable; "
            "install it with `pip install mpi4py mpich` (or run without mpiexec)"
        ) from e
    return MPI.COMM_WORLD


def get_rank():
    """This process's rank (torch.distributed's when initialised, else MPI's)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return mpi_comm().Get_rank()


def get_world_size():
    """Number of processes (torch.distributed's when initialised, else MPI's)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return mpi_comm().Get_size()


def _local_rank_of(comm):
    for var in _LOCAL_RANK_VARS:
        if var in os.environ:
            return int(os.environ[var])
    if comm.Get_size() == 1:
        return 0
    from mpi4py import MPI

    return comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()


def setup_dist():
    """
    Set up a torch.distributed process group spanning all MPI ranks (a group of one without
    MPI), so `dist.get_rank()`, `dist.all_gather` etc. work in every script. Idempotent.
    """
    global _local_rank
    if dist.is_initialized():
        return
    # Tear the group down before the interpreter exits: a gloo group still alive at shutdown can
    # abort the process ("terminate called without an active exception") and lose its output.
    atexit.register(_destroy_process_group)

    comm = mpi_comm()
    rank, size = comm.Get_rank(), comm.Get_size()
    _local_rank = _local_rank_of(comm)
    use_cuda = th.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        th.cuda.set_device(_local_rank % th.cuda.device_count())
    timeout = datetime.timedelta(seconds=SETUP_TIMEOUT_S)

    if size == 1:
        # No ports needed for a group of one.
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        return

    if backend == "gloo":
        hostname = "localhost"
    else:
        hostname = socket.gethostbyname(socket.getfqdn())
    hostname = comm.bcast(hostname, root=0)
    # Rank 0's store binds the port itself (port 0: the kernel picks a free one) and then tells
    # the others. Probing for a free port and binding it later would leave a window in which
    # another process can take it.
    store = dist.TCPStore(hostname, 0, size, True, timeout, wait_for_workers=False) if rank == 0 else None
    port = comm.bcast(store.port if rank == 0 else None, root=0)
    if rank != 0:
        store = dist.TCPStore(hostname, port, size, False, timeout)
    # The original's environment, for code that reads it.
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = hostname, str(port)
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(size)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=size, timeout=timeout)


def _destroy_process_group():
    if dist.is_initialized():
        dist.destroy_process_group()


def dev():
    """The device this process should use: its own GPU when CUDA is available, else the CPU."""
    if th.cuda.is_available():
        return th.device("cuda", _local_rank % th.cuda.device_count())
    return th.device("cpu")


def _read_bytes(path):
    path = os.fspath(path)
    if "://" in path:
        import blobfile as bf

        with bf.BlobFile(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def load_state_dict(path, **kwargs):
    """
    Load a PyTorch file without every rank hitting the file system: rank 0 reads the bytes and
    broadcasts them over MPI in chunks (MPI messages have a size limit).

    :param path: local path or blobfile URL of a `torch.save` file.
    :param kwargs: passed to `torch.load` (e.g. `map_location`); loading is always `weights_only=True`.
    :raises FileNotFoundError: on every rank when the path does not exist.
    """
    chunk_size = 2**30
    comm = mpi_comm()
    if comm.Get_rank() == 0:
        try:
            data = _read_bytes(path)
            err = None
        except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
            data, err = b"", f"{type(e).__name__}: cannot read checkpoint {os.fspath(path)!r}: {e.strerror or e}"
        if comm.Get_size() > 1:
            num_chunks = -1 if err else (len(data) + chunk_size - 1) // chunk_size
            comm.bcast(num_chunks)
            for i in range(0, len(data) if not err else 0, chunk_size):
                comm.bcast(data[i : i + chunk_size])
    else:
        num_chunks = comm.bcast(None)
        err = f"cannot read checkpoint {os.fspath(path)!r} on rank 0" if num_chunks < 0 else None
        parts = [comm.bcast(None) for _ in range(max(num_chunks, 0))]
        data = b"".join(parts)
    if err:
        raise FileNotFoundError(err)
    kwargs.pop("weights_only", None)  # never unpickle arbitrary objects from a checkpoint
    return th.load(io.BytesIO(data), weights_only=True, **kwargs)


def sync_params(params):
    """Copy rank 0's values of the given tensors to all ranks (in place)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    for p in params:
        with th.no_grad():
            dist.broadcast(p, 0)


def _find_free_port():
    """
    A port free at the moment of asking (the original's helper, kept for its API): `setup_dist`
    no longer uses it, since the port can be taken between this probe and the bind.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return s.getsockname()[1]
    finally:
        s.close()
