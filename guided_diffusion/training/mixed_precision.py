"""
Helpers to train with 16-bit precision: flat float32 master parameters, and `MixedPrecisionTrainer` with dynamic loss scaling (skip the step and
halve the scale on a non-finite gradient, grow it slowly otherwise).

Two float16 paths use the same loss scaling:
- `use_fp16` (the original's --use_fp16): the torso's weights are converted to float16 and the
  optimizer steps flat float32 master copies, copied back after each step;
- `loss_scaling` alone (--precision fp16): autocast computes in float16 while the weights stay
  float32, so the model's parameters are the master parameters and nothing is copied.
bf16 (--precision bf16) needs no scaling: bfloat16 has float32's exponent range.
"""

import numpy as np
import torch as th
import torch.nn as nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..runtime import logger

INITIAL_LOG_LOSS_SCALE = 20.0

def get_param_groups_and_shapes(named_model_params):
    """
    Group parameters into scalars/vectors (flattened to shape (-1,)) and matrices
    (flattened to shape (1, -1)), as the original does.

    :param named_model_params: an iterable of (name, parameter).
    :return: [(list of (name, param), view shape), ...] for the two groups.
    """
    named_model_params = list(named_model_params)
    scalar_vector_named_params = ([(n, p) for (n, p) in named_model_params if p.ndim <= 1], (-1))
    matrix_named_params = ([(n, p) for (n, p) in named_model_params if p.ndim > 1], (1, -1))
    return [scalar_vector_named_params, matrix_named_params]


def make_master_params(param_groups_and_shapes):
    """
    Copy model parameters into flat float32 master parameters, one per group.

    :return: a list of nn.Parameter.
    """
    master_params = []
    for param_group, shape in param_groups_and_shapes:
        flat = _flatten_dense_tensors([param.detach().float() for (_, param) in param_group])
        master_param = nn.Parameter(flat.view(shape))
        master_param.requires_grad = True
        master_params.append(master_param)
    return master_params


def param_grad_or_zeros(param):
    """The parameter's gradient, or zeros of its shape when it has none."""
    if param.grad is not None:
        return param.grad.data.detach()
    return th.zeros_like(param)


def model_grads_to_master_grads(param_groups_and_shapes, master_params):
    """Copy the (fp16) model gradients into the float32 master gradients."""
    for master_param, (param_group, shape) in zip(master_params, param_groups_and_shapes):
        master_param.grad = _flatten_dense_tensors(
            [param_grad_or_zeros(param).float() for (_, param) in param_group]
        ).view(shape)


def unflatten_master_params(param_group, master_param):
    """Split a flat master parameter into views shaped like the group's parameters."""
    return _unflatten_dense_tensors(master_param, [param for (_, param) in param_group])


def master_params_to_model_params(param_groups_and_shapes, master_params):
    """Copy the master parameter data back into the model parameters (casting as needed)."""
    for master_param, (param_group, _) in zip(master_params, param_groups_and_shapes):
        unflat = unflatten_master_params(param_group, master_param.view(-1))
        for (_, param), unflat_master_param in zip(param_group, unflat):
            param.detach().copy_(unflat_master_param)


def master_params_to_state_dict(model, param_groups_and_shapes, master_params, use_fp16):
    """
    A float32 state dict of the model whose parameters are the master parameters.

    :param use_fp16: whether master_params are flat fp16-training masters.
    """
    state_dict = model.state_dict()
    if use_fp16:
        for master_param, (param_group, _) in zip(master_params, param_groups_and_shapes):
            unflat = unflatten_master_params(param_group, master_param.view(-1))
            for (name, _), unflat_master_param in zip(param_group, unflat):
                assert name in state_dict
                state_dict[name] = unflat_master_param
    else:
        for i, (name, _value) in enumerate(model.named_parameters()):
            assert name in state_dict
            state_dict[name] = master_params[i]
    return state_dict


def state_dict_to_master_params(model, state_dict, use_fp16):
    """Inverse of master_params_to_state_dict: master parameters from a state dict."""
    if use_fp16:
        named_model_params = [(name, state_dict[name]) for name, _ in model.named_parameters()]
        param_groups_and_shapes = get_param_groups_and_shapes(named_model_params)
        return make_master_params(param_groups_and_shapes)
    return [state_dict[name] for name, _ in model.named_parameters()]


def zero_master_grads(master_params):
    """Drop the gradients of the master parameters."""
    for param in master_params:
        param.grad = None


def zero_grad(model_params):
    """Zero the gradients of the model parameters in place (keeping the tensors)."""
    for param in model_params:
        if param.grad is not None:
            param.grad.detach_()
            param.grad.zero_()


