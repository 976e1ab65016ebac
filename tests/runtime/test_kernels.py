"""Per-device-class kernel choices (SDPA, channels-last) and the device classes themselves."""

import pytest
import torch as th

from guided_diffusion.runtime import kernels as K
from guided_diffusion.runtime.precision import DeviceSupport


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make the CPU report the given features; :return: a setter."""

    def set_features(*features):
        K._CLASS_CACHE.clear()
        support = DeviceSupport("cpu", "fake", tuple(features), bf16=False, fp16=False)
        monkeypatch.setattr(K, "detect_support", lambda device: support)

    yield set_features
    K._CLASS_CACHE.clear()


@pytest.mark.parametrize("features,expected", [
    (("avx512_bf16", "avx512f", "avx2"), "cpu-avx512_bf16"),
    (("amx_bf16", "avx512_bf16", "avx512f"), "cpu-amx_bf16"),
    (("avx512f", "avx2"), "cpu-avx512f"),
    (("avx2", "fma"), "cpu-avx2"),
    (("asimd",), "cpu"),
])
def test_cpu_device_class_is_the_widest_instruction_set(fake_cpu, features, expected):
    fake_cpu(*features)
    assert K.device_class("cpu") == expected


def test_non_cpu_devices_are_classed_by_type():
    assert K.device_class(th.device("meta")) == "meta"


def test_measured_choice_is_used_and_unmeasured_classes_keep_the_default(fake_cpu, monkeypatch):
    fake_cpu("avx2")
    monkeypatch.setitem(K.SDPA_FASTER, ("cpu-avx2", th.float32), True)
    assert K.sdpa_preferred(th.device("cpu"), th.float32) is True
    fake_cpu("asimd")  # class "cpu", not measured
    assert K.sdpa_preferred(th.device("cpu"), th.float32) is False
    assert K.sdpa_preferred(th.device("meta"), th.float32) is True
    assert K.channels_last_preferred(th.device("meta"), "bf16") is False


def test_tables_name_only_reachable_classes_and_known_types():
    classes = {f"cpu-{f}" for f in K.CPU_CLASS_FLAGS} | {"cpu", "cuda", "mps"}
    for cls, dtype in K.SDPA_FASTER:
        assert cls in classes and dtype in (th.float32, th.float64, th.bfloat16)
    for cls, prec in K.CHANNELS_LAST_FASTER:
        assert cls in classes and prec in ("fp32", "bf16", "fp16")
