"""
Per-sample random streams: sample i always gets the same noise and label, whatever the batch size,
world size or device.

Each global sample index i owns independent CPU `torch.Generator`s derived from (seed, i, stream)
with numpy's `SeedSequence`, one stream for the initial noise x_T and the per-step noise, one
for the random class label. Noise is drawn on the generators' device ("cpu" by default: the same
numbers on every machine; "cuda" avoids a host-to-device copy per step, and is still independent
of batch and world size), then cast to the tensor's device and dtype. Labels are always drawn on
the CPU.
"""

import numpy as np
import torch

NOISE_STREAM = 0
LABEL_STREAM = 1


def derive_seed(seed, index, stream):
    """
    Derive a 63-bit generator seed for one sample and one stream.

    :param seed: the run seed, a non-negative int.
    :param index: the global sample index, a non-negative int.
    :param stream: which stream (NOISE_STREAM or LABEL_STREAM).
    :return: a Python int in [0, 2**63).
    """
    words = np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2, np.uint32)
    return ((int(words[0]) << 32) | int(words[1])) & ((1 << 63) - 1)


def _generator(seed, index, stream, device="cpu"):
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, index, stream))
    return g


class PerSampleNoise:
    """
    Noise source for one batch whose rows are the global samples `indices`.

    `initial_noise(shape)` gives x_T and `noise_fn(x)` (or calling the object) gives the noise of
    one sampling step; both draw row r from the generator of sample indices[r], so a sample's noise
    does not depend on which other samples share its batch.

    :param seed: the run seed.
    :param indices: sequence of global sample indices, one per batch row.
    :param device: device of the generators (and of the draws before the final cast).
    """

    def __init__(self, seed, indices, device="cpu"):
        self.indices = [int(i) for i in indices]
        self.device = torch.device(device)
        self._gens = [_generator(seed, i, NOISE_STREAM, self.device) for i in self.indices]

    def _draw(self, row_shape, device, dtype):
        rows = [torch.randn(tuple(row_shape), generator=g, dtype=torch.float32, device=self.device)
                for g in self._gens]
        return torch.stack(rows).to(device=device, dtype=dtype)

    def initial_noise(self, shape, device=None):
        """
        Draw x_T.

        :param shape: the batch shape (N, C, H, W) with N == len(indices).
        :param device: where the tensor goes (default: the generators' device).
        :return: a float32 tensor of `shape`.
        """
        if shape[0] != len(self.indices):
            raise ValueError(f"batch shape {tuple(shape)} does not match {len(self.indices)} sample indices")
        return self._draw(shape[1:], device or self.device, torch.float32)

    def noise_fn(self, x):
        """
        Per-step noise like `torch.randn_like(x)`, drawn per sample.

        :param x: the current [N x ...] tensor (only shape, device and dtype are used).
        :return: a tensor shaped, placed and typed like x.
        """
        if x.shape[0] != len(self.indices):
            raise ValueError(f"tensor batch {x.shape[0]} does not match {len(self.indices)} sample indices")
        return self._draw(x.shape[1:], x.device, x.dtype)

    __call__ = noise_fn


def random_labels(seed, indices, num_classes):
    """
    Draw one uniform class label per sample from its own label stream.

    :param seed: the run seed.
    :param indices: global sample indices.
    :param num_classes: labels are drawn from [0, num_classes).
    :return: an int64 numpy array [len(indices)].
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    out = [
        int(torch.randint(0, num_classes, (1,), generator=_generator(seed, i, LABEL_STREAM))[0])
        for i in indices
    ]
    return np.asarray(out, dtype=np.int64)
