"""
The embedded dataset: 1,797 labelled 8x8 handwritten digits (the copy scikit-learn bundles, from
the UCI "Optical Recognition of Handwritten Digits" test set, CC BY 4.0), stored in
`guided_diffusion/data/digits.npz` (regenerate with `scripts/make_digits_npz.py`).

Training scripts use it when `--data_dir` is not given. A fixed, class-balanced held-out split
(30 per class, 300 images) never enters training; the demo and the evaluator's reference batch
use it. Images are rendered as a white digit on a black background: the 0..16 ink values are
scaled to 0..255, upscaled from 8x8 with bicubic interpolation to the requested size, and
repeated on the three RGB channels.

Materialised image folders (`<label>_<index>.png`, the index being the position in the
original 1,797) live under `$GUIDED_DIFFUSION_CACHE` (default `~/.cache/guided_diffusion`)
in `digits/<split>_<size>px`; they are written once (into a temporary folder then renamed)
and reused afterwards.
"""

import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from ..runtime.fileio import atomic_savez

# The ten digit classes 0..9 of this dataset (not the 1000 classes of the released models).
NUM_DIGIT_CLASSES = 10
NUM_DIGITS = 1797
HELDOUT_PER_CLASS = 30
SPLIT_SEED = 0
SPLITS = ("train", "heldout", "all")
_COMPLETE_MARKER = ".complete"
_NPZ_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")


def load_digits_arrays():
    """
    The raw embedded data.

    :return: (images uint8 [1797, 8, 8] with ink intensity 0..16, labels int64 [1797] in 0..9).
    """
    with np.load(_NPZ_PATH, allow_pickle=False) as f:
        return f["images"].copy(), f["labels"].astype(np.int64)


def split_indices(split):
    """
    Indices (sorted, into the 1,797 digits) of a split.

    :param split: "train" (1,497 images), "heldout" (300: 30 of each class, fixed by a seeded
        permutation) or "all".
    :return: int64 array.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; allowed: {', '.join(SPLITS)}")
    _, labels = load_digits_arrays()
    if split == "all":
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.RandomState(SPLIT_SEED)
    heldout = []
    for c in range(NUM_DIGIT_CLASSES):
        members = np.flatnonzero(labels == c)
        heldout.append(rng.permutation(members)[:HELDOUT_PER_CLASS])
    heldout = np.sort(np.concatenate(heldout))
    if split == "heldout":
        return heldout.astype(np.int64)
    return np.setdiff1d(np.arange(len(labels)), heldout).astype(np.int64)


def render(images8, image_size):
    """
    Turn 8x8 ink maps into RGB images: white digit on black, bicubic upscaling.

    :param images8: uint8 [N, 8, 8] with values 0..16.
    :param image_size: output side length (>= 8).
    :return: uint8 [N, image_size, image_size, 3].
    """
    if int(image_size) < 8:
        raise ValueError(f"image_size must be at least 8 for the digits, got {image_size}")
    grey = np.clip(np.round(images8.astype(np.float32) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    out = np.empty((len(grey), image_size, image_size, 3), dtype=np.uint8)
    for i, g in enumerate(grey):
        big = Image.fromarray(g, mode="L").resize((image_size, image_size), resample=Image.BICUBIC)
        out[i] = np.asarray(big)[:, :, None]
    return out


def digits_images(split, image_size):
    """
    Rendered images and labels of a split.

    :return: (uint8 [N, image_size, image_size, 3], int64 [N] labels, int64 [N] indices).
    """
    idx = split_indices(split)
    images8, labels = load_digits_arrays()
    return render(images8[idx], image_size), labels[idx], idx


def default_cache_dir():
    """`$GUIDED_DIFFUSION_CACHE`, else `~/.cache/guided_diffusion`."""
    return os.path.expanduser(os.environ.get("GUIDED_DIFFUSION_CACHE") or "~/.cache/guided_diffusion")


def folder_is_complete(path):
    return os.path.isfile(os.path.join(path, _COMPLETE_MARKER))


def materialize_digits(split="train", image_size=32, root=None):
    """
    Write a split as an image folder the ordinary loader reads (class from the file name
    prefix), or reuse it when a complete one already exists. Safe when several processes
    race: each writes its own temporary folder and only the first rename wins.

    :param split: "train", "heldout" or "all".
    :param image_size: side length of the PNGs.
    :param root: cache root; default `default_cache_dir()`.
    :return: (folder path, True if it was reused rather than written).
    """
    root = default_cache_dir() if root is None else os.fspath(root)
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; allowed: {', '.join(SPLITS)}")
    final = os.path.join(root, "digits", f"{split}_{int(image_size)}px")
    if folder_is_complete(final):
        return final, True
    images, labels, idx = digits_images(split, int(image_size))
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{split}_{int(image_size)}px-", dir=os.path.dirname(final))
    try:
        for img, y, i in zip(images, labels, idx):
            Image.fromarray(img).save(os.path.join(tmp, f"{y}_{i:05d}.png"))
        with open(os.path.join(tmp, _COMPLETE_MARKER), "w") as f:
            f.write(f"{len(idx)}\n")
        if os.path.isdir(final) and not folder_is_complete(final):
            shutil.rmtree(final, ignore_errors=True)  # leftover of an older, interrupted layout
        try:
            os.rename(tmp, final)
        except OSError:
            if not folder_is_complete(final):
                raise
            return final, True  # another process finished first
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final, False


def write_reference_npz(path, image_size=32, split="heldout"):
    """
    Write a split as an evaluator reference batch (atomically).

    :param path: output .npz path.
    :return: the number of images written. Keys: `arr_0` uint8 [N, H, W, 3], `arr_1` int64 [N].
    """
    images, labels, _ = digits_images(split, int(image_size))
    atomic_savez(path, arr_0=images, arr_1=labels)
    return len(labels)


def resolve_data_dir(data_dir, image_size, split="train", log=print):
    """
    The scripts' rule: use `data_dir` when given, else the embedded digits at `image_size`.

    :param log: callable used to report the choice.
    :return: (directory, True when the embedded digits were chosen).
    """
    if data_dir:
        return data_dir, False
    folder, reused = materialize_digits(split, image_size)
    n = len(split_indices(split))
    log(
        f"no --data_dir given: using the embedded digits ({split} split, {n} images, "
        f"{image_size}x{image_size}, {NUM_DIGIT_CLASSES} classes) {'reused from' if reused else 'written to'} {folder}"
    )
    return folder, True
