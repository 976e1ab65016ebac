"""
Paired differences between two runs scored item by item.

Two sample batches drawn from the same seeds and labels (sample i of each starts from the same
noise and asks for the same class) are not independent: a sample that one guidance scale puts on
the data manifold, the other usually does too. The difference of their rates then has a smaller
error than two independent binomial errors would say: with d_i = b_i - a_i per item,
Var(mean d) = Var(d) / n, which subtracts twice the covariance of a and b.
"""

import numpy as np


def paired_difference(before, after):
    """
    :param before, after: per-item outcomes (bool or 0/1, [N], N >= 2) of two runs over the same
                          items, e.g. "sample i is inside the real manifold" at two scales.
    :return: (mean(after) - mean(before), its standard error std(after - before, ddof=1) / sqrt(N)).
    :raises ValueError: when the shapes differ or fewer than two items are given.
    """
    a = np.asarray(before, dtype=np.float64)
    b = np.asarray(after, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"paired outcomes must be two [N] arrays over the same N >= 2 items, got shapes "
                         f"{a.shape} and {b.shape}")
    d = b - a
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
