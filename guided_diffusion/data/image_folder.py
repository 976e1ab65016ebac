"""
Image-folder loading with the original's rules, plus a resumable position.

Files ending jpg/jpeg/png/gif are found recursively in sorted order; with `class_cond` the class
is the file name's part before the first "_", classes indexed in sorted order
(`class_names_from_file_names` gives that mapping; training runs record it in args.json). Each
image is brought to size by repeated 2x BOX downscaling while its short side is at least twice
the target, a BICUBIC resize of the short side, then a center crop (or a random crop with the
short side drawn from [size, size / 0.8]), an optional random horizontal flip, and scaling to
[-1, 1].
Under MPI rank r of w reads files[r::w].

`load_data` returns an endless iterator of `(batch, cond)` where batch is float32
[N, 3, size, size] and cond is `{"y": int64 [N]}` with class_cond, else `{}`. Its order and
augmentations are a pure function of (seed, epoch, position), so a `state_dict()` of three
integers lets a resumed run continue exactly where it stopped.
"""

import math
import os
import random
import signal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..runtime import distributed as dist_util
from ..runtime import logger

from .batch_map import MappedBatches
from .pixels import uint8_to_unit_range

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "gif")


def load_data(
    *,
    data_dir,
    batch_size,
    image_size,
    class_cond=False,
    deterministic=False,
    random_crop=False,
    random_flip=True,
    seed=None,
    shard=None,
    num_shards=None,
    num_workers=None,
):
    """
    Endless batches from an image folder.

    :param data_dir: folder searched recursively for images.
    :param batch_size: images per batch (per rank); incomplete batches are dropped.
    :param image_size: output side length.
    :param class_cond: also return labels from the file name prefixes, as `cond["y"]`.
    :param deterministic: keep file order instead of reshuffling every epoch.
    :param random_crop: random-scale crop augmentation instead of a center crop.
    :param random_flip: flip horizontally with probability 1/2.
    :param seed: seed of the order and augmentations; default drawn from torch's global RNG
        (so `torch.manual_seed` makes a run reproducible).
    :param shard, num_shards: this reader's slice files[shard::num_shards]; default the
        distributed rank and world size.
    :param num_workers: DataLoader worker processes; default 1 with CUDA, 0 on CPU.
    :return: a `ResumableLoader` (an iterator; `next(data)` gives `(batch, cond)`).
    :raises ValueError: for a missing or empty folder, a file that cannot be decoded (named),
        file names without a class prefix under class_cond, or a shard smaller than batch_size.
    """
    data_dir = os.fspath(data_dir) if data_dir else ""
    all_files = _list_data_dir(data_dir)
    classes = classes_from_file_names(all_files) if class_cond else None
    if shard is None or num_shards is None:
        shard, num_shards = dist_util.get_rank(), dist_util.get_world_size()
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    dataset = ImageDataset(
        image_size, all_files, classes=classes, shard=shard, num_shards=num_shards,
        random_crop=random_crop, random_flip=random_flip,
    )
    _check_shard(dataset, batch_size, f"data directory {data_dir!r} has {len(all_files)} images")
    if num_workers is None:
        num_workers = 1 if torch.cuda.is_available() else 0
    return ResumableLoader(
        dataset, batch_size, shuffle=not deterministic, seed=seed + 1_000_003 * shard, num_workers=num_workers
    )


def _check_shard(dataset, batch_size, source):
    """
    Raise a ValueError when the shard cannot give one batch, or when an image it would read
    first cannot be decoded (the error names the file). A short shard is checked whole: a broken
    file there would explain the shortfall better than the count.
    """
    short = len(dataset) < batch_size
    for path in dataset.local_images[: None if short else 1]:
        open_rgb(path)
    if short:
        raise ValueError(
            f"{source}, so reader {dataset.shard} of {dataset.num_shards} gets {len(dataset)}, "
            f"fewer than batch_size={batch_size}"
        )


def _list_data_dir(data_dir):
    """The images of a data folder; a ValueError naming the folder when there are none."""
    if not data_dir:
        raise ValueError("unspecified data directory")
    if not os.path.isdir(data_dir) and "://" not in data_dir:
        raise ValueError(f"data directory {data_dir!r} does not exist or is not a directory")
    all_files = list_image_files_recursively(data_dir)
    if not all_files:
        raise ValueError(
            f"data directory {data_dir!r} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)} files)"
        )
    return all_files


