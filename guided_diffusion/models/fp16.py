"""
Conversion of a network's convolutions to float16 and back (the original's `use_fp16` layout:
only Conv1d/2d/3d weights and biases change dtype; norms, linears and embeddings stay float32).
"""

import torch.nn as nn

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def convert_module_to_f16(module):
    """Convert a convolution's weight and bias to float16 (other modules are left alone)."""
    if isinstance(module, _CONV_TYPES):
        module.weight.data = module.weight.data.half()
        if module.bias is not None:
            module.bias.data = module.bias.data.half()


def convert_module_to_f32(module):
    """Convert a convolution's weight and bias back to float32 (undo convert_module_to_f16)."""
    if isinstance(module, _CONV_TYPES):
        module.weight.data = module.weight.data.float()
        if module.bias is not None:
            module.bias.data = module.bias.data.float()
