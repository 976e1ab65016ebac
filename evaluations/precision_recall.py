"""
Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds, as in the original
evaluator: each point's radius is the squared distance to its k-th nearest other point of its own
set (the (k+1)-th smallest distance counting itself); precision is the fraction of samples inside
at least one reference ball, recall the fraction of references inside at least one sample ball
(inside means distance <= radius).

Distances are squared Euclidean, |u|^2 - 2 u.v + |v|^2 clamped at 0, computed in float32 blocks
of ``row_batch_size`` x ``col_batch_size``; only the running k+1 smallest distances per row are
kept, so memory is bounded by the block size, not by N^2 (or N x block).
"""

ROW_BATCH_SIZE = 10000
COL_BATCH_SIZE = 10000


def _sq_dists(a, b, a_norm, b_norm):
    """:return: [len(a), len(b)] float32 squared distances."""
    d = a @ b.T
    d.mul_(-2).add_(a_norm[:, None]).add_(b_norm[None, :])
    return d.clamp_(min=0)


def _as_tensor(x, device):
    import torch

    return torch.as_tensor(x).to(device=device, dtype=torch.float32)


def manifold_radii(features, k=3, row_batch_size=ROW_BATCH_SIZE, col_batch_size=COL_BATCH_SIZE, device="cpu"):
    """
    :param features: [N, D] features (numpy or tensor), N > k.
    :param k: neighbourhood size.
    :return: [N] float32 tensor: squared distance to the k-th nearest other point.
    """
    import torch

    feats = _as_tensor(features, device)
    n = len(feats)
    if n <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} points, got {n}")
    norms = (feats * feats).sum(1)
    radii = torch.empty(n, dtype=torch.float32, device=device)
    with torch.no_grad():
        for r0 in range(0, n, row_batch_size):
            rows = slice(r0, min(r0 + row_batch_size, n))
            nearest = None  # [rows, <= k+1] smallest distances so far
            for c0 in range(0, n, col_batch_size):
                cols = slice(c0, min(c0 + col_batch_size, n))
                d = _sq_dists(feats[rows], feats[cols], norms[rows], norms[cols])
                if nearest is not None:
                    d = torch.cat([nearest, d], dim=1)
                nearest = torch.topk(d, min(k + 1, d.shape[1]), dim=1, largest=False).values
                del d
            radii[rows] = nearest.max(dim=1).values  # the (k+1)-th smallest, self included
    return radii


def precision_recall(
    ref_features,
    sample_features,
    k=3,
    row_batch_size=ROW_BATCH_SIZE,
    col_batch_size=COL_BATCH_SIZE,
    device="cpu",
    return_masks=False,
):
    """
    :param ref_features: [N_ref, D] reference pool features.
    :param sample_features: [N_sample, D] sample pool features.
    :param k: neighbourhood size (3 in the original).
    :param return_masks: also return which samples and which references were inside, e.g. for
                         paired comparisons of two sample batches drawn from the same seeds.
    :return: (precision, recall) Python floats; with return_masks, (precision, recall,
             sample_in_ref bool numpy [N_sample], ref_in_sample bool numpy [N_ref]), whose means
             are the two figures.
    """
    import torch  # lazy: keeps `import evaluations` light

    ref = _as_tensor(ref_features, device)
    sample = _as_tensor(sample_features, device)
    if ref.ndim != 2 or sample.ndim != 2 or ref.shape[1] != sample.shape[1]:
        raise ValueError(f"feature shapes {tuple(ref.shape)} and {tuple(sample.shape)} are not [N, D] with equal D")
    ref_radii = manifold_radii(ref, k, row_batch_size, col_batch_size, device)
    sample_radii = manifold_radii(sample, k, row_batch_size, col_batch_size, device)
    ref_norms, sample_norms = (ref * ref).sum(1), (sample * sample).sum(1)
    ref_in_sample = torch.zeros(len(ref), dtype=torch.bool, device=device)
    sample_in_ref = torch.zeros(len(sample), dtype=torch.bool, device=device)
    with torch.no_grad():
        for r0 in range(0, len(ref), row_batch_size):
            rows = slice(r0, r0 + row_batch_size)
            for c0 in range(0, len(sample), col_batch_size):
                cols = slice(c0, c0 + col_batch_size)
                d = _sq_dists(ref[rows], sample[cols], ref_norms[rows], sample_norms[cols])
                ref_in_sample[rows] |= (d <= sample_radii[None, cols]).any(dim=1)
                sample_in_ref[cols] |= (d <= ref_radii[rows, None]).any(dim=0)
                del d
    precision = sample_in_ref.sum().item() / len(sample)
    recall = ref_in_sample.sum().item() / len(ref)
    if return_masks:
        return precision, recall, sample_in_ref.cpu().numpy(), ref_in_sample.cpu().numpy()
    return precision, recall