def list_image_files_recursively(data_dir):
    """Sorted image paths under `data_dir` (directories entered in sorted order)."""
    data_dir = os.fspath(data_dir)
    if "://" in data_dir:
        import blobfile as bf

        listdir, join, isdir = bf.listdir, bf.join, bf.isdir
    else:
        listdir, join, isdir = os.listdir, os.path.join, os.path.isdir
    results = []
    for entry in sorted(listdir(data_dir)):
        full_path = join(data_dir, entry)
        ext = entry.split(".")[-1]
        if "." in entry and ext.lower() in IMAGE_EXTENSIONS:
            results.append(full_path)
        elif isdir(full_path):
            results.extend(list_image_files_recursively(full_path))
    return results


_list_image_files_recursively = list_image_files_recursively  # the original's (private) name


def classes_from_file_names(paths):
    """
    Class indices from the file name part before the first "_", numbered in sorted order.

    :raises ValueError: when some file name has no "_" prefix.
    """
    prefixes = _class_prefixes(paths)
    index = {x: i for i, x in enumerate(sorted(set(prefixes)))}
    return [index[x] for x in prefixes]


def class_names_from_file_names(paths):
    """
    The class mapping of `classes_from_file_names`: the sorted distinct prefixes, so that
    class i is named `names[i]`.

    :raises ValueError: when some file name has no "_" prefix.
    """
    return sorted(set(_class_prefixes(paths)))


def folder_class_names(data_dir):
    """
    The class mapping of an image folder (see `class_names_from_file_names`).

    :raises ValueError: for a missing or empty folder, or a file name without a class prefix.
    """
    return class_names_from_file_names(_list_data_dir(os.fspath(data_dir)))


def _class_prefixes(paths):
    names = [os.path.basename(p) for p in paths]
    unlabelled = [p for p, n in zip(paths, names) if "_" not in n]
    if unlabelled:
        raise ValueError(
            f"class_cond needs file names like '<class>_<anything>.png', but {len(unlabelled)} of "
            f"{len(paths)} files have no '_' prefix, e.g. {unlabelled[0]!r}"
        )
    return [n.split("_")[0] for n in names]


def open_rgb(path):
    """
    Decode one image file (local or blobfile URL) as an RGB PIL image, at its stored size.

    :raises ValueError: naming the file when it cannot be decoded.
    """
    try:
        if "://" in path:
            import blobfile as bf

            with bf.BlobFile(path, "rb") as f:
                pil_image = Image.open(f)
                pil_image.load()
        else:
            with Image.open(path) as pil_image:
                pil_image.load()
                return pil_image.convert("RGB")
        return pil_image.convert("RGB")
    except Exception as e:  # PIL raises many different types for corrupt files
        raise ValueError(f"cannot decode image {path!r}: {type(e).__name__}: {e}") from e


_open_rgb = open_rgb  # the name the image_datasets face re-exports


class ImageDataset(torch.utils.data.Dataset):
    """
    Indexable images of one shard. Item `(idx, rng)` -> (float32 [3, H, W] in [-1, 1], cond);
    `rng` (a `random.Random`) drives the augmentations; plain `idx` uses the `random` module.
    """

    def __init__(self, resolution, image_paths, classes=None, shard=0, num_shards=1, random_crop=False, random_flip=True):
        super().__init__()
        self.resolution = resolution
        self.shard, self.num_shards = shard, num_shards
        self.local_images = image_paths[shard:][::num_shards]
        self.local_classes = None if classes is None else classes[shard:][::num_shards]
        self.random_crop = random_crop
        self.random_flip = random_flip

    def __len__(self):
        return len(self.local_images)

    def __getitem__(self, item):
        idx, rng = item if isinstance(item, tuple) else (item, random)
        path = self.local_images[idx]
        pil_image = open_rgb(path)
        if self.random_crop:
            arr = random_crop_arr(pil_image, self.resolution, rng=rng)
        else:
            arr = center_crop_arr(pil_image, self.resolution)
        if self.random_flip and rng.random() < 0.5:
            arr = arr[:, ::-1]
        arr = uint8_to_unit_range(arr)
        out_dict = {}
        if self.local_classes is not None:
            out_dict["y"] = np.array(self.local_classes[idx], dtype=np.int64)
        return np.ascontiguousarray(np.transpose(arr, [2, 0, 1])), out_dict


def _downscale_box_while_large(pil_image, target):
    while min(*pil_image.size) >= 2 * target:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    return pil_image


