"""
The final files of a sampling run: `samples_{N}x{H}x{W}x3.npz` (arr_0 uint8 images, arr_1 int64
labels when present), a PNG grid of the first samples and the JSON run record beside them.
"""

import os

import numpy as np

from ..runtime import logger
from ..runtime.fileio import atomic_savez, atomic_write
from .grid import save_grid


def save_samples(out_dir, arrays, grid=True, description=None):
    """
    Write the final `samples_{N}x{H}x{W}x3.npz` (arr_0, and arr_1 when present) atomically, a
    PNG grid of the first 64 samples beside it, and (when given) `description`, the JSON text of
    the run record, as `samples_{N}x{H}x{W}x3.json`.

    :param arrays: {"arr_0": uint8 [N, H, W, 3], optionally "arr_1": integer labels [N]}.
    :return: the npz path.
    """
    arr = arrays["arr_0"]
    stem = os.path.join(out_dir, "samples_" + "x".join(str(s) for s in arr.shape))
    logger.log(f"saving to {stem}.npz")
    payload = {"arr_0": arr}
    if "arr_1" in arrays:
        payload["arr_1"] = arrays["arr_1"].astype(np.int64)
    atomic_savez(stem + ".npz", **payload)
    if grid:
        save_grid(stem + ".png", arr, payload.get("arr_1"))
        logger.log(f"grid of the first samples: {stem}.png")
    if description is not None:
        atomic_write(stem + ".json", lambda f: f.write(description), binary=False)
    return stem + ".npz"
