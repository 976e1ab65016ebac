"""
Seconds per model evaluation, per classifier-guided sampling step and per training step, for
each speed configuration (precision, torch.compile, channels-last), with the ratio to the fp32
eager path measured in the same run; also SDPA vs explicit attention at the models' attention
shapes, and whether the classifier gradient overlaps with the UNet forward.

    python benchmarks/bench_speed.py                        # both models, every configuration
    python benchmarks/bench_speed.py --models digits8 --repeats 5
    python benchmarks/bench_speed.py --device cuda

Models: "released64" (the released 64x64 diffusion UNet and 64x64 classifier, batch 4) and
"digits8" (the demo's 8x8 UNet and classifier, batch 150). Weights are random, with the
zero-initialised output layers filled too, so that outputs (and their differences) are not zero.
Configurations run round-robin and each figure is the fastest of `--repeats` rounds, which keeps
the ratios meaningful on a machine shared with other jobs.
"""

import argparse
import importlib.util
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch as th

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _timing import add_device_flags, start, timed  # noqa: E402
from guided_diffusion.models.attention import attention_explicit, attention_sdpa  # noqa: E402
from guided_diffusion.models.layers import update_ema  # noqa: E402
from guided_diffusion.runtime import kernels, precision  # noqa: E402
from guided_diffusion.runtime.compile import CompiledCall  # noqa: E402
from guided_diffusion.sampling.guidance import make_cond_fn, make_model_fn  # noqa: E402
from guided_diffusion.script_util import (  # noqa: E402
    classifier_defaults,
    create_classifier,
    create_model_and_diffusion,
    model_and_diffusion_defaults,
)

CHECKPOINTS = REPO / "tests" / "data" / "checkpoints"
# name -> (precision, compile, channels_last)
CONFIGS = {
    "fp32 eager": ("fp32", False, False),
    "fp32 compiled": ("fp32", True, False),
    "channels-last": ("fp32", False, True),
    "auto": ("auto", False, False),
    "auto + channels-last": ("auto", False, True),
    "auto + compiled": ("auto", True, False),
}
BASELINE = "fp32 eager"


