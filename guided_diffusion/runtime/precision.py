"""
Numeric precision of network evaluation: what the device computes natively, the
`--precision auto|fp32|bf16|fp16` choice, and the autocast context that applies it.

- "fp32": no autocast at all, so results are bit-identical to code that never heard of this
  module.
- "bf16" / "fp16": `torch.autocast`. Convolutions, linears and matrix products run in the
  reduced type; GroupNorm (float32 by construction, see models/layers.py), softmax and the losses
  stay float32. Parameters are never converted, so optimizer (master) weights, gradients and EMA
  stay float32. Training in fp16 still needs loss scaling against gradient underflow; bf16 has
  float32's exponent range and does not.
- "auto": the fastest of these that the device accelerates in hardware, chosen from what the
  device reports (CPU flags, CUDA compute capability), never assumed:
  bf16 on a CPU with AVX512_BF16 or AMX-BF16 (x86) or the BF16 extension (ARM);
  bf16 on CUDA when supported natively (compute capability >= 8.0), else fp16 on tensor-core GPUs
  (compute capability >= 7.0); fp32 everywhere else.

The original's `--use_fp16` (float16 conversion of the torso's convolution weights) is a separate
mechanism; it combines with "fp32" only (see `resolve_precision`).
"""

import contextlib
import os
import platform
from dataclasses import dataclass

import torch as th

from . import logger

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": th.float32, "bf16": th.bfloat16, "fp16": th.float16}

# CPU flags (Linux /proc/cpuinfo spelling) that give native reduced-precision arithmetic.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # "bf16": ARMv8.6 BFloat16 extension
CPU_FP16_FLAGS = ("amx_fp16", "avx512_fp16")
# Instruction sets `describe_cpu` reports, widest first.
CPU_ISA_FLAGS = ("amx_bf16", "amx_fp16", "amx_int8", "avx512_bf16", "avx512_fp16", "avx512_vnni",
                 "avx512f", "avx2", "fma", "avx", "sse4_2", "asimd", "sve", "bf16")  # fmt: skip


@dataclass(frozen=True)
class DeviceSupport:
    """
    What a device computes natively.

    :param device_type: "cpu", "cuda", ...
    :param name: the CPU model or GPU name, for logs and benchmark tables.
    :param features: the relevant instruction sets (CPU) or "sm_XY" (CUDA) found.
    :param bf16: bfloat16 arithmetic runs in hardware.
    :param fp16: float16 arithmetic runs in hardware.
    """

    device_type: str
    name: str
    features: tuple
    bf16: bool
    fp16: bool


@dataclass(frozen=True)
class Resolution:
    """A resolved precision: `precision` in ("fp32", "bf16", "fp16"), its dtype and why."""

    precision: str
    dtype: th.dtype
    reason: str


def read_cpuinfo(path="/proc/cpuinfo"):
    """
    The CPU's feature flags and model name from a Linux cpuinfo file.

    :return: (frozenset of lower-case flags, model name), or (None, None) when unreadable.
    """
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None, None
    flags, name = set(), None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):  # x86 spells it "flags", ARM "Features"
            flags.update(value.lower().split())
        elif key in ("model name", "cpu model") and name is None:
            name = value.strip()
    return frozenset(flags), name


# torch's cpuinfo names that differ from /proc/cpuinfo's
_TORCH_FLAG_NAMES = {"avx512_f": "avx512f", "fma3": "fma"}


def _torch_cpu_flags():
    """CPU flags from torch's cpuinfo binding (a private API: empty when it is missing)."""
    probe = getattr(getattr(th._C, "_cpu", None), "_get_cpu_capability", None)
    try:
        info = probe() if probe is not None else None
    except RuntimeError:
        info = None
    if not isinstance(info, dict):
        return frozenset(), None
    flags = {_TORCH_FLAG_NAMES.get(k, k) for k, v in info.items() if v is True}
    return frozenset(flags), info.get("cpu_name")


def cpu_support(cpuinfo_path="/proc/cpuinfo"):
    """
    :return: the CPU's DeviceSupport, from `cpuinfo_path` when readable, else from torch's
        cpuinfo binding; a CPU whose flags cannot be read counts as fp32-only.
    """
    flags, name = read_cpuinfo(cpuinfo_path)
    if flags is None:
        flags, name = _torch_cpu_flags()
    name = name or platform.processor() or "unknown CPU"
    features = tuple(f for f in CPU_ISA_FLAGS if f in flags)
    return DeviceSupport(
        device_type="cpu",
        name=name,
        features=features,
        bf16=any(f in flags for f in CPU_BF16_FLAGS),
        fp16=any(f in flags for f in CPU_FP16_FLAGS),
    )


def cuda_support(device):
    """:return: the DeviceSupport of a CUDA device, from its compute capability."""
    major, minor = th.cuda.get_device_capability(device)
    return DeviceSupport(
        device_type="cuda",
        name=th.cuda.get_device_name(device),
        features=(f"sm_{major}{minor}",),
        bf16=major >= 8,  # bf16 tensor cores arrived with Ampere
        fp16=major >= 7,  # fp16 tensor cores arrived with Volta
    )


