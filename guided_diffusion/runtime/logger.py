"""
Key-value and text logging with the original guided-diffusion (OpenAI baselines) formats.

Output directory: `configure(dir=...)`, else `$OPENAI_LOGDIR`, else a fresh
`openai-<timestamp>` folder in the temp dir (`default_dir()`). Output formats:
`configure(format_strs=...)`, else `$OPENAI_LOG_FORMAT` (default "stdout,log,csv") on rank 0 and
`$OPENAI_LOG_FORMAT_MPI` (default "log") on other ranks, whose files get a `-rank%03i` suffix.

Formats (classes in `log_formats.py`): "stdout" (a table on standard output), "log" (the same
into `log<suffix>.txt`), "csv" (`progress<suffix>.csv`, columns grow as new keys appear), "json"
(`progress<suffix>.json`, one object per line), "tensorboard" (`tb<suffix>/`, needs the
`tensorboard` package).

`configure(append=True)` continues the files already in the folder instead of truncating them;
`discard_rows("step", n)` then removes the table rows of steps >= n, so a run resumed at step n
neither loses nor repeats rows.

Typical use::

    logger.configure()
    logger.log("starting")
    logger.logkv_mean("loss", 0.5)
    logger.dumpkvs()
"""

import datetime
import os
import tempfile
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager

from .log_formats import (  # noqa: F401  (the output classes are part of this module's API)
    CSVOutputFormat,
    HumanOutputFormat,
    JSONOutputFormat,
    KNOWN_FORMATS,
    KVWriter,
    SeqWriter,
    TensorBoardOutputFormat,
    make_output_format,
)

DEBUG = 10
INFO = 20
WARN = 30
ERROR = 40
DISABLED = 50

# ----------------------------------------------------------------------------------------------
# Module-level API (operates on the current logger)
# ----------------------------------------------------------------------------------------------


def logkv(key, val):
    """Record `key = val` for this iteration; a later call with the same key overwrites it."""
    get_current().logkv(key, val)


def logkv_mean(key, val):
    """Record `val` into the running mean of `key` for this iteration."""
    get_current().logkv_mean(key, val)


def logkvs(d):
    """`logkv` for every item of the dict `d`."""
    for k, v in d.items():
        logkv(k, v)


def dumpkvs():
    """Write all recorded keys to every output, clear them, and return what was written."""
    return get_current().dumpkvs()


def discard_rows(key, start):
    """
    Remove the rows whose `key` is a number >= `start` from the current logger's table files
    (csv, json): a run resumed at step `start` writes those rows again.
    """
    for fmt in get_current().output_formats:
        if isinstance(fmt, KVWriter):
            fmt.discard_rows(key, start)


def getkvs():
    """The keys recorded since the last `dumpkvs`."""
    return get_current().name2val


def log(*args, level=INFO):
    """Write the arguments, space separated, to the text outputs when `level` is enabled."""
    get_current().log(*args, level=level)


def debug(*args):
    log(*args, level=DEBUG)


def info(*args):
    log(*args, level=INFO)


def warn(*args):
    log(*args, level=WARN)


def error(*args):
    log(*args, level=ERROR)


def set_level(level):
    """Only messages at `level` or above are written (DEBUG, INFO, WARN, ERROR, DISABLED)."""
    get_current().set_level(level)


def set_comm(comm):
    """Average dumped values over an MPI communicator (mpi4py style) from now on."""
    get_current().set_comm(comm)


def get_dir():
    """The log directory (where checkpoints and samples also go), or None."""
    return get_current().get_dir()


record_tabular = logkv
dump_tabular = dumpkvs


@contextmanager
def profile_kv(scopename):
    """Add the wall time spent in the block to the key `wait_<scopename>`."""
    logkey = "wait_" + scopename
    tstart = time.time()
    try:
        yield
    finally:
        get_current().name2val[logkey] += time.time() - tstart


def profile(n):
    """Decorator: time every call of the function under `profile_kv(n)`."""

    def decorator_with_name(func):
        def func_wrapper(*args, **kwargs):
            with profile_kv(n):
                return func(*args, **kwargs)

        return func_wrapper

    return decorator_with_name


def get_current():
    """The active Logger, configuring a default one on first use."""
    if Logger.CURRENT is None:
        _configure_default_logger()
    return Logger.CURRENT


