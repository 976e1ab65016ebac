"""
TensorFlow-free re-implementation of guided-diffusion's evaluator: Inception Score, FID, sFID,
precision and recall on .npz image batches (``python evaluations/evaluator.py REF.npz SAMPLE.npz``).

Library API: :func:`frechet_distance`, :func:`compute_statistics`, :func:`inception_score`,
:func:`precision_recall`, and :class:`evaluations.features.FeatureExtractor` (imported lazily
from its module since it loads the network).
"""

from .fid import compute_statistics, frechet_distance
from .inception_score import inception_score
from .precision_recall import manifold_radii, precision_recall

__all__ = ["compute_statistics", "frechet_distance", "inception_score", "manifold_radii", "precision_recall"]
