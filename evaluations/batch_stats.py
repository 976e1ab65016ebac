"""
Everything the evaluator needs from one .npz batch: pool features (precision/recall), FID and
sFID statistics, and softmax predictions (Inception Score), reusing what the file already carries.

A batch file holds images ``arr_0`` (uint8 [N, H, W, 3]) and optionally precomputed statistics
``mu``, ``sigma``, ``mu_s``, ``sigma_s`` (used instead of recomputing, as in the original) and
``pool_features`` [N, 2048] (written by ``--save_ref_stats``; lets a run skip the network for this
file entirely when statistics are present too).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .fid import compute_statistics
from .npz_reader import EvaluatorInputError, npz_keys, open_image_batch, read_arrays, read_statistics

POOL_KEY = "pool_features"
POOL_DIM = 2048
SPATIAL_DIM = 2023


@dataclass
class BatchStats:
    """
    :param pool: [N, 2048] float32 pool_3 features.
    :param stats: (mu, sigma) float64 of the pool features.
    :param spatial_stats: (mu_s, sigma_s) float64 of the spatial features.
    :param softmax: [N, 1008] float32 predictions, or None without the softmax head / images.
    """

    pool: np.ndarray
    stats: tuple
    spatial_stats: tuple
    softmax: Optional[np.ndarray] = None


def load_batch(path, get_extractor, desc="features"):
    """
    :param path: .npz batch file.
    :param get_extractor: zero-argument callable returning a
                          :class:`evaluations.features.FeatureExtractor` (called only if images
                          must go through the network).
    :param desc: progress bar label.
    :return: a :class:`BatchStats`.
    """
    keys = set(npz_keys(path))
    file_stats = read_statistics(path)
    cached_pool = read_arrays(path, [POOL_KEY]).get(POOL_KEY)
    if cached_pool is not None:
        if cached_pool.ndim != 2 or cached_pool.shape[1] != POOL_DIM or len(cached_pool) < 2:
            raise EvaluatorInputError(f"{path}: {POOL_KEY} has shape {cached_pool.shape}, expected [N >= 2, {POOL_DIM}]")
        if not np.isfinite(cached_pool).all():
            raise EvaluatorInputError(f"{path}: {POOL_KEY} contains NaN or infinite values")
    if file_stats is not None and cached_pool is not None:
        result = BatchStats(cached_pool.astype(np.float32), file_stats["pool"], file_stats["spatial"])
    elif "arr_0" in keys:
        reader = open_image_batch(path)
        extractor = get_extractor()
        feats = extractor.compute_npz(reader, desc=desc)
        if file_stats is None:
            file_stats = {"pool": compute_statistics(feats["pool"]), "spatial": compute_statistics(feats["spatial"])}
        result = BatchStats(feats["pool"], file_stats["pool"], file_stats["spatial"], feats.get("softmax"))
    else:
        raise EvaluatorInputError(
            f"{path}: no images (arr_0) and no cached {POOL_KEY} with mu/sigma/mu_s/sigma_s; found {sorted(keys)}"
        )
    _check_dims(path, result)
    return result


def _check_dims(path, batch):
    for name, (mu, _), dim in (("mu/sigma", batch.stats, POOL_DIM), ("mu_s/sigma_s", batch.spatial_stats, SPATIAL_DIM)):
        if mu.shape[0] != dim:
            raise EvaluatorInputError(f"{path}: {name} has dimension {mu.shape[0]}, expected {dim}")


def save_batch_stats(path, batch):
    """
    Write mu/sigma/mu_s/sigma_s and the pool features so later runs can use ``path`` as REF.

    :param batch: a :class:`BatchStats`.
    """
    from guided_diffusion.fileio import atomic_savez

    (mu, sigma), (mu_s, sigma_s) = batch.stats, batch.spatial_stats
    atomic_savez(path, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s, **{POOL_KEY: batch.pool})
