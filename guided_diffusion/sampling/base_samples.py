"""The low-resolution inputs of super-resolution sampling (`--base_samples`), checked on load."""

import os
import zipfile

import numpy as np

from .labels import check_labels


def _read_npz(path):
    """:return: ({"arr_0": ..., "arr_1": ...} as present, sorted names of every array)."""
    try:
        f = np.load(path, allow_pickle=False)
        if not hasattr(f, "files"):
            raise ValueError("it holds a single array (.npy), not named arrays")
        with f:
            arrays = {name: f[name] for name in f.files if name in ("arr_0", "arr_1")}
            return arrays, sorted(f.files)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"--base_samples {path!r} is not a readable npz file ({e})") from None


def load_base_samples(path, small_size, class_cond, num_classes):
    """
    Read and check the low-resolution inputs of super-resolution sampling.

    :param path: npz with `arr_0` uint8 [M, small_size, small_size, 3] and, for class-conditional
                 models, `arr_1` integer labels [M] in [0, num_classes).
    :return: (images uint8 [M, s, s, 3], labels int64 [M] or None).
    :raises ValueError: naming the file and what is wrong with it.
    """
    if not path:
        raise ValueError("--base_samples is required (an npz written by image_sample.py or classifier_sample.py)")
    if not os.path.isfile(path):
        raise ValueError(f"--base_samples {path!r}: no such file")
    arrays, names = _read_npz(path)
    if "arr_0" not in arrays:
        raise ValueError(f"--base_samples {path!r} has arrays {names}, but needs 'arr_0' (images)")
    images, labels = arrays["arr_0"], arrays.get("arr_1")
    want = ("M", small_size, small_size, 3)
    if images.ndim != 4 or tuple(images.shape[1:]) != want[1:] or images.shape[0] == 0:
        raise ValueError(f"--base_samples {path!r}: arr_0 has shape {images.shape}, expected {want} with M >= 1 "
                         f"(--small_size is {small_size})")
    if images.dtype != np.uint8:
        raise ValueError(f"--base_samples {path!r}: arr_0 has dtype {images.dtype}, expected uint8 pixels")
    if not class_cond:
        return images, None
    if labels is None:
        raise ValueError(f"--base_samples {path!r} has no 'arr_1' labels, which a class-conditional model needs")
    if labels.shape != (images.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"--base_samples {path!r}: arr_1 has {labels.dtype} shape {labels.shape}, "
                         f"expected integer labels of shape ({images.shape[0]},)")
    check_labels(labels, num_classes, f"--base_samples {path!r}: labels")
    return images, labels.astype(np.int64)