def detect_support(device, cpuinfo_path="/proc/cpuinfo"):
    """
    :param device: a torch.device or device string.
    :return: the DeviceSupport of `device` (other device types report no reduced precision).
    """
    device = th.device(device)
    if device.type == "cpu":
        return cpu_support(cpuinfo_path)
    if device.type == "cuda":
        return cuda_support(device)
    return DeviceSupport(device.type, device.type, (), bf16=False, fp16=False)


def describe_cpu(support=None):
    """One line naming the CPU and its relevant instruction sets, e.g. for benchmark output."""
    support = support or cpu_support()
    isa = " ".join(support.features) or "none of " + " ".join(CPU_ISA_FLAGS)
    return f"{support.name}; {os.cpu_count()} logical CPUs; instruction sets: {isa}"


def _check_choice(requested):
    if requested not in PRECISIONS:
        raise ValueError(f"--precision {requested!r} is not one of {', '.join(PRECISIONS)}")


def resolve_precision(requested, device, support=None, use_fp16=False):
    """
    Turn a `--precision` value into the precision to run, with the reason (for the log).

    :param requested: one of PRECISIONS.
    :param device: the torch.device the networks run on.
    :param support: the device's DeviceSupport (default: `detect_support(device)`).
    :param use_fp16: whether the network's torso was converted to float16 (`--use_fp16 True`).
    :return: a Resolution.
    :raises ValueError: for an unknown value, fp16 on a CPU without native float16, or a reduced
        precision combined with `--use_fp16 True`.
    """
    _check_choice(requested)
    device = th.device(device)
    support = support or detect_support(device)
    if use_fp16:
        if requested in ("bf16", "fp16"):
            raise ValueError(
                f"--precision {requested} cannot be combined with --use_fp16 True, which already runs the "
                f"torso in float16 weights; use --precision fp32 with --use_fp16 True, or --use_fp16 False"
            )
        return Resolution("fp32", th.float32, "--use_fp16 True converts the torso to float16 itself; no autocast")
    if requested == "auto":
        return _resolve_auto(support)
    if requested == "fp16" and support.device_type == "cpu" and not support.fp16:
        raise ValueError(
            f"--precision fp16: this CPU ({support.name}) has no native float16 arithmetic "
            f"(none of {', '.join(CPU_FP16_FLAGS)}); use --precision bf16, auto or fp32"
        )
    reason = "requested"
    if requested == "bf16" and not support.bf16:
        reason = f"requested; {support.name} emulates bfloat16, expect it slower than fp32"
    return Resolution(requested, DTYPES[requested], reason)


def _resolve_auto(support):
    found = ", ".join(support.features) or "no reduced-precision instructions"
    if support.bf16:
        return Resolution("bf16", th.bfloat16, f"auto: {support.name} computes bfloat16 natively ({found})")
    if support.fp16 and support.device_type != "cpu":
        return Resolution("fp16", th.float16, f"auto: {support.name} computes float16 natively ({found})")
    return Resolution("fp32", th.float32, f"auto: no native bfloat16/float16 on {support.name} ({found})")


def autocast(precision, device):
    """
    The context that runs network code in `precision`.

    :param precision: "fp32", "bf16" or "fp16" (a resolved precision, not "auto").
    :param device: the torch.device the code runs on.
    :return: a context manager; for "fp32" one that does nothing.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in DTYPES:
        raise ValueError(f"precision {precision!r} is not resolved: call resolve_precision first")
    return th.autocast(device_type=th.device(device).type, dtype=DTYPES[precision])


def to_float32(value):
    """Cast bf16/fp16 tensors (also inside tuples, lists and dicts) to float32; others unchanged."""
    if isinstance(value, th.Tensor):
        return value.float() if value.dtype in (th.bfloat16, th.float16) else value
    if isinstance(value, (tuple, list)):
        return type(value)(to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    return value


def autocast_call(fn, precision, device):
    """
    Wrap a network (or any callable) so that it runs in `precision` and returns float32.

    The float32 result keeps the diffusion math (float64 coefficients, losses, guidance) in full
    precision; gradients flow through the wrapper. For "fp32", `fn` itself is returned.

    :param fn: called as fn(*args, **kwargs).
    :param precision: a resolved precision ("fp32", "bf16" or "fp16").
    :param device: the torch.device fn runs on.
    """
    if precision == "fp32":
        return fn

    def call(*args, **kwargs):
        with autocast(precision, device):
            out = fn(*args, **kwargs)
        return to_float32(out)

    return call


def log_resolution(resolution, what="networks"):
    """Log the chosen precision and why, e.g. 'precision: bf16 for sampling (auto: ...)'."""
    logger.log(f"precision: {resolution.precision} for {what} ({resolution.reason})")
