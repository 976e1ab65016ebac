"""
TensorFlow-free re-implementation of guided-diffusion's evaluator: Inception Score, FID, sFID,
precision and recall on .npz image batches (``python evaluations/evaluator.py REF.npz SAMPLE.npz``).

Library API: :func:`frechet_distance`, :func:`frechet_distance_from_features`,
:func:`compute_statistics`, :func:`inception_score`, :func:`precision_recall`,
:func:`manifold_radii`, and :class:`FeatureExtractor` (imported on first use: it loads torch).
"""

from .fid import compute_statistics, frechet_distance, frechet_distance_from_features
from .inception_score import inception_score
from .precision_recall import manifold_radii, precision_recall

__all__ = [
    "FeatureExtractor",
    "compute_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "inception_score",
    "manifold_radii",
    "precision_recall",
]


def __getattr__(name):
    if name == "FeatureExtractor":
        from .features import FeatureExtractor

        return FeatureExtractor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
