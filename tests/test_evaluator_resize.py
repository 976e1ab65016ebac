"""TF1 bilinear resize (source = dst * in / out, no half-pixel offset, clamped) vs hand-computed values."""

import numpy as np
import torch
import torch.nn.functional as F

from evaluations.tf_resize import tf1_resize_bilinear


def _resize(arr, size):
    x = torch.tensor(arr, dtype=torch.float32)[None, None]
    return tf1_resize_bilinear(x, size)[0, 0].numpy()


def test_upsample_2x2_to_3x3_matches_hand_computation():
    # scale 2/3: sources 0, 2/3, 4/3 -> [a, a + (b - a) * 2/3, b] (the last is clamped).
    out = _resize([[0.0, 3.0], [6.0, 9.0]], 3)
    expected = [[0, 2, 3], [4, 6, 7], [6, 8, 9]]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_upsample_2x2_to_4x4_matches_hand_computation():
    # scale 1/2: sources 0, 0.5, 1, 1.5 -> [a, (a + b) / 2, b, b].
    out = _resize([[0.0, 4.0], [8.0, 12.0]], 4)
    expected = [[0, 2, 4, 4], [4, 6, 8, 8], [8, 10, 12, 12], [8, 10, 12, 12]]
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_downsample_picks_source_pixels_without_blending():
    # scale 2: sources 0 and 2 exactly, so pixels 0 and 2 of each axis are copied.
    arr = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(_resize(arr, 2), arr[::2, ::2])


def test_non_square_resize_per_axis():
    arr = np.array([[0.0, 10.0]])  # 1x2 -> 2x4
    out = tf1_resize_bilinear(torch.tensor(arr, dtype=torch.float32)[None, None], (2, 4))[0, 0].numpy()
    np.testing.assert_allclose(out, [[0, 5, 10, 10], [0, 5, 10, 10]], atol=1e-6)


def test_same_size_is_identity():
    x = torch.rand(2, 3, 5, 5)
    assert tf1_resize_bilinear(x, 5) is x


def test_differs_from_align_corners_false_interpolate():
    x = torch.tensor([[0.0, 255.0], [255.0, 0.0]])[None, None]
    ours = tf1_resize_bilinear(x, 4)
    torch_style = F.interpolate(x, size=4, mode="bilinear", align_corners=False)
    assert (ours - torch_style).abs().max() > 50
