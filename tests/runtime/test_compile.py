"""`CompiledCall`: compiled calls give the eager results; failures fall back with one warning."""

import pytest
import torch as th

from guided_diffusion.runtime import compile as C
from guided_diffusion.runtime import logger
from guided_diffusion.sampling.guidance import make_cond_fn, make_model_fn
from guided_diffusion.sampling.samplers import run_sampler
from guided_diffusion.sampling.seeds import PerSampleNoise
from sample_helpers import one_thread, perturbed_nets

one_thread_fixture = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    th._dynamo.reset()  # no compiled code or failure shared between tests
    yield
    th._dynamo.reset()


@pytest.fixture
def log_lines(tmp_path):
    """The text lines logged during the test (after the logger's own 'Logging to' line)."""
    path = tmp_path / "log.txt"
    with logger.scoped_configure(dir=str(tmp_path), format_strs=["log"]):
        yield lambda: [line for line in path.read_text().splitlines() if not line.startswith("Logging to")]


def _failing_backend(graph_module, example_inputs):
    raise RuntimeError("simulated compiler failure")


def test_failing_compiler_falls_back_to_eager_with_one_warning(log_lines):
    net = th.nn.Sequential(th.nn.Linear(3, 4), th.nn.SiLU(), th.nn.Linear(4, 2))
    call = C.CompiledCall(net, name="toy", backend=_failing_backend)
    x = th.randn(5, 3)
    assert th.equal(call(x), net(x))
    assert th.equal(call(x), net(x))
    assert not call.is_compiled
    lines = log_lines()
    assert lines == ["compile: toy: torch.compile failed with RuntimeError: simulated compiler failure; running eager"]


def test_unavailable_compiler_warns_once_and_runs_eager(log_lines, monkeypatch):
    monkeypatch.setattr(th._dynamo, "is_dynamo_supported", lambda: False)
    net = th.nn.Linear(3, 2)
    call = C.CompiledCall(net, name="toy")
    x = th.randn(2, 3)
    assert th.equal(call(x), net(x)) and not call.is_compiled
    assert len(log_lines()) == 1 and "does not support this Python version or platform" in log_lines()[0]


def test_input_errors_are_raised_not_swallowed(log_lines):
    call = C.CompiledCall(th.nn.Linear(3, 2), name="toy", backend="eager")
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        call(th.randn(2, 4))
    assert call.is_compiled and log_lines() == []


def test_first_and_second_call_times_are_logged(log_lines):
    call = C.CompiledCall(th.nn.Linear(3, 2), name="toy", backend="eager")
    for _ in range(3):
        call(th.randn(2, 3))
    lines = log_lines()
    assert len(lines) == 1 and lines[0].startswith("compile: toy: first call ") and "second call" in lines[0]
    assert call.first_call_s > 0 and call.second_call_s > 0


def test_maybe_compile_off_returns_the_module():
    net = th.nn.Linear(3, 2)
    assert C.maybe_compile(net, False) is net
    assert isinstance(C.maybe_compile(net, True, backend="eager"), C.CompiledCall)
    assert list(net.state_dict()) == ["weight", "bias"]  # checkpoints keep the eager keys


@pytest.fixture(scope="module")
def guided():
    model, classifier, diffusion = perturbed_nets()
    return model, classifier.requires_grad_(False), diffusion


def _samples(guided, wrap, batches):
    """Guided samples 0..N-1 drawn in the given batch sizes, networks wrapped by `wrap`."""
    model, classifier, diffusion = guided
    model_fn = make_model_fn(wrap(model), class_cond=False)
    cond_fn = make_cond_fn(wrap(classifier), 1.0)
    out, start = [], 0
    for n in batches:
        idx = range(start, start + n)
        y = th.tensor([i % 10 for i in idx])
        with th.no_grad():
            out.append(run_sampler(diffusion, "ancestral", model_fn, (n, 3, 8, 8), PerSampleNoise(7, idx),
                                   cond_fn=cond_fn, model_kwargs={"y": y}))
        start += n
    return th.cat(out)


@pytest.mark.slow
def test_compiled_samples_match_eager_with_per_sample_seeds(guided):
    """Inductor-compiled UNet and classifier, batches of 3 then 1 (a recompile) vs eager batch 4."""
    eager = _samples(guided, lambda net: net, [4])
    compiled = _samples(guided, lambda net: C.CompiledCall(net, name=type(net).__name__), [3, 1])
    assert compiled.shape == eager.shape
    # float32 kernels fused differently round differently (1e-6 per step); 4 steps stay far below 1e-4
    assert (compiled - eager).abs().max().item() < 1e-4
