"""
--precision / --compile through `generate_samples`, `shard_batches` and the sampling scripts: the
fp32 default is the code path of old, bf16 stays close to it, auto follows the device, and the
classifier gradient keeps no parameter gradients.
"""

import functools
import json
import os

import numpy as np
import pytest
import torch as th

from guided_diffusion.data.pixels import to_uint8_nhwc
from guided_diffusion.runtime import logger
from guided_diffusion.runtime import precision as P
from guided_diffusion.runtime import speed
from guided_diffusion.runtime.speed import NetworkCall, fast_call, fast_networks, frozen_parameters, speed_defaults
from guided_diffusion.sampling.generate import generate_samples, shard_batches
from guided_diffusion.sampling.guidance import make_cond_fn, make_model_fn
from guided_diffusion.sampling.samplers import run_sampler
from guided_diffusion.sampling.seeds import PerSampleNoise
from sample_helpers import MODEL_FLAGS, build_classifier, build_model, flag_list, one_thread, perturb_and_save
from sample_helpers import run_in_process

one_thread_fixture = pytest.fixture(scope="module", autouse=True)(one_thread)

NO_REDUCED = P.DeviceSupport("cpu", "simulated AVX2 CPU", ("avx2",), bf16=False, fp16=False)
SCALE = 10.0


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    th.manual_seed(0)
    folder = tmp_path_factory.mktemp("speed_nets")
    model, diffusion = build_model()
    classifier = build_classifier()
    perturb_and_save(model, folder / "model.pt", seed=1, std=0.02)
    perturb_and_save(classifier, folder / "classifier.pt", seed=2, std=0.05)
    return dict(model=model.eval(), classifier=classifier.eval(), diffusion=diffusion, folder=folder)


@pytest.fixture
def log_text(tmp_path):
    path = tmp_path / "log.txt"
    with logger.scoped_configure(dir=str(tmp_path), format_strs=["log"]):
        yield lambda: path.read_text()


def _guided(nets, **kw):
    return generate_samples(nets["model"], nets["diffusion"], num_samples=4, batch_size=4, seed=3,
                            classifier=nets["classifier"], classifier_scale=SCALE, labels="balanced",
                            progress=False, **kw)


def test_speed_defaults_keep_the_original_arithmetic():
    assert speed_defaults() == dict(precision="fp32", compile=False)


def test_fast_call_is_the_network_for_fp32_and_reads_as_it_otherwise(nets):
    model = nets["model"]
    assert fast_call(model, "fp32", "cpu") is model and fast_call(None, "bf16", "cpu") is None
    wrapped = fast_call(model, "bf16", "cpu")
    assert isinstance(wrapped, NetworkCall)
    assert wrapped.image_size == model.image_size and list(wrapped.parameters())[0] is next(model.parameters())
    x, t = th.randn(2, 3, 8, 8), th.tensor([1, 50])
    with th.no_grad():
        out, ref = wrapped(x, t), model(x, t)
    assert out.dtype == th.float32 and out.shape == ref.shape and not th.equal(out, ref)


def test_fp32_guided_samples_are_bit_identical_to_the_plain_sampling_loop(nets):
    """The default path calls the networks as they are: same bits as run_sampler on them."""
    images, labels = _guided(nets)
    model, classifier, diffusion = nets["model"], nets["classifier"], nets["diffusion"]
    y = th.from_numpy(labels)
    with th.no_grad():
        x = run_sampler(diffusion, "ancestral", make_model_fn(model, False), (4, 3, 8, 8),
                        PerSampleNoise(3, np.arange(4)), model_kwargs={"y": y},
                        cond_fn=make_cond_fn(classifier, SCALE))
    assert np.array_equal(images, to_uint8_nhwc(x))
    assert np.array_equal(_guided(nets, precision="fp32", compile=False)[0], images)


def test_classifier_gradient_keeps_no_parameter_gradients(nets):
    classifier = nets["classifier"]
    assert all(p.requires_grad for p in classifier.parameters())
    for precision in ("fp32", "bf16"):
        _guided(nets, precision=precision)
        assert all(p.grad is None for p in classifier.parameters())
    assert all(p.requires_grad for p in classifier.parameters())  # restored after the run
    with frozen_parameters(classifier):
        assert not any(p.requires_grad for p in classifier.parameters())


def test_bf16_guided_samples_stay_close_to_fp32_and_differ_from_them(nets, log_text):
    fp32, _ = _guided(nets)
    bf16, _ = _guided(nets, precision="bf16")
    diff = np.abs(fp32.astype(int) - bf16.astype(int))
    # bf16 rounds at 2^-9 relative; four steps keep the uint8 images within a few levels on average
    assert 0 < diff.mean() < 3.0 and diff.max() <= 32
    assert "precision: bf16 for sampling (requested" in log_text()


