"""
Network speed on this machine: forward images/s and GFLOP/s of the released 64x64 diffusion
UNet and a small 32x32 UNet (batch 4, float32, CPU by default), sampling steps/s with a
short respacing, and the speed ratio of scaled_dot_product_attention over the explicit
attention formula (the model picks SDPA on accelerators, the explicit formula on the CPU).

    python benchmarks/bench_model.py [--device cpu] [--batch_size 4] [--repeats 3] [--skip_large]
"""

import argparse
import json
from pathlib import Path

import torch as th
from _timing import add_device_flags, best_of, start
from torch.utils.flop_counter import FlopCounterMode

from guided_diffusion.models import attention as A
from guided_diffusion import script_util as su

LAYOUTS = Path(__file__).resolve().parent.parent / "tests" / "data" / "checkpoints"

SMALL = dict(image_size=32, num_channels=64, num_res_blocks=2, attention_resolutions="16,8",
             num_head_channels=32, learn_sigma=True, resblock_updown=True)  # fmt: skip


def build(flags, device):
    kw = {**su.model_and_diffusion_defaults(), **flags}
    model, diffusion = su.create_model_and_diffusion(**kw)
    return model.to(device).eval(), diffusion, kw


def bench_forward(name, flags, args, device, repeats):
    model, _, kw = build(flags, device)
    n, size = args.batch_size, kw["image_size"]
    x = th.randn(n, 3, size, size, device=device)
    t = th.randint(0, 1000, (n,), device=device)
    y = th.randint(0, 1000, (n,), device=device) if kw["class_cond"] else None
    with th.no_grad():
        with FlopCounterMode(display=False) as counter:  # doubles as the warm-up run
            model(x, t, y=y)
        flops = counter.get_total_flops()
        seconds = best_of(lambda: model(x, t, y=y), repeats, device, warmup=False)
    params = sum(p.numel() for p in model.parameters())
    row = dict(model=name, params_M=round(params / 1e6, 1), batch=n, seconds=round(seconds, 3),
               images_per_s=round(n / seconds, 2), gflop_per_image=round(flops / n / 1e9, 2),
               gflop_per_s=round(flops / seconds / 1e9, 1))  # fmt: skip
    print(json.dumps(row))
    return row


def bench_sampling(args, device):
    flags = {**SMALL, "diffusion_steps": 1000, "timestep_respacing": "10"}
    model, diffusion, _ = build(flags, device)
    shape = (args.batch_size, 3, 32, 32)
    for name, loop in (("ddpm", diffusion.p_sample_loop), ("ddim", diffusion.ddim_sample_loop)):
        seconds = best_of(lambda: loop(model, shape, device=device), 1, device, warmup=False)
        row = dict(sampler=name, steps=diffusion.num_timesteps, batch=args.batch_size,
                   steps_per_s=round(diffusion.num_timesteps / seconds, 2))  # fmt: skip
        print(json.dumps(row))


def bench_attention(args, device):
    """SDPA vs explicit einsum attention (fp32, no grad): [B*heads, 64, T] for T = 256, 1024."""
    for length in (256, 1024):
        n = args.batch_size * 4
        q, k, v = (th.randn(n, 64, length, device=device) for _ in range(3))
        with th.no_grad():
            diff = (A.attention_sdpa(q, k, v) - A.attention_explicit(q, k, v)).abs().max().item()
            t_sdpa = best_of(lambda: A.attention_sdpa(q, k, v), args.repeats + 2, device)
            t_explicit = best_of(lambda: A.attention_explicit(q, k, v), args.repeats + 2, device)
        row = dict(attention=f"[{n}, 64, {length}] fp32", sdpa_ms=round(t_sdpa * 1e3, 2),
                   explicit_ms=round(t_explicit * 1e3, 2), sdpa_speedup=round(t_explicit / t_sdpa, 2),
                   max_abs_diff=diff, used_by_model="sdpa" if A.use_sdpa(q) else "explicit")  # fmt: skip
        print(json.dumps(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_flags(parser)
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip_large", action="store_true", help="skip the released 64x64 model")
    args = parser.parse_args()
    device = start(args)
    print(json.dumps(dict(torch=th.__version__, device=str(device), threads=th.get_num_threads())))
    bench_forward("small_32x32", SMALL, args, device, args.repeats)
    if not args.skip_large:
        released = json.loads((LAYOUTS / "64x64_diffusion.json").read_text())["create_kwargs"]
        released = {**released, "use_fp16": False}  # fp32 on the CPU
        bench_forward("released_64x64_diffusion", released, args, device, 1)
    bench_sampling(args, device)
    bench_attention(args, device)


if __name__ == "__main__":
    main()
