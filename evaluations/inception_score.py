"""
Inception Score: exp(E_x KL(p(y|x) || p(y))) over consecutive splits, averaged over splits.
"""

import numpy as np
from scipy.special import xlogy


def inception_score(softmax, split_size=5000):
    """
    :param softmax: [N, K] class probabilities (rows sum to 1).
    :param split_size: images per split; splits are consecutive and a partial last split counts
                       as its own split (as in the original evaluator).
    :return: the mean over splits of exp(mean_i KL(p_i || mean_split p)), a Python float.
             0 * log 0 is taken as 0.
    """
    preds = np.asarray(softmax, dtype=np.float64)
    if preds.ndim != 2 or len(preds) == 0:
        raise ValueError(f"softmax must be [N >= 1, K], got shape {preds.shape}")
    if split_size < 1:
        raise ValueError(f"split_size must be >= 1, got {split_size}")
    scores = []
    for start in range(0, len(preds), split_size):
        part = preds[start : start + split_size]
        marginal = part.mean(axis=0, keepdims=True)
        kl = xlogy(part, part) - xlogy(part, marginal)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores))
