"""
Resumable sample shards.

A sampling run of N samples in batches of B is cut into ceil(N / B) global shards; shard k holds
samples [k*B, min((k+1)*B, N)). Each finished shard is written atomically as
`<out_dir>/sample_shards-<key>/shard_<k>.npz`, where <key> hashes the run's configuration (flags,
checkpoint fingerprints, seed), so a run with a different configuration never reuses them. A rerun
of the same command skips finished shards. Only when every shard exists is the final npz assembled;
the shard folder is then removed.

The folder also holds `run.json` (the configuration and the seed actually used), so an unseeded run
that is killed resumes with the seed it started with.
"""

import hashlib
import json
import os
import shutil

import numpy as np

from ..runtime.fileio import atomic_savez, atomic_write

SHARD_DIR_PREFIX = "sample_shards-"


def file_fingerprint(path):
    """
    Identify a checkpoint file cheaply (absolute path, size, modification time).

    :param path: a file path or "" (no file).
    :return: a JSON-serialisable dict, or None for "".
    """
    if not path:
        return None
    if not os.path.exists(path):
        return {"path": os.path.abspath(path)}
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def config_key(config):
    """
    Stable short hash of a JSON-serialisable configuration dict.

    :param config: dict of flags and fingerprints.
    :return: a 16-character hex string.
    """
    blob = json.dumps(config, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def shard_ranges(num_samples, batch_size):
    """
    Global shard boundaries.

    :param num_samples: total samples N > 0.
    :param batch_size: samples per shard B > 0.
    :return: list of (start, end) pairs covering [0, N) in order.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return [(s, min(s + batch_size, num_samples)) for s in range(0, num_samples, batch_size)]


class ShardStore:
    """
    The shard folder of one sampling configuration.

    :param out_dir: the run's output (log) directory.
    :param config: JSON-serialisable dict identifying the run; its "seed" entry may be None.
    """

    def __init__(self, out_dir, config):
        self.config = config
        self.key = config_key(config)
        self.dir = os.path.join(out_dir, SHARD_DIR_PREFIX + self.key)
        self.seed = None

    def open(self, fresh_seed):
        """
        Create the folder (or reopen it) and settle the seed.

        :param fresh_seed: seed to use if the config has none and no earlier run recorded one.
        :return: the seed of this run.
        """
        os.makedirs(self.dir, exist_ok=True)
        meta_path = os.path.join(self.dir, "run.json")
        if os.path.exists(meta_path):
            with open(meta_path) as f:
                self.seed = int(json.load(f)["seed"])
            return self.seed
        seed = self.config.get("seed")
        self.seed = fresh_seed if seed is None else int(seed)
        atomic_write(meta_path, lambda f: f.write(self.describe()), binary=False)
        return self.seed

    def describe(self):
        """JSON text of the configuration and the seed in use (after `open`)."""
        return json.dumps({"config": self.config, "seed": self.seed}, indent=1, sort_keys=True, default=str)

    def shard_path(self, k):
        return os.path.join(self.dir, f"shard_{k:06d}.npz")

    def load(self, k, start, end):
        """
        Read shard k if it exists and covers exactly [start, end).

        :return: dict of arrays (without the index array), or None when missing or unusable.
        """
        path = self.shard_path(k)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError, EOFError):
            return None
        idx = arrays.pop("indices", None)
        if idx is None or not np.array_equal(idx, np.arange(start, end)):
            return None
        if any(a.shape[0] != end - start for a in arrays.values()):
            return None
        return arrays

    def done(self, ranges):
        """
        :param ranges: output of `shard_ranges`.
        :return: sorted list of shard numbers already finished.
        """
        return [k for k, (s, e) in enumerate(ranges) if self.load(k, s, e) is not None]

    def count_written(self, ranges):
        """
        :param ranges: output of `shard_ranges`.
        :return: how many shard files exist (cheap: files are written atomically, so an existing
                 file is complete; `done` also checks their contents).
        """
        return sum(os.path.exists(self.shard_path(k)) for k in range(len(ranges)))

    def save(self, k, start, end, arrays):
        """
        Atomically write shard k.

        :param arrays: dict name -> array with first dimension end - start (e.g. arr_0, arr_1).
        """
        for name, a in arrays.items():
            if a.shape[0] != end - start:
                raise ValueError(f"shard {k} array {name} has {a.shape[0]} rows, expected {end - start}")
        atomic_savez(self.shard_path(k), indices=np.arange(start, end, dtype=np.int64), **arrays)

    def assemble(self, ranges):
        """
        Concatenate every shard in order.

        :return: dict name -> array with exactly ranges[-1][1] rows.
        :raises RuntimeError: if a shard is missing or the parts disagree (never a partial result).
        """
        parts = []
        for k, (s, e) in enumerate(ranges):
            arrays = self.load(k, s, e)
            if arrays is None:
                raise RuntimeError(f"shard {k} ({self.shard_path(k)}) is missing or unreadable")
            parts.append(arrays)
        names = sorted(parts[0])
        if any(sorted(p) != names for p in parts):
            raise RuntimeError("shards disagree on their arrays; remove " + self.dir)
        out = {name: np.concatenate([p[name] for p in parts], axis=0) for name in names}
        total = ranges[-1][1]
        if any(a.shape[0] != total for a in out.values()):
            raise RuntimeError(f"assembled {[a.shape[0] for a in out.values()]} rows, expected {total}")
        return out

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)
