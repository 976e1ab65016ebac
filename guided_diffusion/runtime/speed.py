"""
The speed flags shared by the sampling and training scripts, and the network calls they give.

    --precision fp32|bf16|fp16|auto   numeric precision of the networks (`precision.py`); the
                                      default fp32 runs no autocast at all
    --compile False|True              run the networks through torch.compile (`compile.py`)

`fast_call` returns the network itself for fp32 without compiling, so the default path runs
exactly the code it ran before the flags existed (bit-identical results). Otherwise it returns a
`NetworkCall`: called like the network, returning float32 tensors, and answering attribute
look-ups (`num_classes`, `image_size`, `parameters()`, ...) for it, so code that reads the
network's attributes accepts either. Random numbers are drawn outside the networks, so neither
flag changes which noise a sample gets.
"""

import contextlib
from dataclasses import dataclass

import torch as th

from .compile import maybe_compile
from .precision import autocast_call, log_resolution, resolve_precision


def speed_defaults():
    """
    precision: fp32 (default, the original's arithmetic), bf16, fp16, or auto (the fastest the
    device accelerates, logged with the reason); compile: run the networks through torch.compile.
    """
    return dict(precision="fp32", compile=False)


class NetworkCall:
    """
    A network run through `fn` (autocast and/or compiled) that still reads as the network.

    :param module: the network; attribute look-ups not found here go to it.
    :param fn: called as fn(*args, **kwargs) instead of module(*args, **kwargs).
    """

    def __init__(self, module, fn):
        self.module = module
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def __getattr__(self, name):  # only called for names not set in __init__
        return getattr(self.module, name)


def fast_call(module, precision, device, compile=False, name="model"):
    """
    :param module: a network (or None, returned as is).
    :param precision: a resolved precision ("fp32", "bf16" or "fp16").
    :param device: the device the network runs on.
    :param compile: run it through `compile.CompiledCall` (first-call cost logged, eager fallback).
    :param name: how compile logs refer to it.
    :return: `module` itself for fp32 without compile, else a NetworkCall returning float32.
    """
    if module is None or (precision == "fp32" and not compile):
        return module
    return NetworkCall(module, autocast_call(maybe_compile(module, compile, name=name), precision, device))


def runs_fp16_weights(*modules):
    """Whether any network was built with --use_fp16 True (its torso computes in float16)."""
    return any(getattr(m, "dtype", th.float32) == th.float16 for m in modules if m is not None)


@dataclass(frozen=True)
class FastNetworks:
    """The networks of one run as `fast_call` wraps them, and the precision they run in."""

    model: object
    classifier: object
    precision: str


def fast_networks(model, classifier=None, *, precision="fp32", compile=False, device=None, what="sampling"):
    """
    Resolve `precision` for these networks (logging the choice unless it is the default fp32)
    and wrap each with `fast_call`.

    :param device: where they run (default: the model's device).
    :param what: what the log line says they run for ("sampling", "training").
    :return: a FastNetworks.
    :raises ValueError: for a precision the device or --use_fp16 rules out (`resolve_precision`).
    """
    device = device or next(model.parameters()).device
    resolution = resolve_precision(precision, device, use_fp16=runs_fp16_weights(model, classifier))
    if precision != "fp32":
        log_resolution(resolution, what)
    prec = resolution.precision
    return FastNetworks(fast_call(model, prec, device, compile, "model"),
                        fast_call(classifier, prec, device, compile, "classifier"), prec)


@contextlib.contextmanager
def frozen_parameters(module):
    """
    Within the block, `module`'s parameters do not require gradients (restored afterwards), so an
    input gradient through it neither builds nor keeps parameter gradients. None: no-op.
    """
    params = [] if module is None else list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
