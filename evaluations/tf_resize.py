"""
Bilinear resize exactly as TensorFlow 1's ``tf.image.resize_bilinear`` (align_corners=False,
half_pixel_centers=False), which the 2015 FID Inception graph applies to its input.

For output index i the source coordinate is ``i * in_size / out_size`` (no half-pixel offset),
the lower neighbour is its floor and the upper its ceil clamped to the last pixel. Rows are
blended after columns: top = tl + (tr - tl) * dx, bottom = bl + (br - bl) * dx,
out = top + (bottom - top) * dy, all in float32. ``F.interpolate(align_corners=False)`` uses
``(i + 0.5) * scale - 0.5`` instead and differs by up to ~150 grey levels on sharp edges.
"""

import torch


def _axis_weights(in_size, out_size, device):
    """
    :return: (lower [out] long, upper [out] long, lerp [out] float32) for one axis.
    """
    # TF computes the scale as float(in) / float(out) in single precision.
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lower_f = torch.floor(src)
    lower = lower_f.long().clamp_(0, in_size - 1)
    upper = torch.ceil(src).long().clamp_(0, in_size - 1)
    lerp = src - lower_f
    return lower.to(device), upper.to(device), lerp.to(device)


def tf1_resize_bilinear(x, size):
    """
    Resize a batch the way TF1's ``resize_bilinear`` does.

    :param x: [N, C, H, W] float32 tensor.
    :param size: output (height, width) or a single int for a square.
    :return: [N, C, out_h, out_w] float32 tensor (x itself if the size already matches).
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return x
    x = x.float()
    y0, y1, dy = _axis_weights(in_h, out_h, x.device)
    x0, x1, dx = _axis_weights(in_w, out_w, x.device)
    top_rows = x.index_select(2, y0)  # [N, C, out_h, W]
    bottom_rows = x.index_select(2, y1)
    top_left = top_rows.index_select(3, x0)
    top_right = top_rows.index_select(3, x1)
    bottom_left = bottom_rows.index_select(3, x0)
    bottom_right = bottom_rows.index_select(3, x1)
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    return top + (bottom - top) * dy[:, None]
