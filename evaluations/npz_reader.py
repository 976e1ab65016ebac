"""
Reading evaluation batches from .npz files: stream ``arr_0`` in batches without loading the whole
array, validate it, and read optional precomputed statistics.

An .npz is a zip of .npy members. For a C-ordered member we parse the .npy header with
``numpy.lib.format`` and then read raw bytes batch by batch from the zip member; this works for
both stored and deflate-compressed archives (zipfile decompresses as it reads). Fortran-ordered
members fall back to loading the member whole.
"""

import os
import zipfile

import numpy as np

STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")


class EvaluatorInputError(ValueError):
    """A user-supplied file is missing or malformed; the message says what to do."""


def _check_npz(path):
    if not os.path.isfile(path):
        raise EvaluatorInputError(f"{path}: file not found")
    if not zipfile.is_zipfile(path):
        raise EvaluatorInputError(f"{path}: not an .npz file (expected a zip of .npy arrays)")


def npz_keys(path):
    """
    :return: the array names stored in the .npz at ``path`` (without ".npy").
    """
    _check_npz(path)
    with zipfile.ZipFile(path) as zf:
        return [n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")]


class NpzArrayReader:
    """
    Batched reader for one array of an .npz file.

    :param path: the .npz file.
    :param name: the member, e.g. "arr_0".
    """

    def __init__(self, path, name="arr_0"):
        keys = npz_keys(path)
        if name not in keys:
            raise EvaluatorInputError(f"{path}: no array named {name!r} (found {sorted(keys)})")
        self.path = path
        self.name = name
        with zipfile.ZipFile(path) as zf, zf.open(name + ".npy") as f:
            shape, fortran, dtype = _read_header(f, path)
        self.shape = tuple(shape)
        self.dtype = dtype
        self.fortran_order = fortran

    def __len__(self):
        return self.shape[0] if self.shape else 0

    def iter_batches(self, batch_size):
        """
        Yield consecutive batches along the first axis.

        :param batch_size: rows per batch (the last one may be smaller).
        :return: generator of arrays [B, *shape[1:]] of ``self.dtype``.
        """
        if self.dtype.hasobject:
            raise EvaluatorInputError(f"{self.path}: {self.name} holds Python objects; refusing to unpickle")
        if self.fortran_order:
            with np.load(self.path, allow_pickle=False) as data:
                arr = data[self.name]
            for start in range(0, len(arr), batch_size):
                yield np.ascontiguousarray(arr[start : start + batch_size])
            return
        row_shape = self.shape[1:]
        row_bytes = int(np.prod(row_shape, dtype=np.int64)) * self.dtype.itemsize
        with zipfile.ZipFile(self.path) as zf, zf.open(self.name + ".npy") as f:
            _read_header(f, self.path)
            for start in range(0, len(self), batch_size):
                count = min(batch_size, len(self) - start)
                buf = _read_exactly(f, count * row_bytes, self.path)
                yield np.frombuffer(buf, dtype=self.dtype).reshape((count,) + row_shape)

    def read_all(self):
        """:return: the whole array (for small arrays and tests)."""
        return np.concatenate(list(self.iter_batches(max(1, len(self)))), axis=0)


def _read_header(f, path):
    """Parse an .npy header; leaves ``f`` at the first data byte. :return: (shape, fortran, dtype)."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        return np.lib.format._read_array_header(f, version)  # 3.0: utf-8 header
    except ValueError as exc:
        raise EvaluatorInputError(f"{path}: malformed .npy member: {exc}") from None


def _read_exactly(f, num_bytes, path):
    chunks, remaining = [], num_bytes
    while remaining > 0:
        chunk = f.read(remaining)
        if not chunk:
            raise EvaluatorInputError(f"{path}: file is truncated")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def open_image_batch(path, name="arr_0"):
    """
    Open and validate a batch of images: uint8 [N, H, W, 3] with N >= 2.

    :return: an :class:`NpzArrayReader`.
    """
    reader = NpzArrayReader(path, name)
    shape, dtype = reader.shape, reader.dtype
    if dtype != np.uint8:
        hint = ""
        if dtype.kind == "f":
            hint = (
                "; convert float images to uint8 in [0, 255] first, e.g. "
                "np.clip((x + 1) * 127.5, 0, 255).astype(np.uint8) for x in [-1, 1]"
            )
        raise EvaluatorInputError(f"{path}: {name} has dtype {dtype}, expected uint8{hint}")
    if len(shape) != 4:
        raise EvaluatorInputError(f"{path}: {name} has shape {shape}, expected [N, H, W, 3] (rank 4)")
    if shape[3] != 3:
        raise EvaluatorInputError(
            f"{path}: {name} has {shape[3]} channels (shape {shape}), expected 3 (RGB, NHWC order)"
        )
    if shape[1] < 1 or shape[2] < 1:
        raise EvaluatorInputError(f"{path}: {name} has empty images, shape {shape}")
    if shape[0] < 2:
        raise EvaluatorInputError(f"{path}: {name} holds {shape[0]} image(s); at least 2 are needed")
    return reader


def read_arrays(path, names):
    """
    Read the listed members that are present (small arrays such as statistics).

    :return: dict name -> array for the names found.
    """
    present = set(npz_keys(path))
    wanted = [n for n in names if n in present]
    if not wanted:
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {n: data[n] for n in wanted}
    except ValueError as exc:  # object arrays
        raise EvaluatorInputError(f"{path}: cannot read {wanted}: {exc}") from None


def read_statistics(path):
    """
    Read precomputed ``mu``/``sigma`` (pool) and ``mu_s``/``sigma_s`` (spatial) if present.

    :return: None if the file carries none, else dict with "pool" and "spatial" (mu, sigma)
             float64 pairs; raises EvaluatorInputError if incomplete, misshapen or not finite.
    """
    found = read_arrays(path, STAT_KEYS)
    if not found:
        return None
    missing = [k for k in STAT_KEYS if k not in found]
    if missing:
        raise EvaluatorInputError(f"{path}: has {sorted(found)} but lacks {missing}; need all of {list(STAT_KEYS)}")
    out = {}
    for kind, (mu_key, sigma_key) in (("pool", ("mu", "sigma")), ("spatial", ("mu_s", "sigma_s"))):
        mu, sigma = found[mu_key], found[sigma_key]
        out[kind] = validate_stats(mu, sigma, f"{path}: {mu_key}/{sigma_key}")
    return out


def validate_stats(mu, sigma, what):
    """
    :param mu: [D] mean; :param sigma: [D, D] covariance.
    :return: (mu, sigma) as float64.
    """
    mu, sigma = np.asarray(mu), np.asarray(sigma)
    if mu.dtype.kind not in "fiu" or sigma.dtype.kind not in "fiu":
        raise EvaluatorInputError(f"{what}: statistics must be numeric, got {mu.dtype}/{sigma.dtype}")
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise EvaluatorInputError(
            f"{what}: shapes {mu.shape} and {sigma.shape} do not match; expected [D] and [D, D]"
        )
    mu, sigma = mu.astype(np.float64), sigma.astype(np.float64)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise EvaluatorInputError(f"{what}: statistics contain NaN or infinite values")
    return mu, sigma
