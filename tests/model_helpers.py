"""Shared fixtures of the network tests: a tiny UNet configuration and weight randomisation."""

import torch as th

# A UNet small enough for the CPU: 16x16, two levels (32 and 64 channels), attention at ds 2.
TINY = dict(
    image_size=16,
    in_channels=3,
    model_channels=32,
    out_channels=3,
    num_res_blocks=1,
    attention_resolutions=(2,),
    channel_mult=(1, 2),
    num_head_channels=16,
)


def randomize(model, seed=0):
    """Give zero-initialised layers random weights so outputs depend on every parameter."""
    g = th.Generator().manual_seed(seed)
    with th.no_grad():
        for p in model.parameters():
            p.copy_(th.randn(p.shape, generator=g) * 0.1)
    return model
