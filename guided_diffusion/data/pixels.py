"""
Pixel conversion between the networks' float range and stored 8-bit images.

Networks see float [N x 3 x H x W] tensors in [-1, 1]; files (sample npz, PNGs, image folders)
hold uint8 [N, H, W, 3] arrays. Float to uint8 is clamp((x + 1) * 127.5, 0, 255) truncated
towards zero, as in the original's sampling scripts; uint8 to float is v / 127.5 - 1 in float32,
as in its data loader. The two directions are not exact inverses: a round trip can move a value
down by one grey level through float rounding.
"""

import numpy as np
import torch as th


def uint8_to_unit_range(pixels):
    """
    :param pixels: a uint8 numpy array of any shape (values 0..255).
    :return: a float32 numpy array of the same shape, values v / 127.5 - 1 in [-1, 1].
    """
    return np.asarray(pixels).astype(np.float32) / 127.5 - 1


def from_uint8_nhwc(images, device=None):
    """
    :param images: uint8 numpy array [N, H, W, C].
    :param device: where the tensor goes (default: the CPU).
    :return: a float32 tensor [N, C, H, W] in [-1, 1].
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected images [N, H, W, C], got shape {images.shape}")
    x = th.from_numpy(uint8_to_unit_range(images)).permute(0, 3, 1, 2).contiguous()
    return x if device is None else x.to(device)


def to_uint8_nhwc(x):
    """
    :param x: a float tensor [N, C, H, W], nominally in [-1, 1] (values outside are clamped).
    :return: a uint8 numpy array [N, H, W, C], pixels clamp((x + 1) * 127.5, 0, 255) truncated.
    """
    if x.dim() != 4:
        raise ValueError(f"expected a tensor [N, C, H, W], got shape {tuple(x.shape)}")
    x = ((x.float() + 1) * 127.5).clamp(0, 255).to(th.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()
