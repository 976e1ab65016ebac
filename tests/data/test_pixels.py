"""Pixel conversion: closed forms, layouts, and the round trip uint8 -> float -> uint8."""

import numpy as np
import pytest
import torch as th

from guided_diffusion.data.pixels import from_uint8_nhwc, to_uint8_nhwc, uint8_to_unit_range


def test_images_to_uint8_closed_form():
    x = th.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = to_uint8_nhwc(x)
    assert out.dtype == np.uint8 and out.shape == (1, 1, 5, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 127, 255, 255]


def test_from_uint8_is_v_over_127_5_minus_1_in_nchw():
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3) * 2
    x = from_uint8_nhwc(images)
    assert x.dtype == th.float32 and tuple(x.shape) == (2, 3, 3, 4)
    assert x[1, 2, 0, 3].item() == pytest.approx(images[1, 0, 3, 2] / 127.5 - 1, abs=1e-7)
    assert x.min().item() >= -1 and x.max().item() <= 1
    assert np.array_equal(uint8_to_unit_range(images), x.permute(0, 2, 3, 1).numpy())


def test_round_trip_loses_at_most_one_grey_level_and_never_gains():
    values = np.arange(256, dtype=np.uint8)
    images = np.broadcast_to(values[None, :, None, None], (1, 256, 1, 3)).copy()
    back = to_uint8_nhwc(from_uint8_nhwc(images)).astype(int)
    diff = images.astype(int) - back
    assert diff.min() == 0 and diff.max() <= 1
    assert back[0, 0, 0, 0] == 0 and back[0, 255, 0, 0] == 255  # the ends survive exactly


def test_wrong_rank_is_refused():
    with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
        from_uint8_nhwc(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        to_uint8_nhwc(th.zeros(3, 4, 4))