class Logger:
    DEFAULT = None  # logger created by the first implicit configuration
    CURRENT = None  # logger used by the module-level functions

    def __init__(self, dir, output_formats, comm=None):
        self.name2val = defaultdict(float)
        self.name2cnt = defaultdict(int)
        self.level = INFO
        self.dir = dir
        self.output_formats = output_formats
        self.comm = comm

    def logkv(self, key, val):
        self.name2val[key] = val

    def logkv_mean(self, key, val):
        oldval, cnt = self.name2val[key], self.name2cnt[key]
        self.name2val[key] = oldval * cnt / (cnt + 1) + val / (cnt + 1)
        self.name2cnt[key] = cnt + 1

    def dumpkvs(self):
        if self.comm is None:
            d = self.name2val
        else:
            d = mpi_weighted_mean(
                self.comm,
                {name: (val, self.name2cnt.get(name, 1)) for name, val in self.name2val.items()},
            )
            if self.comm.rank != 0:
                d["dummy"] = 1  # keeps the non-root outputs from warning about an empty dict
        out = dict(d)
        for fmt in self.output_formats:
            if isinstance(fmt, KVWriter):
                fmt.writekvs(d)
        self.name2val.clear()
        self.name2cnt.clear()
        return out

    def log(self, *args, level=INFO):
        if self.level <= level:
            for fmt in self.output_formats:
                if isinstance(fmt, SeqWriter):
                    fmt.writeseq(map(str, args))

    def set_level(self, level):
        self.level = level

    def set_comm(self, comm):
        self.comm = comm

    def get_dir(self):
        return self.dir

    def close(self):
        for fmt in self.output_formats:
            fmt.close()


def get_rank_without_mpi_import():
    """This process's MPI rank read from the launcher's environment (0 when not under MPI)."""
    for varname in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"):
        if varname in os.environ:
            return int(os.environ[varname])
    return 0


def mpi_weighted_mean(comm, local_name2valcount):
    """
    Average values over the ranks of `comm`, weighted by their counts.

    :param comm: an mpi4py-style communicator (`gather`, `rank`).
    :param local_name2valcount: dict name -> (value, count) on this rank.
    :return: dict name -> weighted mean on rank 0, {} on other ranks. Values that are not
        numbers are skipped with a warning.
    """
    all_name2valcount = comm.gather(local_name2valcount)
    if comm.rank != 0:
        return {}
    name2sum = defaultdict(float)
    name2count = defaultdict(float)
    for n2vc in all_name2valcount:
        for name, (val, count) in n2vc.items():
            try:
                val = float(val)
            except (TypeError, ValueError):
                warnings.warn(f"WARNING: tried to compute mean on non-float {name}={val}")
            else:
                name2sum[name] += val * count
                name2count[name] += count
    return {name: name2sum[name] / name2count[name] for name in name2sum}


def default_dir():
    """A fresh `<tmp>/openai-<timestamp>` path (not created), the folder when none is given."""
    return os.path.join(tempfile.gettempdir(), datetime.datetime.now().strftime("openai-%Y-%m-%d-%H-%M-%S-%f"))


def configure(dir=None, format_strs=None, comm=None, log_suffix="", append=False):
    """
    Make a new current logger.

    :param dir: log directory; default `$OPENAI_LOGDIR`, else `default_dir()`.
    :param format_strs: list of format names (see KNOWN_FORMATS); default from the environment.
    :param comm: optional mpi4py communicator; `dumpkvs` then writes means over its ranks.
    :param log_suffix: appended to output file names (ranks > 0 also get "-rank%03i").
    :param append: continue the log and table files already in `dir` (see the module docstring).
    """
    if dir is None:
        dir = os.getenv("OPENAI_LOGDIR")
    if dir is None:
        dir = default_dir()
    dir = os.path.expanduser(os.fspath(dir))
    os.makedirs(dir, exist_ok=True)

    rank = get_rank_without_mpi_import()
    if rank > 0:
        log_suffix = log_suffix + "-rank%03i" % rank

    if format_strs is None:
        if rank == 0:
            format_strs = os.getenv("OPENAI_LOG_FORMAT", "stdout,log,csv").split(",")
        else:
            format_strs = os.getenv("OPENAI_LOG_FORMAT_MPI", "log").split(",")
    format_strs = [f.strip() for f in format_strs if f and f.strip()]
    output_formats = [make_output_format(f, dir, log_suffix, append=append) for f in format_strs]

    if Logger.CURRENT is not None and Logger.CURRENT is not Logger.DEFAULT:
        Logger.CURRENT.close()
    Logger.CURRENT = Logger(dir=dir, output_formats=output_formats, comm=comm)
    if output_formats:
        log("Logging to %s" % dir)


def _configure_default_logger():
    configure()
    Logger.DEFAULT = Logger.CURRENT


def reset():
    """Go back to the default logger, closing the current one."""
    if Logger.CURRENT is not Logger.DEFAULT:
        Logger.CURRENT.close()
        Logger.CURRENT = Logger.DEFAULT
        log("Reset logger")


@contextmanager
def scoped_configure(dir=None, format_strs=None, comm=None):
    """Use a freshly configured logger inside the block, then restore the previous one."""
    prevlogger = Logger.CURRENT
    Logger.CURRENT = None  # so configure() does not close the logger we restore afterwards
    configure(dir=dir, format_strs=format_strs, comm=comm)
    try:
        yield
    finally:
        Logger.CURRENT.close()
        Logger.CURRENT = prevlogger
