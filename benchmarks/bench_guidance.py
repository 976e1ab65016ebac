"""
Classifier-guidance cost: seconds per image per sampling step, unguided vs guided, for ancestral
(condition_mean) and DDIM (condition_score) sampling, and the overhead ratio guided / unguided,
measured in one run on the same models and noise.

    python benchmarks/bench_guidance.py                 # small 32x32 config on the CPU
    python benchmarks/bench_guidance.py --device cuda --image_size 64 --batch_size 32

Models are randomly initialised (speed does not depend on the weights).
"""

import argparse
import statistics

import torch as th
from _timing import add_device_flags, start, timed

from guided_diffusion.sampling.guidance import make_cond_fn, make_model_fn
from guided_diffusion.sampling.seeds import PerSampleNoise
from guided_diffusion.sampling.samplers import run_sampler
from guided_diffusion.script_util import (
    classifier_defaults,
    create_classifier,
    create_model_and_diffusion,
    model_and_diffusion_defaults,
)


def build(args, device):
    flags = model_and_diffusion_defaults()
    flags.update(image_size=args.image_size, num_channels=args.num_channels, num_res_blocks=args.num_res_blocks,
                 attention_resolutions=args.attention_resolutions, channel_mult=args.channel_mult,
                 num_head_channels=32, learn_sigma=True, diffusion_steps=1000,
                 timestep_respacing=str(args.steps), use_fp16=args.fp16)
    model, diffusion = create_model_and_diffusion(**flags)
    cflags = classifier_defaults()
    cflags.update(image_size=args.image_size, classifier_width=args.classifier_width, classifier_depth=args.classifier_depth,
                  classifier_attention_resolutions=args.attention_resolutions, classifier_channel_mult=args.channel_mult,
                  classifier_use_fp16=args.fp16)
    classifier = create_classifier(**cflags)
    model.to(device).eval()
    classifier.to(device).eval()
    classifier.requires_grad_(False)  # as classifier_sample.py
    if args.fp16:
        model.convert_to_fp16()
        classifier.convert_to_fp16()
    return model, diffusion, classifier


def time_sampling(diffusion, model_fn, cond_fn, y, args, device, use_ddim):
    """
    Median seconds per image per step of unguided and guided sampling. The two are timed in
    alternation (same noise per repetition) so load changes on a shared machine hit both alike.

    :return: (unguided, guided).
    """
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    times = {None: [], "guided": []}
    for rep in range(args.repeats + 1):  # repetition 0 warms up
        for key, fn in ((None, None), ("guided", cond_fn)):
            def run():
                with th.no_grad():
                    run_sampler(diffusion, "ddim" if use_ddim else "ancestral", model_fn, shape,
                                PerSampleNoise(rep, range(args.batch_size)), cond_fn=fn, model_kwargs={"y": y},
                                device=device)
            elapsed = timed(run, device)
            if rep:
                times[key].append(elapsed)
    per = args.batch_size * args.steps
    return statistics.median(times[None]) / per, statistics.median(times["guided"]) / per


def time_classifier_gradient(classifier, cond_fn, y, args, device):
    x = th.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    t = th.full((args.batch_size,), 500, device=device, dtype=th.long)
    times = [timed(lambda: cond_fn(x, t, y=y), device) for _ in range(args.steps + 1)][1:]
    return statistics.median(times) / args.batch_size


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    add_device_flags(p, "cuda" if th.cuda.is_available() else "cpu")
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--num_channels", type=int, default=64)
    p.add_argument("--num_res_blocks", type=int, default=2)
    p.add_argument("--attention_resolutions", default="16,8")
    p.add_argument("--channel_mult", default="")
    p.add_argument("--classifier_width", type=int, default=64)
    p.add_argument("--classifier_depth", type=int, default=2)
    p.add_argument("--batch_size", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fp16", action="store_true")
    args = p.parse_args()
    device = start(args)
    model, diffusion, classifier = build(args, device)
    y = th.arange(args.batch_size, device=device) % 10
    model_fn = make_model_fn(model, class_cond=False)
    cond_fn = make_cond_fn(classifier, 1.0)

    print(f"device={device} threads={th.get_num_threads()} image_size={args.image_size} "
          f"channels={args.num_channels} classifier_width={args.classifier_width} batch={args.batch_size} "
          f"steps={args.steps} fp16={args.fp16}")
    grad = time_classifier_gradient(classifier, cond_fn, y, args, device)
    print(f"classifier gradient alone: {grad * 1e3:.3f} ms per image per step")
    x = th.zeros(args.batch_size, 3, args.image_size, args.image_size, device=device)
    seeded = PerSampleNoise(0, range(args.batch_size), device)
    per_sample = statistics.median(timed(lambda: seeded(x), device) for _ in range(20))
    shared = statistics.median(timed(lambda: th.randn_like(x), device) for _ in range(20))
    print(f"per-step noise: per-sample seeded {per_sample * 1e3:.3f} ms vs randn_like {shared * 1e3:.3f} ms per batch")
    for name, use_ddim in (("ancestral", False), ("ddim", True)):
        plain, guided = time_sampling(diffusion, model_fn, cond_fn, y, args, device, use_ddim)
        print(f"{name:9s} unguided {plain * 1e3:8.3f} ms/img/step | guided {guided * 1e3:8.3f} ms/img/step | "
              f"overhead ratio {guided / plain:.2f}x")


if __name__ == "__main__":
    main()
