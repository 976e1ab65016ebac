"""
Training throughput and early loss on the embedded digits, to size the CPU demo.

Measures TrainLoop steps/s (data loading, forward, backward, AdamW, EMA, logging; no
checkpoint writing) for small 32x32 diffusion UNets and the noisy classifier, at several batch
sizes, and optionally trains one configuration for N steps printing the loss curve.

    python benchmarks/bench_train.py                       # steps/s table
    python benchmarks/bench_train.py --curve unet-a --batch_size 32 --steps 300
    python benchmarks/bench_train.py --curve clf --batch_size 32 --steps 300
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch as th  # noqa: E402

from guided_diffusion import dist_util, logger  # noqa: E402
from guided_diffusion.data import digits as digits
from guided_diffusion.image_datasets import load_data  # noqa: E402
from guided_diffusion.script_util import (  # noqa: E402
    classifier_and_diffusion_defaults,
    create_classifier_and_diffusion,
    create_model_and_diffusion,
    model_and_diffusion_defaults,
)

UNETS = {
    # name: overrides of model_and_diffusion_defaults (image_size 32, 1000 steps, fixed sigma)
    "unet-a": dict(num_channels=64, channel_mult="1,2,2", num_res_blocks=1, attention_resolutions="8"),
    "unet-b": dict(num_channels=64, channel_mult="1,2,2", num_res_blocks=2, attention_resolutions="8"),
    "unet-c": dict(num_channels=64, channel_mult="1,2,2", num_res_blocks=1, attention_resolutions="64"),  # 64 > 32: middle block only
    "unet-demo16": dict(image_size=16, num_channels=64, channel_mult="1,2,2", num_res_blocks=2,
                        attention_resolutions="8", num_head_channels=32, dropout=0.1, noise_schedule="cosine"),
    "unet-16": dict(image_size=16, num_channels=64, channel_mult="1,2", num_res_blocks=1, attention_resolutions="8"),
}
CLASSIFIERS = {
    "clf": dict(classifier_width=64, classifier_depth=1, classifier_attention_resolutions="8",
                classifier_channel_mult="1,2,2", classifier_pool="attention"),
    "clf-clean": dict(classifier_width=64, classifier_depth=1, classifier_attention_resolutions="8",
                      classifier_channel_mult="1,2,2", classifier_pool="attention"),  # --noised False
    "clf-2": dict(classifier_width=64, classifier_depth=2, classifier_attention_resolutions="8",
                  classifier_channel_mult="1,2,2", classifier_pool="attention"),
}


def build(name, batch_size, image_size):
    """Return (step_fn, read_metrics, n_params) for a named configuration."""
    size = UNETS.get(name, {}).get("image_size", image_size)
    folder, _ = digits.materialize_digits("train", size)
    if name in UNETS:
        from guided_diffusion.train_util import TrainLoop

        flags = model_and_diffusion_defaults()
        flags.update(image_size=size, diffusion_steps=1000, learn_sigma=False)
        flags.update(UNETS[name])
        model, diffusion = create_model_and_diffusion(**flags)
        data = load_data(data_dir=folder, batch_size=batch_size, image_size=size, random_flip=False, seed=0)
        loop = TrainLoop(model=model, diffusion=diffusion, data=data, batch_size=batch_size, microbatch=-1,
                         lr=2e-4, ema_rate="0.999", log_interval=1, save_interval=10**9, resume_checkpoint="")

        def step():
            loop.run_step(*next(data))

        keys = ("loss",)
    else:
        from guided_diffusion.training.classifier import ClassifierTrainLoop

        flags = classifier_and_diffusion_defaults()
        flags.update(image_size=size, diffusion_steps=1000)
        flags.update(CLASSIFIERS[name])
        model, diffusion = create_classifier_and_diffusion(**flags)
        data = load_data(data_dir=folder, batch_size=batch_size, image_size=size, class_cond=True,
                         random_crop=True, random_flip=False, seed=0)
        loop = ClassifierTrainLoop(model=model, diffusion=diffusion, data=data, iterations=10**9, lr=3e-4,
                                   batch_size=batch_size, noised=not name.endswith("-clean"))

        def step():
            loop.forward_backward_log(loop.data)
            loop.mp_trainer.optimize(loop.opt)

        keys = ("train_loss", "train_acc@1")
    n_params = sum(p.numel() for p in model.parameters())

    def metrics():
        kv = logger.dumpkvs()
        return [kv.get(k, float("nan")) for k in keys]

    return step, metrics, n_params, keys


def measure(name, batch_size, steps, warmup, image_size):
    step, metrics, n_params, _ = build(name, batch_size, image_size)
    for _ in range(warmup):
        step()
        metrics()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
        metrics()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return steps / dt, dc / steps, n_params


def curve(name, batch_size, steps, image_size, every):
    step, metrics, n_params, keys = build(name, batch_size, image_size)
    print(f"# {name} batch {batch_size}: {n_params / 1e6:.2f}M params; mean of {', '.join(keys)} per {every} steps")
    window, t0, c0 = [], time.perf_counter(), time.process_time()
    for i in range(1, steps + 1):
        step()
        window.append(metrics())
        if i % every == 0:
            means = np.mean(np.array(window, dtype=np.float64), axis=0)
            el, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"step {i:5d}  " + "  ".join(f"{k} {m:.4f}" for k, m in zip(keys, means))
                  + f"  ({i / el:.2f} steps/s, {el:.0f} s wall, {cpu / i:.2f} cpu s/step)", flush=True)
            window = []


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="unet-a,unet-b,unet-c,unet-16,clf,clf-2")
    parser.add_argument("--batch_sizes", default="16,32")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (table) or training steps (--curve)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--curve", default="", help="train this config and print the loss curve")
    parser.add_argument("--batch_size", type=int, default=32, help="batch size for --curve")
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()

    if args.threads:
        th.set_num_threads(args.threads)
    th.manual_seed(0)
    np.random.seed(0)
    os.environ.setdefault("GUIDED_DIFFUSION_CACHE", os.path.join(tempfile.gettempdir(), "gd_bench_cache"))
    dist_util.setup_dist()
    logger.configure(dir=tempfile.mkdtemp(prefix="bench_train-"), format_strs=[])
    print(f"torch {th.__version__}, {th.get_num_threads()} threads, load avg {os.getloadavg()[0]:.1f}")

    if args.curve:
        curve(args.curve, args.batch_size, args.steps, args.image_size, args.every)
        return
    # CPU s/step (user+sys of this process) is robust to other processes sharing the cores;
    # with N threads and no contention, wall s/step is about cpu s/step / N (or a bit more).
    print(f"{'config':8s} {'batch':>5s} {'params':>8s} {'steps/s':>8s} {'img/s':>7s} {'cpu s/step':>10s} {'load':>5s}")
    for name in args.configs.split(","):
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            sps, cpu, n_params = measure(name, bs, args.steps, args.warmup, args.image_size)
            print(f"{name:8s} {bs:5d} {n_params / 1e6:7.2f}M {sps:8.2f} {sps * bs:7.1f} {cpu:10.2f} "
                  f"{os.getloadavg()[0]:5.1f}", flush=True)


if __name__ == "__main__":
    main()
