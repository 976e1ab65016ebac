"""
Log-likelihood helpers for the variational bound: Gaussian KL divergence and the discretized
Gaussian decoder of Ho et al. 2020 (Sec. 3.3). All results are in nats, elementwise.
"""

import numpy as np
import torch as th


def normal_kl(mean1, logvar1, mean2, logvar2):
    """
    KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats.

    Arguments broadcast against each other; scalars are allowed for any of them as long as at
    least one argument is a tensor.

    :param mean1: mean of the first Gaussian, tensor or float.
    :param logvar1: log-variance of the first Gaussian, tensor or float.
    :param mean2: mean of the second Gaussian, tensor or float.
    :param logvar2: log-variance of the second Gaussian, tensor or float.
    :return: a tensor of the broadcast shape.
    """
    tensor = next((obj for obj in (mean1, logvar1, mean2, logvar2) if isinstance(obj, th.Tensor)), None)
    if tensor is None:
        raise TypeError("normal_kl needs at least one torch.Tensor argument")
    # th.exp() does not accept Python floats, so make the log-variances tensors.
    logvar1, logvar2 = [
        x if isinstance(x, th.Tensor) else th.tensor(x).to(tensor) for x in (logvar1, logvar2)
    ]
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + th.exp(logvar1 - logvar2)
        + ((mean1 - mean2) ** 2) * th.exp(-logvar2)
    )


def approx_standard_normal_cdf(x):
    """
    A fast tanh approximation of the standard normal CDF (Page 1977).

    :param x: a tensor of any shape.
    :return: a tensor of the same shape with values in [0, 1].
    """
    return 0.5 * (1.0 + th.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * th.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, *, means, log_scales):
    """
    Log-likelihood of a Gaussian discretized into 256 bins of width 2/255 on [-1, 1].

    The outermost bins extend to -inf and +inf.

    :param x: the target images, uint8 values rescaled to [-1, 1], shape [N, ...].
    :param means: the Gaussian means, same shape as x.
    :param log_scales: the Gaussian log standard deviations, same shape as x.
    :return: a tensor like x of log probabilities (in nats).
    """
    if not x.shape == means.shape == log_scales.shape:
        raise ValueError(
            f"x, means and log_scales must share a shape, got {tuple(x.shape)}, "
            f"{tuple(means.shape)} and {tuple(log_scales.shape)}"
        )
    centered_x = x - means
    inv_stdv = th.exp(-log_scales)
    plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
    cdf_plus = approx_standard_normal_cdf(plus_in)
    min_in = inv_stdv * (centered_x - 1.0 / 255.0)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = th.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = th.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return th.where(
        x < -0.999,
        log_cdf_plus,
        th.where(x > 0.999, log_one_minus_cdf_min, th.log(cdf_delta.clamp(min=1e-12))),
    )
