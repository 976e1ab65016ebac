"""
Bootstrap errors for FID, alone and as a ratio between paired sample batches.

FID has no closed-form standard error: it is a nonlinear function of two feature means and
covariances, and it is biased upwards at small sample sizes. The bootstrap (Efron 1979) estimates
its spread by recomputing it on batches drawn with replacement from the ones at hand.

Batches made from the same seeds and labels are paired: row i of every batch started from the
same noise and asked for the same class. One draw therefore resamples the same rows of every
batch (and, independently, the rows of the reference), so the spread of a ratio between two
batches keeps their correlation, the way a paired t-test does for per-item outcomes. Bootstrap
FIDs read high (a draw repeats rows, so it holds fewer distinct ones); use the spread, not the
level, and report the FIDs of the whole batches.
"""

import numpy as np


def bootstrap_fids(reference, batches, num_draws=200, seed=0, resample_reference=True):
    """
    FID of each paired batch against the reference, over bootstrap draws.

    :param reference: float [R, D] reference features (e.g. Inception pool, D = 2048), R >= 2.
    :param batches: a sequence of float [N, D] feature arrays, all of the same N >= 2, paired by
                    row (row i of every batch is the same seed and label).
    :param num_draws: bootstrap draws, >= 2.
    :param seed: seeds the draws (numpy RandomState; per draw, the batch rows and then the
                 reference rows), so a rerun repeats them.
    :param resample_reference: also resample the reference rows in each draw (its noise is part
                               of any comparison with the data); False holds the reference fixed.
    :return: float64 [num_draws, len(batches)]: draw k's FID of every batch.
    :raises ValueError: for unpaired batch sizes, mismatched feature widths or too few rows/draws.
    """
    reference = np.asarray(reference, dtype=np.float64)
    batches = [np.asarray(b, dtype=np.float64) for b in batches]
    sizes = {b.shape for b in batches}
    if not batches or len(sizes) != 1 or batches[0].ndim != 2:
        raise ValueError(f"need paired batches of one shape [N, D], got shapes {sorted(sizes)}")
    (n, width), = sizes
    if reference.ndim != 2 or reference.shape[1] != width or min(n, len(reference)) < 2:
        raise ValueError(f"need reference [R >= 2, {width}] and batches [N >= 2, {width}], got "
                         f"{list(reference.shape)} and {[n, width]}")
    if num_draws < 2:
        raise ValueError(f"num_draws must be >= 2 to give a spread, got {num_draws}")
    rng = np.random.RandomState(seed)
    ref_gram = reference @ reference.T
    grams = [(batch @ batch.T, batch @ reference.T) for batch in batches]
    all_ref = np.arange(len(reference))
    fids = np.empty((num_draws, len(batches)))
    for k in range(num_draws):
        rows = rng.randint(0, n, size=n)
        ref_rows = rng.randint(0, len(reference), size=len(reference)) if resample_reference else all_ref
        ref_part = _centred_terms(ref_gram[np.ix_(ref_rows, ref_rows)])
        for j, (gram, cross) in enumerate(grams):
            fids[k, j] = _fid_from_grams(_centred_terms(gram[np.ix_(rows, rows)]), ref_part,
                                         cross[np.ix_(rows, ref_rows)])
    return fids


def _centred_terms(gram):
    """(sum of the Gram matrix / n^2 = |mean|^2, trace of the covariance) of one batch's [n, n] Gram matrix."""
    n = len(gram)
    mean_sq = gram.sum() / n**2
    return mean_sq, (np.trace(gram) - n * mean_sq) / (n - 1)


def _fid_from_grams(batch_terms, ref_terms, cross):
    """
    FID from inner products only, as `fid.frechet_distance_from_features` computes it from
    features: with the cross Gram matrix C = F R^T ([n, m]), the means' inner product is
    mean(C), and A B^T of that function is C centred on both sides over sqrt((n-1)(m-1)); the
    sum of its singular values is the sum of the square roots of the eigenvalues of its Gram
    (7x faster than an SVD at [1000, 300]; squaring costs digits, about 1e-7 relative on FID).
    """
    (batch_mean_sq, batch_trace), (ref_mean_sq, ref_trace) = batch_terms, ref_terms
    n, m = cross.shape
    centred = cross - cross.mean(axis=0) - cross.mean(axis=1, keepdims=True) + cross.mean()
    centred /= np.sqrt((n - 1) * (m - 1))
    singular_sum = np.sqrt(np.clip(np.linalg.eigvalsh(centred.T @ centred), 0, None)).sum()
    mean_distance = batch_mean_sq + ref_mean_sq - 2 * cross.mean()
    return float(mean_distance + batch_trace + ref_trace - 2 * singular_sum)


def ratio_stderr(draws, baseline_column):
    """
    Standard error of each batch's FID divided by the baseline batch's, from paired draws.

    :param draws: float [K, B] from `bootstrap_fids`.
    :param baseline_column: the baseline batch's column in [0, B).
    :return: float64 [B]: the standard deviation over draws of draws[:, j] / draws[:, baseline]
             (0 for the baseline itself).
    """
    draws = np.asarray(draws, dtype=np.float64)
    return (draws / draws[:, [baseline_column]]).std(axis=0, ddof=1)
