"""Conversion of convolutions to float16 and back."""

import torch as th
import torch.nn as nn

from guided_diffusion.models import fp16


def test_convert_module_only_touches_convolutions():
    conv, lin, norm = nn.Conv1d(2, 2, 1), nn.Linear(2, 2), nn.GroupNorm(1, 2)
    for m in (conv, lin, norm):
        fp16.convert_module_to_f16(m)
    assert conv.weight.dtype == conv.bias.dtype == th.float16
    assert lin.weight.dtype == norm.weight.dtype == th.float32
    fp16.convert_module_to_f32(conv)
    assert conv.weight.dtype == conv.bias.dtype == th.float32
