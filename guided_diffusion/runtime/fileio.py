"""Crash-safe file writing: write to a temporary file beside the target, then rename.

A kill at any moment leaves either the old file or the complete new one, never a truncated file.
"""

import os
import tempfile

import numpy as np
import torch


def atomic_write(path, write_fn, binary=True):
    """
    Create or replace `path` atomically.

    :param path: destination file path (its directory must exist).
    :param write_fn: callable taking an open file object and writing the content.
    :param binary: open the temporary file in binary mode.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_torch_save(obj, path):
    """`torch.save(obj, path)` that never leaves a partial file at `path`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_savez(path, **arrays):
    """`np.savez(path, **arrays)` (exact file name, no `.npz` appended) written atomically."""
    atomic_write(path, lambda f: np.savez(f, **arrays))