def check_overflow(value):
    """True when value is +inf, -inf or NaN."""
    return (value == float("inf")) or (value == -float("inf")) or (value != value)


def _logger():
    """The logger this module writes to (a name the `fp16_util` face keeps)."""
    return logger


def _logkv_mean(key, value):
    logger.logkv_mean(key, value)


def _log(msg):
    logger.log(msg)


class MixedPrecisionTrainer:
    """
    Owns the model's gradients and optimizer-facing master parameters.

    With use_fp16 the model's torso is converted to fp16, the optimizer must be built over
    `self.master_params` (flat float32 copies), the loss is multiplied by 2**lg_loss_scale
    before backward, and `optimize` unscales, checks for overflow and copies back.

    :param model: the network (with convert_to_fp16 when use_fp16).
    :param use_fp16: enable fp16 training with loss scaling.
    :param fp16_scale_growth: added to lg_loss_scale after every successful fp16 step.
    :param initial_lg_loss_scale: starting log2 loss scale.
    :param loss_scaling: dynamic loss scaling without converting the model (float16 autocast);
        implied by use_fp16.
    """

    def __init__(
        self,
        *,
        model,
        use_fp16=False,
        fp16_scale_growth=1e-3,
        initial_lg_loss_scale=INITIAL_LOG_LOSS_SCALE,
        loss_scaling=False,
    ):
        self.model = model
        self.use_fp16 = use_fp16
        self.scales_loss = use_fp16 or loss_scaling
        self.fp16_scale_growth = fp16_scale_growth

        self.model_params = list(self.model.parameters())
        self.master_params = self.model_params
        self.param_groups_and_shapes = None
        self.lg_loss_scale = initial_lg_loss_scale

        if self.use_fp16:
            self.param_groups_and_shapes = get_param_groups_and_shapes(self.model.named_parameters())
            self.master_params = make_master_params(self.param_groups_and_shapes)
            self.model.convert_to_fp16()

    def zero_grad(self):
        zero_grad(self.model_params)

    def backward(self, loss):
        """Backpropagate `loss` (scaled by 2**lg_loss_scale with fp16)."""
        if self.scales_loss:
            loss_scale = 2**self.lg_loss_scale
            (loss * loss_scale).backward()
        else:
            loss.backward()

    def optimize(self, opt: th.optim.Optimizer):
        """
        Take an optimizer step.

        :return: True if the step was taken, False if it was skipped (fp16 overflow).
        """
        if self.scales_loss:
            return self._optimize_fp16(opt)
        return self._optimize_normal(opt)

    def _optimize_fp16(self, opt):
        logger.logkv_mean("lg_loss_scale", self.lg_loss_scale)
        if self.use_fp16:
            model_grads_to_master_grads(self.param_groups_and_shapes, self.master_params)
        grad_norm, param_norm = self._compute_norms(grad_scale=2**self.lg_loss_scale)
        if check_overflow(grad_norm):
            self.lg_loss_scale -= 1
            logger.log(f"Found NaN, decreased lg_loss_scale to {self.lg_loss_scale}")
            zero_master_grads(self.master_params)
            return False

        logger.logkv_mean("grad_norm", grad_norm)
        logger.logkv_mean("param_norm", param_norm)

        for p in self.master_params:
            if p.grad is not None:  # unused parameters of an autocast model get none
                p.grad.mul_(1.0 / (2**self.lg_loss_scale))
        opt.step()
        zero_master_grads(self.master_params)
        if self.use_fp16:
            master_params_to_model_params(self.param_groups_and_shapes, self.master_params)
        self.lg_loss_scale += self.fp16_scale_growth
        return True

    def _optimize_normal(self, opt):
        grad_norm, param_norm = self._compute_norms()
        logger.logkv_mean("grad_norm", grad_norm)
        logger.logkv_mean("param_norm", param_norm)
        opt.step()
        return True

    def _compute_norms(self, grad_scale=1.0):
        grad_norm = 0.0
        param_norm = 0.0
        with th.no_grad():
            for p in self.master_params:
                param_norm += th.norm(p, p=2, dtype=th.float32).item() ** 2
                if p.grad is not None:
                    grad_norm += th.norm(p.grad, p=2, dtype=th.float32).item() ** 2
        return np.sqrt(grad_norm) / grad_scale, np.sqrt(param_norm)

    def master_params_to_state_dict(self, master_params):
        return master_params_to_state_dict(
            self.model, self.param_groups_and_shapes, master_params, self.use_fp16
        )

    def state_dict_to_master_params(self, state_dict):
        return state_dict_to_master_params(self.model, state_dict, self.use_fp16)
