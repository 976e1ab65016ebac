"""
Gaussian KL and discretized-Gaussian likelihood (the original's module path).
Implementation: `guided_diffusion.diffusion.likelihood`.
"""

from .diffusion.likelihood import (  # noqa: F401
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    normal_kl,
)
