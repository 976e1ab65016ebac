"""Loading a benchmark script as a module, and a cheap stand-in for the Inception extractor."""

import importlib.util
import os
import sys

import numpy as np

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def load_benchmark(name):
    """benchmarks/<name>.py as a module (the benchmarks import their shared _timing module by name)."""
    if BENCH_DIR not in sys.path:
        sys.path.insert(0, BENCH_DIR)
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH_DIR, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PixelFeatures:
    """Stands in for the Inception extractor: the images' pixels as features."""

    def __init__(self, device=None):
        pass

    def __call__(self, images):
        feats = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
        return {"pool": feats, "spatial": feats}
