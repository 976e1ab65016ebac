"""
Timing and start-up shared by the benchmarks: clocks that wait for queued CUDA work, and the
--device / --threads flags with a fixed seed.
"""

import time

import torch as th


def sync(device):
    """Wait for the work queued on `device` (CUDA runs asynchronously; the CPU does not)."""
    if device.type == "cuda":
        th.cuda.synchronize()


def timed(fn, device, clock="wall"):
    """Seconds `fn()` takes: wall-clock, or "cpu" (this process's user + system time, all threads)."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    sync(device)
    start = now()
    fn()
    sync(device)
    return now() - start


def best_of(fn, repeats, device, warmup=True):
    """The fastest of `repeats` timed calls of `fn()` (after one untimed call with `warmup`)."""
    if warmup:
        fn()
    return min(timed(fn, device) for _ in range(repeats))


def add_device_flags(parser, device="cpu"):
    """Add --device (default `device`) and --threads (torch intra-op threads, 0: torch default)."""
    parser.add_argument("--device", default=device)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")


def start(args):
    """Apply --threads, seed torch with 0, and return the torch.device of --device."""
    if args.threads:
        th.set_num_threads(args.threads)
    th.manual_seed(0)
    return th.device(args.device)
