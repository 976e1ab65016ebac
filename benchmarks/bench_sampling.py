"""
Sampling throughput: diffusion-step overhead alone and full reverse steps with a small UNet.

Prints steps/s (one step = one model call on the whole batch) for ancestral (p_sample) and DDIM
sampling. "overhead" uses a trivial linear model so the number is the cost of the diffusion
math itself (coefficient extraction, posterior, noise); "unet" uses a small 32x32 model.

    python benchmarks/bench_sampling.py [--device cpu] [--batch_size 4] [--steps 50]
"""

import argparse

import torch as th
from _timing import add_device_flags, start, timed

from guided_diffusion.script_util import (
    args_to_dict,
    create_model_and_diffusion,
    model_and_diffusion_defaults,
)


class _Trivial(th.nn.Module):
    """A 1x1 conv ignoring t: its cost is negligible next to the diffusion math."""

    def __init__(self):
        super().__init__()
        self.conv = th.nn.Conv2d(3, 6, 1)  # learned sigma: 2 * C output channels

    def forward(self, x, t, **kwargs):
        return self.conv(x)


def _steps_per_second(diffusion, model, shape, device, loop, steps):
    fn = getattr(diffusion, loop)
    fn(model, shape, device=device)  # warm-up (allocations, kernel selection)
    return steps / timed(lambda: fn(model, shape, device=device), device)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    add_device_flags(parser, "cuda" if th.cuda.is_available() else "cpu")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50, help="respaced number of steps")
    args = parser.parse_args()
    device = start(args)

    flags = model_and_diffusion_defaults()
    flags.update(image_size=32, num_channels=64, num_res_blocks=1, attention_resolutions="16,8",
                 learn_sigma=True, timestep_respacing=str(args.steps))
    model, diffusion = create_model_and_diffusion(**args_to_dict(argparse.Namespace(**flags), flags))
    model.to(device).eval()

    shape = (args.batch_size, 3, 32, 32)
    trivial = _Trivial().to(device)
    print(f"device={device} batch={args.batch_size} steps={args.steps} threads={th.get_num_threads()}")
    for loop in ("p_sample_loop", "ddim_sample_loop"):
        overhead = _steps_per_second(diffusion, trivial, shape, device, loop, args.steps)
        full = _steps_per_second(diffusion, model, shape, device, loop, args.steps)
        print(f"{loop:17s} overhead-only: {overhead:9.1f} steps/s   "
              f"unet32 (64ch, 1 block): {full:7.2f} steps/s = {full * args.batch_size:7.2f} img-steps/s")


if __name__ == "__main__":
    main()