def model_specs():
    """:return: name -> (UNet flags, classifier flags, batch size)."""
    released = json.loads((CHECKPOINTS / "64x64_diffusion.json").read_text())["create_kwargs"]
    released_clf = json.loads((CHECKPOINTS / "64x64_classifier.json").read_text())["create_kwargs"]
    spec = importlib.util.spec_from_file_location("demo", REPO / "scripts" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return {
        "released64": ({**released, "use_fp16": False}, released_clf, 4),
        "digits8": (dict(demo.DIFFUSION_FLAGS), dict(demo.CLASSIFIER_FLAGS), demo.FULL["sample_batch"]),
    }


def fill_zero_params(module, generator):
    """Fill all-zero parameters (zero-initialised output layers) with N(0, 0.02^2) values."""
    with th.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(th.randn(p.shape, generator=generator) * 0.02)
    return module


def build(name, spec, device):
    unet_flags, clf_flags, batch = spec
    gen = th.Generator().manual_seed(0)
    model, diffusion = create_model_and_diffusion(**{**model_and_diffusion_defaults(), **unet_flags})
    classifier = create_classifier(**{**classifier_defaults(), **clf_flags})
    fill_zero_params(model, gen).to(device)
    fill_zero_params(classifier, gen).to(device).eval().requires_grad_(False)
    size = unet_flags["image_size"]
    inputs = dict(
        x=th.randn(batch, 3, size, size, generator=gen).to(device),
        t=th.full((batch,), diffusion.num_timesteps // 2, dtype=th.long, device=device),
        y=th.randint(0, 10, (batch,), generator=gen).to(device),
    )
    print(f"# {name}: UNet {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params, classifier "
          f"{sum(p.numel() for p in classifier.parameters()) / 1e6:.1f} M, batch {batch}, {size}x{size}", flush=True)
    return model, diffusion, classifier, inputs, bool(unet_flags.get("class_cond"))


class Runner:
    """The three measured operations of one configuration, on shared networks."""

    def __init__(self, config, model, diffusion, classifier, inputs, class_cond, device):
        prec_name, compiled, self.channels_last = CONFIGS[config]
        self.resolution = precision.resolve_precision(prec_name, device)
        prec = self.resolution.precision
        self.model, self.classifier, self.diffusion, self.device = model, classifier, diffusion, device
        self.inputs = inputs

        def wrap(net, what):
            fn = precision.autocast_call(net, prec, device)
            return CompiledCall(fn, name=f"{config} {what}") if compiled else fn

        self.eval_fn = make_model_fn(wrap(model, "eval"), class_cond)
        self.train_fn = make_model_fn(wrap(model, "train"), class_cond)
        self.cond_fn = make_cond_fn(wrap(classifier, "classifier"), 1.0)

    def _layout(self, x):
        return x.contiguous(memory_format=th.channels_last if self.channels_last else th.contiguous_format)

    def set_layout(self):
        fmt = th.channels_last if self.channels_last else th.contiguous_format
        self.model.to(memory_format=fmt)
        self.classifier.to(memory_format=fmt)

    def evaluate(self):
        self.model.eval()
        with th.no_grad():
            return self.eval_fn(self._layout(self.inputs["x"]), self.inputs["t"], y=self.inputs["y"])

    def guided_step(self):
        self.model.eval()
        with th.no_grad():
            return self.diffusion.p_sample(self.eval_fn, self._layout(self.inputs["x"]), self.inputs["t"],
                                           cond_fn=self.cond_fn, model_kwargs={"y": self.inputs["y"]})["sample"]

    def train_step(self, opt, ema):
        self.model.train()
        x0 = self._layout(self.inputs["x"].clamp(-1, 1))
        losses = self.diffusion.training_losses(self.train_fn, x0, self.inputs["t"], model_kwargs={"y": self.inputs["y"]})
        opt.zero_grad(set_to_none=True)
        losses["loss"].mean().backward()
        opt.step()
        update_ema(ema, list(self.model.parameters()), rate=0.9999)


def rel_diff(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def bench_model(name, spec, configs, args, device):
    """Round-robin over configurations; :return: (config -> best seconds and diff, overlap)."""
    model, diffusion, classifier, inputs, class_cond = build(name, spec, device)
    opt = th.optim.AdamW(model.parameters(), lr=1e-5)
    ema = [p.detach().clone() for p in model.parameters()]
    runners = {c: Runner(c, model, diffusion, classifier, inputs, class_cond, device) for c in configs}
    best = {c: dict(eval=float("inf"), guided=float("inf"), train=float("inf")) for c in configs}
    outputs = {}
    for config, r in runners.items():  # before any training step changes the weights
        r.set_layout()
        outputs[config] = r.evaluate().float()
    for rnd in range(1 - args.warmup, args.repeats + 1):  # round 0 warms up (and compiles)
        for config, r in runners.items():
            r.set_layout()
            times = dict(eval=timed(r.evaluate, device, args.clock), guided=timed(r.guided_step, device, args.clock))
            if not args.skip_train:
                times["train"] = timed(lambda: r.train_step(opt, ema), device, args.clock)
            if rnd == 0:
                print(f"  warm-up {config}: " + ", ".join(f"{k} {v:.3f} s" for k, v in times.items())
                      + f" [{r.resolution.precision}: {r.resolution.reason}]", flush=True)
                continue
            for k, v in times.items():
                best[config][k] = min(best[config][k], v)
        print(f"  round {rnd} done, load average {os.getloadavg()[0]:.1f}", flush=True)
    model.to(memory_format=th.contiguous_format)
    classifier.to(memory_format=th.contiguous_format)
    for config in configs:
        best[config]["precision"] = runners[config].resolution.precision
        base = outputs.get(BASELINE)
        best[config]["rel_diff"] = rel_diff(outputs[config], base) if base is not None else float("nan")
    if args.skip_overlap:
        return best, None
    return best, bench_overlap(runners.get("auto") or runners[configs[0]], args, device)


def bench_overlap(runner, args, device):
    """
    Sequential (UNet forward, then classifier input gradient) vs overlapped (the gradient in a
    second Python thread while the UNet runs; torch releases the GIL inside its kernels).

    :return: (sequential s, overlapped s), the fastest of the rounds.
    """
    x, t, y = runner.inputs["x"], runner.inputs["t"], runner.inputs["y"]

    def unet():
        with th.no_grad():
            runner.eval_fn(x, t, y=y)

    def sequential():
        unet()
        runner.cond_fn(x, t, y=y)

    def overlapped(pool):
        future = pool.submit(runner.cond_fn, x, t, y)
        unet()
        future.result()

    runner.model.eval()
    runner.set_layout()
    seq, ovl = float("inf"), float("inf")
    with ThreadPoolExecutor(max_workers=1) as pool:
        for _ in range(args.repeats + 1):
            seq = min(seq, timed(sequential, device))
            ovl = min(ovl, timed(lambda: overlapped(pool), device))
    return seq, ovl


def attention_shapes(spec):
    """[B*heads, C, T] of each attention resolution of the UNet in `spec` at its batch size."""
    flags, _, batch = spec
    kw = {**model_and_diffusion_defaults(), **flags}
    model, _ = create_model_and_diffusion(**kw)
    shapes, hooks = set(), []
    for m in model.modules():
        if type(m).__name__ in ("QKVAttention", "QKVAttentionLegacy"):
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out: shapes.add((inp[0].shape[0] * mod.n_heads, inp[0].shape[1] // (3 * mod.n_heads), inp[0].shape[2]))))
    x = th.zeros(1, 3, kw["image_size"], kw["image_size"])
    y = th.zeros(1, dtype=th.long) if kw["class_cond"] else None
    with th.no_grad():
        model(x, th.zeros(1, dtype=th.long), y=y)
    for h in hooks:
        h.remove()
    return sorted((b * batch, c, t) for b, c, t in shapes)


def bench_attention(specs, args, device):
    """Print SDPA vs explicit attention per dtype at every model's attention shapes."""
    dtypes = [th.float32, th.bfloat16]
    print(f"\n## attention on {kernels.device_class(device)}: explicit ms / SDPA ms (>1: SDPA faster)")
    for name, spec in specs.items():
        for shape in attention_shapes(spec):
            cells = []
            for dtype in dtypes:
                q, k, v = (th.randn(*shape, device=device).to(dtype) for _ in range(3))
                te, ts = float("inf"), float("inf")
                with th.no_grad():
                    for _ in range(args.repeats + 3):
                        te = min(te, timed(lambda: attention_explicit(q, k, v), device, args.clock))
                        ts = min(ts, timed(lambda: attention_sdpa(q, k, v), device, args.clock))
                cells.append(f"{str(dtype)[6:]} {te * 1e3:.2f}/{ts * 1e3:.2f} = {te / ts:.2f}x")
            print(f"  {name} {list(shape)}: " + "; ".join(cells), flush=True)


def print_table(results, clock):
    print(f"\nseconds: fastest round, {'CPU time of this process' if clock == 'cpu' else 'wall clock'}")
    print("\n| model | configuration | precision | eval s | guided step s | train step s "
          "| eval vs fp32 eager | guided vs fp32 eager | train vs fp32 eager | rel. diff of eval vs fp32 eager |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (best, _) in results.items():
        base = best.get(BASELINE)
        for config, row in best.items():
            def ratio(k):
                return f"{base[k] / row[k]:.2f}x" if base and row.get(k, float("inf")) < float("inf") else "-"
            print(f"| {name} | {config} | {row['precision']} | {row['eval']:.3f} | {row['guided']:.3f} | "
                  f"{row.get('train', float('nan')):.3f} | {ratio('eval')} | {ratio('guided')} | {ratio('train')} | "
                  f"{row['rel_diff']:.1e} |")
    for name, (_, overlap) in results.items():
        if overlap is None:
            continue
        seq, ovl = overlap
        print(f"\n{name}: UNet forward + classifier gradient, wall clock: sequential {seq:.3f} s, overlapped in two "
              f"threads {ovl:.3f} s: {seq / ovl:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_device_flags(parser)
    parser.add_argument("--models", default="released64,digits8")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after the warm-up round")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time, steadier than wall time on a shared machine (use with --threads 1)")
    parser.add_argument("--skip_train", action="store_true")
    parser.add_argument("--skip_attention", action="store_true")
    parser.add_argument("--skip_overlap", action="store_true")
    parser.add_argument("--warmup", type=int, choices=(0, 1), default=1,
                        help="1: an untimed first round (needed for compiled configurations); 0: every round timed")
    args = parser.parse_args()
    device = start(args)
    support = precision.detect_support(device)
    print(f"CPU: {precision.describe_cpu()}")
    print(f"device {device} ({support.name}, class {kernels.device_class(device)}), torch {th.__version__}, "
          f"{th.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    print(f"auto precision: {precision.resolve_precision('auto', device, support).reason}", flush=True)
    specs = {k: v for k, v in model_specs().items() if k in args.models.split(",")}
    configs = [c for c in CONFIGS if c in args.configs.split(",")]
    if not args.skip_attention:
        bench_attention(specs, args, device)
    results = {name: bench_model(name, spec, configs, args, device) for name, spec in specs.items()}
    print_table(results, args.clock)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