def test_bf16_samples_still_depend_only_on_their_index(nets):
    whole, _ = _guided(nets, precision="bf16")
    part, _ = generate_samples(nets["model"], nets["diffusion"], indices=[3, 1], batch_size=1, seed=3,
                               classifier=nets["classifier"], classifier_scale=SCALE, labels="balanced",
                               progress=False, precision="bf16")
    # the same noise per sample; only the batch shape changes how bf16 kernels block their sums
    assert np.abs(whole[[3, 1]].astype(int) - part.astype(int)).mean() < 1.0


def test_auto_is_fp32_on_a_device_without_reduced_precision(nets, monkeypatch, log_text):
    monkeypatch.setattr(P, "detect_support", lambda device, cpuinfo_path=None: NO_REDUCED)
    networks = fast_networks(nets["model"], nets["classifier"], precision="auto", device=th.device("cpu"))
    assert networks.precision == "fp32" and networks.model is nets["model"]
    assert "precision: fp32 for sampling (auto: no native bfloat16/float16 on simulated AVX2 CPU" in log_text()
    make_batch = shard_batches(nets["model"], nets["diffusion"], precision="auto", classifier=nets["classifier"],
                               classifier_scale=SCALE, labels="balanced")
    assert np.array_equal(make_batch(np.arange(4), 3)["arr_0"], _guided(nets)[0])


def test_fp16_on_a_cpu_without_float16_is_refused_before_sampling(nets, monkeypatch):
    monkeypatch.setattr(P, "detect_support", lambda device, cpuinfo_path=None: NO_REDUCED)
    with pytest.raises(ValueError, match=r"^--precision fp16: this CPU \(simulated AVX2 CPU\) has no native float16"):
        shard_batches(nets["model"], nets["diffusion"], precision="fp16")


@pytest.mark.slow
def test_compiled_generate_samples_match_eager(nets, monkeypatch, log_text):
    """The wiring of compile=True, on dynamo's aot_eager backend (inductor's own run: test_compile.py)."""
    monkeypatch.setattr(speed, "maybe_compile", functools.partial(speed.maybe_compile, backend="aot_eager"))
    th._dynamo.reset()
    try:
        eager, _ = _guided(nets)
        compiled, _ = _guided(nets, compile=True)
    finally:
        th._dynamo.reset()
    # traced float32 graphs may round differently (1e-6 relative): at most one uint8 level apart
    assert np.abs(eager.astype(int) - compiled.astype(int)).max() <= 1
    log = log_text()
    assert "compile: model: first call" in log and "compile: classifier: first call" in log
    assert "running eager" not in log


def _sample_args(nets, out_dir, *extra):
    flags = dict(MODEL_FLAGS, model_path=nets["folder"] / "model.pt", num_samples=2, batch_size=2, seed=1,
                 output_dir=out_dir, progress=False)
    return flag_list(flags) + list(extra)


def test_image_sample_precision_bf16_is_recorded_and_keys_the_shards(nets, tmp_path, monkeypatch, capsys):
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        code, _, err = run_in_process("image_sample.py", _sample_args(nets, out, "--precision", precision),
                                      monkeypatch, capsys)
        assert code == 0, err[-2000:]
        (record,) = [f for f in os.listdir(out) if f.endswith(".json")]
        config = json.loads((out / record).read_text())["config"]
        assert "precision" not in config["flags"] and "compile" not in config["flags"]
        assert config.get("precision", "fp32") == precision  # fp32 runs keep the key they had before
    log = (tmp_path / "bf16" / "log.txt").read_text()
    assert "precision: bf16 for sampling" in log


def test_image_sample_precision_fp16_on_this_cpu_exits_2_naming_the_flag(nets, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(P, "detect_support", lambda device, cpuinfo_path=None: NO_REDUCED)
    out = tmp_path / "fp16"
    code, _, err = run_in_process("image_sample.py", _sample_args(nets, out, "--precision", "fp16"),
                                  monkeypatch, capsys)
    lines = [line for line in err.strip().splitlines() if line]
    assert code == 2 and len(lines) == 1 and "--precision fp16" in lines[0] and "bf16" in lines[0]
    assert not out.exists() or not any(f.endswith(".npz") for f in os.listdir(out))


def test_speed_flags_are_arguments_of_every_training_loop():
    import inspect

    from guided_diffusion.training.classifier import ClassifierTrainLoop
    from guided_diffusion.training.diffusion import DiffusionTrainLoop
    from guided_diffusion.training.flags import SPEED_LOOP_FLAGS

    assert set(SPEED_LOOP_FLAGS) == set(speed_defaults())
    for loop in (DiffusionTrainLoop, ClassifierTrainLoop):
        assert set(SPEED_LOOP_FLAGS) <= set(inspect.signature(loop.__init__).parameters)
