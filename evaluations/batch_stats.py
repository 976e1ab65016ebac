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

from .fid import compute_statistics, frechet_distance, frechet_distance_from_features
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
    :param spatial: [N, 2023] float32 spatial features, or None if not computed.
    :param stats_from_features: True if ``stats`` were computed from ``pool``/``spatial`` here
                                (not read from the file).
    """

    pool: np.ndarray
    stats: tuple
    spatial_stats: tuple
    softmax: Optional[np.ndarray] = None
    spatial: Optional[np.ndarray] = None
    stats_from_features: bool = False

    def features_behind_stats(self, kind):
        """:return: the features the "pool"/"spatial" statistics came from, or None."""
        if not self.stats_from_features:
            return None
        return self.pool if kind == "pool" else self.spatial


def inspect_batch(path):
    """
    Validate a batch file without running the network (cheap; call it on every input first).

    :return: (statistics dict or None, cached pool features or None, image reader or None);
             raises EvaluatorInputError when the file cannot yield features and statistics.
    """
    keys = set(npz_keys(path))
    file_stats = read_statistics(path)
    cached_pool = read_arrays(path, [POOL_KEY]).get(POOL_KEY)
    if cached_pool is not None:
        if cached_pool.ndim != 2 or cached_pool.shape[1] != POOL_DIM or len(cached_pool) < 2:
            raise EvaluatorInputError(f"{path}: {POOL_KEY} has shape {cached_pool.shape}, expected [N >= 2, {POOL_DIM}]")
        if not np.isfinite(cached_pool).all():
            raise EvaluatorInputError(f"{path}: {POOL_KEY} contains NaN or infinite values")
    if file_stats is not None:
        for kind, dim, names in (("pool", POOL_DIM, "mu/sigma"), ("spatial", SPATIAL_DIM, "mu_s/sigma_s")):
            if file_stats[kind][0].shape[0] != dim:
                raise EvaluatorInputError(f"{path}: {names} has dimension {file_stats[kind][0].shape[0]}, expected {dim}")
    if file_stats is not None and cached_pool is not None:
        return file_stats, cached_pool, None
    if "arr_0" in keys:
        return file_stats, None, open_image_batch(path)
    raise EvaluatorInputError(
        f"{path}: no images (arr_0) and no cached {POOL_KEY} with mu/sigma/mu_s/sigma_s; found {sorted(keys)}"
    )


def load_batch(path, get_extractor, desc="features", progress=True):
    """
    :param path: .npz batch file.
    :param get_extractor: zero-argument callable returning a
                          :class:`evaluations.features.FeatureExtractor` (called only if images
                          must go through the network).
    :param desc: progress bar label.
    :param progress: show the feature extraction's tqdm bar on stderr.
    :return: a :class:`BatchStats`.
    """
    file_stats, cached_pool, reader = inspect_batch(path)
    if reader is None:
        return BatchStats(cached_pool.astype(np.float32), file_stats["pool"], file_stats["spatial"])
    feats = get_extractor().compute_npz(reader, desc=desc, progress=progress)
    from_features = file_stats is None
    if from_features:
        file_stats = {"pool": compute_statistics(feats["pool"]), "spatial": compute_statistics(feats["spatial"])}
    return BatchStats(
        feats["pool"], file_stats["pool"], file_stats["spatial"], feats.get("softmax"), feats["spatial"], from_features
    )


def batch_frechet_distance(sample, ref, kind, method="sqrtm"):
    """
    FID (kind "pool") or sFID (kind "spatial") between two batches, sample first as in the original.

    :param method: "sqrtm" (the original's recipe on the statistics) or "fast": the exact
                   low-rank formula when both batches' statistics come from at most D features
                   each, else the symmetric-eigendecomposition method.
    """
    pick = (lambda b: b.stats) if kind == "pool" else (lambda b: b.spatial_stats)
    if method == "sqrtm":
        return frechet_distance(*pick(sample), *pick(ref), method="sqrtm")
    if method != "fast":
        raise ValueError(f"unknown FID method {method!r}; choose 'sqrtm' or 'fast'")
    f_sample, f_ref = sample.features_behind_stats(kind), ref.features_behind_stats(kind)
    if f_sample is not None and f_ref is not None and max(len(f_sample), len(f_ref)) <= f_sample.shape[1]:
        return frechet_distance_from_features(f_sample, f_ref)
    return frechet_distance(*pick(sample), *pick(ref), method="eigh")


def save_batch_stats(path, batch):
    """
    Write mu/sigma/mu_s/sigma_s and the pool features so later runs can use ``path`` as REF.

    :param batch: a :class:`BatchStats`.
    """
    from guided_diffusion.runtime.fileio import atomic_savez

    (mu, sigma), (mu_s, sigma_s) = batch.stats, batch.spatial_stats
    atomic_savez(path, mu=mu, sigma=sigma, mu_s=mu_s, sigma_s=sigma_s, **{POOL_KEY: batch.pool})
