"""
Classifier guidance (Dhariwal & Nichol 2021, Algorithms 1 and 2).

`make_cond_fn` builds the `cond_fn(x, t, y)` that the diffusion's `condition_mean` (ancestral
sampling) and `condition_score` (DDIM) consume: s * grad_x log p_phi(y | x_t, t), where p_phi is
the softmax of a noise-aware classifier and s the guidance scale.
"""

import math

import torch as th
import torch.nn.functional as F


def classifier_log_probs(classifier, x, t, y):
    """
    log p(y | x_t) of the requested labels, in float32.

    :param classifier: module called as classifier(x, t) -> logits [N x K].
    :param x: the [N x C x H x W] noisy images.
    :param t: the [N] timesteps as the classifier expects them.
    :param y: the [N] long labels.
    :return: a float32 [N] tensor.
    """
    logits = classifier(x, t).float()
    log_probs = F.log_softmax(logits, dim=-1)
    return log_probs.gather(1, y.view(-1, 1).long()).squeeze(1)


def make_cond_fn(classifier, scale):
    """
    Build the guidance gradient function.

    The sampling loops may run under `torch.no_grad()`, so the gradient is taken inside
    `torch.enable_grad()` with respect to a float32 copy of x_t.

    :param classifier: noise-aware classifier module (in eval mode).
    :param scale: the guidance scale s (float).
    :return: cond_fn(x, t, y=None, **kwargs) -> float32 tensor shaped like x.
    """
    scale = float(scale)

    def cond_fn(x, t, y=None, **kwargs):
        if y is None:
            raise ValueError("classifier guidance needs labels: pass model_kwargs={'y': labels}")
        with th.enable_grad():
            x_in = x.detach().float().requires_grad_(True)
            selected = classifier_log_probs(classifier, x_in, t, y)
            grad = th.autograd.grad(selected.sum(), x_in)[0]
        return grad * scale

    return cond_fn


def make_model_fn(model, class_cond):
    """
    Wrap the diffusion model so labels reach it only when it is class-conditional
    (the labels in model_kwargs are otherwise meant for the classifier only).

    :param model: the UNet, called as model(x, t, y=labels or None, **kwargs).
    :param class_cond: whether the model takes labels.
    :return: model_fn(x, t, y=None, **kwargs).
    """

    def model_fn(x, t, y=None, **kwargs):
        return model(x, t, y=y if class_cond else None, **kwargs)

    return model_fn


POS_EMB_KEY = "out.2.positional_embedding"  # attention-pool head: H*W + 1 positions


def checkpoint_image_size(state_dict, classifier, image_size):
    """
    The image size an attention-pool classifier checkpoint was trained for, read off its
    positional embedding ([C, (image_size / ds)^2 + 1]) relative to the classifier built for
    `image_size`.

    :return: an int, or None when it cannot be told (other pooling heads are size-agnostic).
    """
    mine = classifier.state_dict().get(POS_EMB_KEY)
    theirs = state_dict.get(POS_EMB_KEY)
    if mine is None or theirs is None or mine.dim() != 2 or theirs.dim() != 2:
        return None
    side_mine, side_theirs = math.isqrt(mine.shape[-1] - 1), math.isqrt(theirs.shape[-1] - 1)
    if side_theirs**2 != theirs.shape[-1] - 1 or side_mine**2 != mine.shape[-1] - 1 or side_mine == 0:
        return None
    if (image_size * side_theirs) % side_mine:
        return None
    return image_size * side_theirs // side_mine


def check_classifier_matches(model_image_size, classifier_image_size):
    """
    :raises ValueError: when the classifier was built for another resolution than the model.
    """
    if int(model_image_size) != int(classifier_image_size):
        raise ValueError(
            f"the classifier checkpoint is for {classifier_image_size}x{classifier_image_size} images but the "
            f"diffusion model samples {model_image_size}x{model_image_size}; guidance needs a classifier "
            f"trained at the model's --image_size"
        )


def check_classifier_size(state_dict, classifier, image_size):
    """
    Check a classifier checkpoint against the model's image size, where its layout tells.

    :param state_dict: the classifier checkpoint.
    :param classifier: the classifier built from the flags (for `image_size`).
    :raises ValueError: when the checkpoint was trained at another resolution.
    """
    trained = checkpoint_image_size(state_dict, classifier, image_size)
    if trained is not None:
        check_classifier_matches(image_size, trained)
