"""
Kernel choices per device class, each backed by a measurement (`benchmarks/bench_speed.py`
prints the ratios; `benchmarks/README.md` records them with the machine they came from).

A device class groups machines whose kernels behave alike: for CPUs the widest relevant
instruction set ("cpu-amx_bf16", "cpu-avx512_bf16", "cpu-avx512f", "cpu-avx2", "cpu"), for
other devices the device type ("cuda", "mps"). A class without a measurement keeps the default
that the rest of the code had before measuring: SDPA off the CPU, contiguous (NCHW) layout.
"""

import torch as th

from .precision import detect_support

CPU_CLASS_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")

# (device class, activation dtype) -> whether scaled_dot_product_attention beat the explicit
# einsum formula at the UNet's attention shapes.
SDPA_FASTER = {
    ("cpu-avx2", th.float32): False,  # 0.86-0.89x at 256-1024 tokens (bench_model.py)
    # AMD EPYC (avx512_bf16), bench_speed.py 2026-12-03: see benchmarks/README.md ("Speed")
    ("cpu-avx512_bf16", th.float32): False,
    ("cpu-avx512_bf16", th.bfloat16): False,
}

# (device class, precision) -> whether channels-last activations beat NCHW for the UNet forward.
CHANNELS_LAST_FASTER = {
    ("cpu-avx512_bf16", "fp32"): False,
    ("cpu-avx512_bf16", "bf16"): False,
}

_CLASS_CACHE = {}


def _key(device):
    device = th.device(device)
    if device.type == "cuda" and device.index is None:
        return th.device("cuda", th.cuda.current_device())
    return device


def device_class(device):
    """
    :param device: a torch.device or device string.
    :return: the device class string (see the module docstring); computed once per device.
    """
    device = _key(device)
    if device not in _CLASS_CACHE:
        if device.type == "cpu":
            features = detect_support(device).features
            best = next((f for f in CPU_CLASS_FLAGS if f in features), None)
            _CLASS_CACHE[device] = f"cpu-{best}" if best else "cpu"
        else:
            _CLASS_CACHE[device] = device.type
    return _CLASS_CACHE[device]


@th.compiler.assume_constant_result
def sdpa_preferred(device, dtype):
    """
    Whether attention on `device` with `dtype` activations should use SDPA (measured per class;
    unmeasured classes: SDPA everywhere except the CPU).
    """
    measured = SDPA_FASTER.get((device_class(device), dtype))
    if measured is None:
        return th.device(device).type != "cpu"
    return measured


def channels_last_preferred(device, precision):
    """Whether the networks should run channels-last on `device` in `precision` (default: no)."""
    return CHANNELS_LAST_FASTER.get((device_class(device), precision), False)