def center_crop_arr(pil_image, image_size):
    """Resize the short side to `image_size` (BOX halvings then BICUBIC) and crop the center."""
    pil_image = _downscale_box_while_large(pil_image, image_size)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def random_crop_arr(pil_image, image_size, min_crop_frac=0.8, max_crop_frac=1.0, rng=random):
    """Resize the short side to a random size in [size/max_frac, size/min_frac], crop randomly."""
    min_smaller_dim_size = math.ceil(image_size / max_crop_frac)
    max_smaller_dim_size = math.ceil(image_size / min_crop_frac)
    smaller_dim_size = rng.randrange(min_smaller_dim_size, max_smaller_dim_size + 1)
    pil_image = _downscale_box_while_large(pil_image, smaller_dim_size)
    scale = smaller_dim_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = rng.randrange(arr.shape[0] - image_size + 1)
    crop_x = rng.randrange(arr.shape[1] - image_size + 1)
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


class _SeededItems(torch.utils.data.Dataset):
    """Maps (epoch, position, idx) to the dataset item with augmentation RNG seeded from them."""

    def __init__(self, dataset, seed):
        self.dataset = dataset
        self.seed = seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, idx = key
        rng = random.Random((self.seed * 1_000_003 + epoch) * 1_000_003 + idx)
        return self.dataset[idx, rng]


def _ignore_stop_signals(_worker_id):
    """Workers leave a terminal's Ctrl-C (sent to the whole process group) to the main process,
    which saves and stops cleanly. SIGTERM stays default: the loader uses it to end workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ResumableLoader:
    """
    Endless iterator over fixed-size batches: every epoch is a permutation of the shard drawn
    from (seed, epoch) (or the file order when not shuffling), incomplete batches are dropped.
    `state_dict()` / `load_state_dict()` save and restore the position.
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, num_workers=0):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_workers = num_workers
        self.batches_per_epoch = len(dataset) // batch_size
        self.consumed = 0  # batches handed out so far
        self._it = None

    def epoch_order(self, epoch):
        """Shard indices in the order of `epoch`."""
        if not self.shuffle:
            return list(range(len(self.dataset)))
        g = torch.Generator().manual_seed(self.seed * 1_000_033 + epoch)
        return torch.randperm(len(self.dataset), generator=g).tolist()

    def _batch_keys(self, start):
        step = start
        while True:
            epoch, pos = divmod(step, self.batches_per_epoch)
            order = self.epoch_order(epoch)
            for b in range(pos, self.batches_per_epoch):
                yield [(epoch, i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]
            step = (epoch + 1) * self.batches_per_epoch

    def _make_iter(self):
        items = _SeededItems(self.dataset, self.seed)
        if self.num_workers == 0:
            collate = torch.utils.data.default_collate
            return (collate([items[k] for k in keys]) for keys in self._batch_keys(self.consumed))
        # An own generator: otherwise creating the iterator draws from torch's global RNG, which
        # would differ between a resumed and an uninterrupted run.
        loader = torch.utils.data.DataLoader(
            items,
            batch_sampler=self._batch_keys(self.consumed),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=_ignore_stop_signals,
        )
        return iter(loader)

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            self._it = self._make_iter()
        batch = next(self._it)
        self.consumed += 1
        return batch

    def state_dict(self):
        """JSON-able position: {"seed", "consumed", "batch_size", "num_items"}."""
        return {
            "seed": self.seed,
            "consumed": self.consumed,
            "batch_size": self.batch_size,
            "num_items": len(self.dataset),
        }

    def load_state_dict(self, state):
        """Continue from a saved position (warns through the logger if the data changed)."""
        if state.get("batch_size") != self.batch_size or state.get("num_items") != len(self.dataset):
            logger.warn(
                f"data position saved for batch_size={state.get('batch_size')} and {state.get('num_items')} "
                f"images, now batch_size={self.batch_size} and {len(self.dataset)}: order will differ"
            )
        self.seed = int(state["seed"])
        self.consumed = int(state["consumed"])
        self._it = None


class SuperResData(MappedBatches):
    """
    Wrap a `load_data` iterator for super-resolution: adds `cond["low_res"]`, the batch
    area-downsampled to `small_size` (float32 [N, 3, small_size, small_size]).

    :param data: iterator of (batch, cond) at the large size.
    :param small_size: side length of the low-resolution input.
    """

    def __init__(self, data, small_size):
        if not isinstance(small_size, int) or small_size <= 0:
            raise ValueError(f"small_size must be a positive int, got {small_size!r}")
        super().__init__(data)
        self.small_size = small_size

    def map(self, batch, cond):
        cond["low_res"] = F.interpolate(batch, self.small_size, mode="area")
        return batch, cond
