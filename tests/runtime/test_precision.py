"""Precision detection, `--precision` resolution and the autocast wrapper."""

import pytest
import torch as th

from guided_diffusion.runtime import precision as P
from sample_helpers import one_thread, perturbed_nets

one_thread_fixture = pytest.fixture(scope="module", autouse=True)(one_thread)

X86_AVX2 = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Some AVX2 CPU
flags\t\t: fpu sse sse2 sse4_2 avx fma avx2
"""
X86_BF16 = X86_AVX2.replace("avx2", "avx2 avx512f avx512_bf16").replace("Some AVX2", "Some BF16")
ARM_BF16 = """processor\t: 0
Features\t: fp asimd asimdhp sve bf16
CPU part\t: 0xd40
"""


def _cpuinfo(tmp_path, text):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


def test_read_cpuinfo_flags_and_name(tmp_path):
    flags, name = P.read_cpuinfo(_cpuinfo(tmp_path, X86_BF16))
    assert {"avx2", "avx512f", "avx512_bf16"} <= flags and "model" not in flags
    assert name == "Some BF16 CPU"
    assert P.read_cpuinfo(str(tmp_path / "missing")) == (None, None)


@pytest.mark.parametrize("text,bf16,features", [
    (X86_AVX2, False, ("avx2", "fma", "avx", "sse4_2")),
    (X86_BF16, True, ("avx512_bf16", "avx512f", "avx2", "fma", "avx", "sse4_2")),
    (ARM_BF16, True, ("asimd", "sve", "bf16")),
])
def test_cpu_support_from_flags(tmp_path, text, bf16, features):
    support = P.cpu_support(_cpuinfo(tmp_path, text))
    assert support.bf16 is bf16 and support.fp16 is False
    assert support.features == features


def test_auto_is_fp32_on_a_cpu_without_reduced_precision(tmp_path):
    support = P.detect_support("cpu", cpuinfo_path=_cpuinfo(tmp_path, X86_AVX2))
    res = P.resolve_precision("auto", "cpu", support)
    assert (res.precision, res.dtype) == ("fp32", th.float32)
    assert "no native" in res.reason and "Some AVX2 CPU" in res.reason


def test_auto_is_bf16_on_an_avx512_bf16_cpu(tmp_path):
    support = P.detect_support("cpu", cpuinfo_path=_cpuinfo(tmp_path, X86_BF16))
    res = P.resolve_precision("auto", "cpu", support)
    assert (res.precision, res.dtype) == ("bf16", th.bfloat16)
    assert "avx512_bf16" in res.reason


def test_unreadable_cpuinfo_without_torch_flags_counts_as_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "_torch_cpu_flags", lambda: (frozenset(), None))
    support = P.cpu_support(str(tmp_path / "missing"))
    assert not support.bf16 and not support.fp16
    assert P.resolve_precision("auto", "cpu", support).precision == "fp32"


@pytest.mark.parametrize("bf16,fp16,expected", [(True, True, "bf16"), (False, True, "fp16"), (False, False, "fp32")])
def test_auto_on_simulated_cuda(bf16, fp16, expected):
    support = P.DeviceSupport("cuda", "simulated GPU", ("sm_xx",), bf16=bf16, fp16=fp16)
    assert P.resolve_precision("auto", "cuda", support).precision == expected


def test_fp16_on_a_cpu_without_float16_is_refused(tmp_path):
    support = P.cpu_support(_cpuinfo(tmp_path, X86_BF16))
    with pytest.raises(ValueError, match=r"--precision fp16: this CPU \(Some BF16 CPU\) has no native float16.*bf16"):
        P.resolve_precision("fp16", "cpu", support)
    with_fp16 = P.cpu_support(_cpuinfo(tmp_path, X86_BF16.replace("avx2", "avx2 avx512_fp16")))
    assert P.resolve_precision("fp16", "cpu", with_fp16).dtype == th.float16


def test_explicit_bf16_on_an_emulating_cpu_says_so(tmp_path):
    res = P.resolve_precision("bf16", "cpu", P.cpu_support(_cpuinfo(tmp_path, X86_AVX2)))
    assert res.precision == "bf16" and "emulates" in res.reason


def test_bad_values_and_use_fp16_combinations():
    support = P.DeviceSupport("cpu", "c", (), bf16=True, fp16=False)
    with pytest.raises(ValueError, match="--precision 'half' is not one of auto, fp32, bf16, fp16"):
        P.resolve_precision("half", "cpu", support)
    with pytest.raises(ValueError, match="--precision bf16 cannot be combined with --use_fp16 True"):
        P.resolve_precision("bf16", "cpu", support, use_fp16=True)
    assert P.resolve_precision("auto", "cpu", support, use_fp16=True).precision == "fp32"
    with pytest.raises(ValueError, match="not resolved"):
        P.autocast("auto", "cpu")


@pytest.fixture(scope="module")
def nets():
    model, classifier, _ = perturbed_nets()
    x = th.randn(4, 3, 8, 8, generator=th.Generator().manual_seed(3))
    t = th.tensor([0, 30, 60, 99])
    return model, classifier, x, t


def test_fp32_is_the_network_itself_and_bit_identical(nets):
    model, _, x, t = nets
    assert P.autocast_call(model, "fp32", "cpu") is model
    with th.no_grad():
        plain = model(x, t)
        with P.autocast("fp32", "cpu"):
            inside = model(x, t)
    assert th.equal(plain, inside)


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


# bf16 keeps 8 significand bits (relative rounding 2^-9 = 2e-3 per operation); through these
# nets the relative L2 errors add up to 0.4-1e-2 (outputs) and 2e-2 (the classifier's input
# gradient), so 5e-2 leaves room without hiding a wrong cast (whose errors are of order 1).
BF16_TOLERANCE = 5e-2


def test_bf16_unet_output_close_to_fp32_and_float32(nets):
    model, _, x, t = nets
    with th.no_grad():
        ref = model(x, t)
        out = P.autocast_call(model, "bf16", "cpu")(x, t)
    assert out.dtype == th.float32 and out.shape == ref.shape
    assert 0 < _rel(out, ref) < BF16_TOLERANCE


def test_bf16_classifier_logits_and_input_gradient_close_to_fp32(nets):
    _, classifier, x, t = nets

    def logits_and_grad(fn):
        x_in = x.clone().requires_grad_(True)
        logits = fn(x_in, t)
        grad = th.autograd.grad(th.log_softmax(logits, -1)[:, 0].sum(), x_in)[0]
        return logits, grad

    ref_logits, ref_grad = logits_and_grad(classifier)
    logits, grad = logits_and_grad(P.autocast_call(classifier, "bf16", "cpu"))
    assert logits.dtype == th.float32 and grad.dtype == th.float32
    assert _rel(logits, ref_logits) < BF16_TOLERANCE
    assert _rel(grad, ref_grad) < BF16_TOLERANCE


def test_bf16_training_keeps_float32_parameters_and_gradients(nets):
    model, _, x, t = nets
    grads = {}
    for prec in ("fp32", "bf16"):
        model.zero_grad(set_to_none=True)
        P.autocast_call(model, prec, "cpu")(x, t).square().mean().backward()
        grads[prec] = th.cat([p.grad.flatten() for p in model.parameters()])
        assert all(p.dtype == th.float32 and p.grad.dtype == th.float32 for p in model.parameters())
    model.zero_grad(set_to_none=True)
    assert _rel(grads["bf16"], grads["fp32"]) < BF16_TOLERANCE


def test_to_float32_casts_nested_reduced_precision_only():
    half = th.ones(2, dtype=th.bfloat16)
    out = P.to_float32({"a": (half, th.ones(1, dtype=th.float64)), "b": [half.half()], "c": 3})
    assert out["a"][0].dtype == th.float32 and out["a"][1].dtype == th.float64
    assert out["b"][0].dtype == th.float32 and out["c"] == 3
