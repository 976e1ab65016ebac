"""
The two source images of an interpolation, read from an image folder or an npz, and checked.

- `--data_dir DIR`: the images of DIR in the training loader's order (files found recursively,
  sorted), the first two or the two named by `--indices i,j`. Pixels are used as they are (RGB,
  no resizing or cropping), so both must already have the model's size.
- `--base_samples FILE.npz`: rows `--indices i,j` of its `arr_0` (uint8 [M, H, W, 3], as written
  by the sampling scripts).

Every problem is a ValueError that names the flag, the file and what to change.
"""

import os
import zipfile

import numpy as np

from ..data.image_folder import list_image_files_recursively, open_rgb


def parse_indices(spec):
    """
    :param spec: the --indices value, "i,j" with two non-negative integers.
    :return: (i, j) as ints.
    :raises ValueError: unless spec names exactly two non-negative integers.
    """
    parts = [p.strip() for p in str(spec).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) < 0:
        raise ValueError(f"--indices must be two non-negative integers 'i,j' (the sources), got {spec!r}")
    return values[0], values[1]


def _pick(count, indices, what):
    for i in indices:
        if i >= count:
            raise ValueError(f"--indices {indices[0]},{indices[1]}: {what} has {count} images, "
                             f"so indices run from 0 to {count - 1}")


def folder_sources(data_dir, indices=(0, 1)):
    """
    :param data_dir: a folder searched recursively for jpg/jpeg/png/gif files.
    :param indices: positions in the sorted file list.
    :return: (uint8 [2, H, W, 3] pixels, the two file paths).
    :raises ValueError: for a missing folder, too few images, unreadable files or two sizes.
    """
    if not os.path.isdir(data_dir):
        raise ValueError(f"--data_dir {data_dir!r} is not a folder")
    files = list_image_files_recursively(data_dir)
    _pick(len(files), indices, f"--data_dir {data_dir!r}")
    paths = [files[i] for i in indices]
    images = [np.asarray(open_rgb(p)) for p in paths]
    if images[0].shape != images[1].shape:
        raise ValueError(
            f"--data_dir: the sources have different sizes, {_size(images[0])} ({paths[0]}) and "
            f"{_size(images[1])} ({paths[1]}); interpolation needs two images of the model's size"
        )
    return np.stack(images), paths


def npz_sources(path, indices=(0, 1)):
    """
    :param path: an npz whose arr_0 is uint8 [M, H, W, 3].
    :param indices: rows of arr_0.
    :return: uint8 [2, H, W, 3].
    :raises ValueError: for a missing or unreadable file, a wrong arr_0 or rows out of range.
    """
    if not os.path.isfile(path):
        raise ValueError(f"--base_samples {path!r}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" not in f.files:
                raise ValueError(f"it has arrays {sorted(f.files)} but no 'arr_0' (images)")
            images = f["arr_0"]
    except (OSError, EOFError, ValueError, AttributeError, zipfile.BadZipFile) as e:
        raise ValueError(f"--base_samples {path!r} is not a readable npz of images ({e})") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"--base_samples {path!r}: arr_0 is {images.dtype} {images.shape}, expected "
                         f"uint8 images [M, H, W, 3]")
    _pick(len(images), indices, f"--base_samples {path!r}")
    return images[list(indices)]


def _size(image):
    return f"{image.shape[1]}x{image.shape[0]}"


def check_model_size(images, image_size, flag):
    """
    :param images: uint8 [2, H, W, 3] sources.
    :param image_size: the side the model was built for (--image_size).
    :param flag: the flag the sources came from, for the message.
    :raises ValueError: unless H == W == image_size.
    """
    h, w = images.shape[1:3]
    if (h, w) != (image_size, image_size):
        raise ValueError(
            f"{flag}: the sources are {w}x{h} pixels but the model takes {image_size}x{image_size} "
            f"(--image_size {image_size}); resize or crop them to {image_size}x{image_size} first"
        )
    return images
