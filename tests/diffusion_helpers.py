"""Shared fixtures of the diffusion tests: a GaussianDiffusion factory and a deterministic model."""

import torch as th

from guided_diffusion.diffusion.gaussian import GaussianDiffusion
from guided_diffusion.diffusion.schedule import get_named_beta_schedule
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType


def make(T=50, schedule="linear", mean=ModelMeanType.EPSILON, var=ModelVarType.FIXED_LARGE,
         loss=LossType.MSE, rescale=False):
    return GaussianDiffusion(
        betas=get_named_beta_schedule(schedule, T),
        model_mean_type=mean,
        model_var_type=var,
        loss_type=loss,
        rescale_timesteps=rescale,
    )


class LinearEps(th.nn.Module):
    """A deterministic eps-model: eps = w * x + t / 1000 (has a parameter, so a device)."""

    def __init__(self, w=0.3, learned_var=False):
        super().__init__()
        self.w = th.nn.Parameter(th.tensor(w))
        self.learned_var = learned_var

    def forward(self, x, t, **kwargs):
        eps = self.w * x + t.float().view(-1, *([1] * (x.dim() - 1))) / 1000
        if self.learned_var:
            return th.cat([eps, th.tanh(x)], 1)
        return eps
