"""
Checkpoint names, discovery, and the small side file that makes resuming exact.

A training checkpoint at global step N is the set of files
    model{N:06d}.pt, ema_{rate}_{N:06d}.pt (one per EMA rate), opt{N:06d}.pt
(plain state dicts, as the original writes them) plus the side file
    train_state{N:06d}.json
written last. The side file is JSON:
    {"format": 1, "step": N, "world_size": W, "lg_loss_scale": float or null,
     "schedule_sampler": {...} or null,
     "ranks": [{"rng": {"torch": b64, "cuda": [b64, ...], "numpy": [...], "python": [...]},
                "data": {"seed", "consumed", "batch_size", "num_items"} or null}, ...one per rank]}
`auto` resumption picks the newest step whose files are all present.
"""

import base64
import json
import os
import random
import re

import numpy as np
import torch as th
import torch.distributed as dist

from ..runtime.fileio import atomic_write

STATE_FORMAT = 1
_MODEL_RE = re.compile(r"^model(\d+)\.pt$")
_CHECKPOINT_FILE_RE = re.compile(r"^(model\d+\.pt|ema_.+_\d+\.pt|opt\d+\.pt|train_state\d+\.json)$")


def model_filename(step):
    return f"model{step:06d}.pt"


def ema_filename(rate, step):
    """`ema_<rate>_<step>.pt` with the rate printed as Python prints the float (like the original)."""
    return f"ema_{float(rate)}_{step:06d}.pt"


def opt_filename(step):
    return f"opt{step:06d}.pt"


def state_filename(step):
    return f"train_state{step:06d}.json"


def is_checkpoint_file(name):
    """True for the file names a checkpoint consists of (model, EMA, optimizer, side file)."""
    return bool(_CHECKPOINT_FILE_RE.match(name))


def parse_resume_step_from_filename(filename):
    """
    The global step in a checkpoint file name such as `path/to/model012000.pt`.

    :raises ValueError: when the name does not end in `model<digits>.pt` (the original silently
        returned 0, restarting the step count and the lr schedule).
    """
    base = os.path.basename(os.fspath(filename))
    m = _MODEL_RE.match(base)
    if not m:
        raise ValueError(
            f"cannot read the training step from checkpoint name {base!r}: expected 'model<step>.pt', "
            f"e.g. 'model010000.pt' (rename the file, or start a new run with it loaded another way)"
        )
    return int(m.group(1))


def checkpoint_steps(log_dir):
    """Sorted steps N for which `model{N}.pt` exists in `log_dir`."""
    if not log_dir or not os.path.isdir(log_dir):
        return []
    steps = []
    for name in os.listdir(log_dir):
        m = _MODEL_RE.match(name)
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def checkpoint_is_complete(log_dir, step, ema_rates=(), need_opt=True, need_state=True):
    """True when every file of the checkpoint at `step` exists."""
    names = [model_filename(step)] + [ema_filename(r, step) for r in ema_rates]
    if need_opt:
        names.append(opt_filename(step))
    if need_state:
        names.append(state_filename(step))
    return all(os.path.isfile(os.path.join(log_dir, n)) for n in names)


def find_latest_checkpoint(log_dir, ema_rates=(), need_opt=True):
    """
    Path of the newest complete `model{N}.pt` in `log_dir`, or None. Steps with a side file
    are preferred; directories written by the original (no side files) also work.
    """
    steps = checkpoint_steps(log_dir)
    for need_state in (True, False):
        for step in reversed(steps):
            if checkpoint_is_complete(log_dir, step, ema_rates, need_opt=need_opt, need_state=need_state):
                return os.path.join(log_dir, model_filename(step))
    return None


# ----------------------------------------------------------------------------------------------
# RNG state <-> JSON
# ----------------------------------------------------------------------------------------------


def _b64(t):
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s):
    return th.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def capture_rng_state():
    """JSON-able snapshot of the torch (CPU and CUDA), numpy and Python global RNGs."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": _b64(th.get_rng_state()),
        "cuda": [_b64(s) for s in th.cuda.get_rng_state_all()] if th.cuda.is_available() else [],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng_state(state):
    """Inverse of `capture_rng_state`."""
    th.set_rng_state(_unb64(state["torch"]))
    if state.get("cuda") and th.cuda.is_available():
        cuda = [_unb64(s) for s in state["cuda"]]
        if len(cuda) == th.cuda.device_count():
            th.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ----------------------------------------------------------------------------------------------
# Schedule sampler state
# ----------------------------------------------------------------------------------------------

_SAMPLER_ARRAYS = ("_loss_history", "_loss_counts")


def sampler_state(sampler):
    """JSON-able state of a schedule sampler (None for stateless samplers such as uniform)."""
    if hasattr(sampler, "state_dict"):
        return {"state_dict": sampler.state_dict()}
    arrays = {k: getattr(sampler, k) for k in _SAMPLER_ARRAYS if hasattr(sampler, k)}
    if not arrays:
        return None
    return {k: {"dtype": str(v.dtype), "data": v.tolist()} for k, v in arrays.items()}


def load_sampler_state(sampler, state):
    """Inverse of `sampler_state`."""
    if state is None:
        return
    if "state_dict" in state:
        sampler.load_state_dict(state["state_dict"])
        return
    for k, v in state.items():
        current = getattr(sampler, k)
        arr = np.array(v["data"], dtype=v["dtype"])
        if arr.shape != current.shape:
            raise ValueError(
                f"schedule sampler state {k} has shape {arr.shape}, this run needs {current.shape} "
                f"(was diffusion_steps changed?)"
            )
        setattr(sampler, k, arr)


# ----------------------------------------------------------------------------------------------
# Side file
# ----------------------------------------------------------------------------------------------


def write_train_state(path, step, rank_states, lg_loss_scale=None, schedule_sampler=None):
    """
    Write the side file atomically.

    :param rank_states: list (one per rank, in rank order) of {"rng": ..., "data": ...}.
    """
    doc = {
        "format": STATE_FORMAT,
        "step": int(step),
        "world_size": len(rank_states),
        "lg_loss_scale": None if lg_loss_scale is None else float(lg_loss_scale),
        "schedule_sampler": schedule_sampler,
        "ranks": rank_states,
    }
    atomic_write(path, lambda f: f.write(json.dumps(doc, separators=(",", ":"))), binary=False)


def read_train_state(path):
    """Read a side file; returns None when it does not exist."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        doc = json.load(f)
    if doc.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: unsupported train state format {doc.get('format')!r} (expected {STATE_FORMAT})")
    return doc


def gather_rank_states(data_state):
    """
    Every rank's {"rng", "data"} in rank order (a collective call under torch.distributed).

    :param data_state: this rank's JSON-able data position (or None).
    """
    mine = {"rng": capture_rng_state(), "data": data_state}
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, mine)
        return states
    return [mine]


def restore_rank_state(doc, rank, world_size, log=None):
    """
    Restore this rank's RNGs from a side file document.

    :return: this rank's saved data position, or None when the world size changed (then the
        RNGs are left alone and `log` is told why).
    """
    if doc["world_size"] != world_size:
        if log is not None:
            log(f"checkpoint written by {doc['world_size']} ranks, now {world_size}: RNG and data order restart")
        return None
    mine = doc["ranks"][rank]
    restore_rng_state(mine["rng"])
    return mine.get("data")
