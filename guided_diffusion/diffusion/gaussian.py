"""
Gaussian diffusion: the public facade of the forward process, the model-parameterised reverse
process, guidance, samplers and losses (Ho et al. 2020; Nichol & Dhariwal 2021; Dhariwal &
Nichol 2021; DDIM: Song et al. 2021).

The class keeps the reference API (names, keywords, returned dict keys, random-draw order);
the math lives in small modules:

- `schedule`: beta schedules and the float64 coefficient tables (notation table there);
- `sampling`: ancestral and DDIM steps and the one sampling loop;
- `dpm_solver`: multistep DPM-Solver++ (orders 1-3, ODE and SDE) over the same loop;
- `training_losses`: training losses and bits-per-dim (with `likelihood` for the terms).

Those modules call the public methods below (`scale_timesteps`, `predict_xstart_from_eps`,
`predict_eps_from_xstart`, `vb_terms_bpd`, `prior_bpd`, ...). The reference spelled them with a
leading underscore; those names remain as aliases (see `reference_names`), and a subclass that
overrides either spelling changes what every caller gets.

Shapes: images x are [N, C, ...] float tensors, timesteps t are [N] int64 tensors indexing the
(possibly respaced) process, 0 <= t < num_timesteps.
"""

import numpy as np
import torch as th

from . import dpm_solver
from . import training_losses as diffusion_losses
from . import sampling as diffusion_sampling
from .schedule import (
    diffusion_coefficients,
    extract_into_tensor,
    fixed_large_variance,
    validate_betas,
)
from .reference_names import ReferenceNames
from .types import LossType, ModelMeanType, ModelVarType, check_enum

class GaussianDiffusion(ReferenceNames):
    """
    Utilities for training and sampling diffusion models: DDPM (Ho et al. 2020) with learned
    variances (Nichol & Dhariwal 2021), DDIM (Song et al. 2021) and classifier guidance.

    :param betas: a 1-D sequence of betas for each diffusion timestep, starting at T and
                  going to 1 (float values in (0, 1]).
    :param model_mean_type: a ModelMeanType: what the model outputs.
    :param model_var_type: a ModelVarType: how the variance is obtained.
    :param loss_type: a LossType: the training objective.
    :param rescale_timesteps: if True, feed the model floating-point timesteps scaled so that
                              they always range over [0, 1000).
    :param mean_loss: "l2" (the reference's MSE) or "l1": the norm of the mean term of the MSE
                      loss types (see `training_losses`).
    """

    def __init__(self, *, betas, model_mean_type, model_var_type, loss_type, rescale_timesteps=False,
                 mean_loss="l2"):
        check_enum(model_mean_type, ModelMeanType, "model_mean_type")
        check_enum(model_var_type, ModelVarType, "model_var_type")
        check_enum(loss_type, LossType, "loss_type")
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        if mean_loss not in diffusion_losses.MEAN_LOSSES:
            raise ValueError(f"mean_loss must be one of {diffusion_losses.MEAN_LOSSES}, got {mean_loss!r}")
        self.mean_loss = mean_loss

        # float64 throughout for accuracy; values are cast to float32 only when extracted.
        self.betas = validate_betas(betas)
        self.num_timesteps = int(self.betas.shape[0])
        for name, table in diffusion_coefficients(self.betas).items():
            setattr(self, name, table)

        # Derived tables used by p_mean_variance and predict_xstart_from_xprev.
        self._log_betas = np.log(self.betas)
        self._fixed_large_variance, self._fixed_large_log_variance = fixed_large_variance(
            self.betas, self.posterior_variance
        )
        self._recip_posterior_mean_coef1 = 1.0 / self.posterior_mean_coef1
        self._posterior_coef2_over_coef1 = self.posterior_mean_coef2 / self.posterior_mean_coef1

    # ------------------------------------------------------------------ forward process q

    def q_mean_variance(self, x_start, t):
        """
        The distribution q(x_t | x_0).

        :param x_start: the [N x C x ...] tensor of noiseless inputs.
        :param t: the number of diffusion steps (minus 1), shape [N]. Here, 0 means one step.
        :return: a tuple (mean, variance, log_variance), all of x_start's shape.
        """
        mean = extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
        variance = extract_into_tensor(1.0 - self.alphas_cumprod, t, x_start.shape)
        log_variance = extract_into_tensor(self.log_one_minus_alphas_cumprod, t, x_start.shape)
        return mean, variance, log_variance

    def q_sample(self, x_start, t, noise=None):
        """
        Diffuse the data for a given number of diffusion steps: sample from q(x_t | x_0).

        :param x_start: the initial data batch, [N x C x ...].
        :param t: the number of diffusion steps (minus 1), shape [N]. Here, 0 means one step.
        :param noise: if specified, the split-out normal noise (like x_start); else drawn with
                      `randn_like(x_start)`.
        :return: a noisy version of x_start.
        """
        if noise is None:
            noise = th.randn_like(x_start)
        if noise.shape != x_start.shape:
            raise ValueError(
                f"noise shape {tuple(noise.shape)} differs from x_start shape {tuple(x_start.shape)}"
            )
        return (
            extract_into_tensor(self.sqrt_alphas_cumprod, t, x_start.shape) * x_start
            + extract_into_tensor(self.sqrt_one_minus_alphas_cumprod, t, x_start.shape) * noise
        )

    def q_posterior_mean_variance(self, x_start, x_t, t):
        """
        Mean and variance of the diffusion posterior q(x_{t-1} | x_t, x_0) (Eq. 6-7 of Ho et al.).

        :param x_start: x_0, [N x C x ...].
        :param x_t: x_t, like x_start.
        :param t: the timesteps, shape [N].
        :return: (posterior_mean, posterior_variance, posterior_log_variance_clipped), all of
                 x_t's shape.
        """
        if x_start.shape != x_t.shape:
            raise ValueError(
                f"x_start shape {tuple(x_start.shape)} differs from x_t shape {tuple(x_t.shape)}"
            )
        posterior_mean = (
            extract_into_tensor(self.posterior_mean_coef1, t, x_t.shape) * x_start
            + extract_into_tensor(self.posterior_mean_coef2, t, x_t.shape) * x_t
        )
        posterior_variance = extract_into_tensor(self.posterior_variance, t, x_t.shape)
        posterior_log_variance_clipped = extract_into_tensor(
            self.posterior_log_variance_clipped, t, x_t.shape
        )
        return posterior_mean, posterior_variance, posterior_log_variance_clipped

    # ------------------------------------------------------------------ reverse process p

    def p_mean_variance(self, model, x, t, clip_denoised=True, denoised_fn=None, model_kwargs=None):
        """
        Apply the model to get p(x_{t-1} | x_t), as well as a prediction of the initial x, x_0.

        :param model: the model, called as `model(x, self.scale_timesteps(t), **model_kwargs)`.
        :param x: the [N x C x ...] tensor at time t.
        :param t: a 1-D tensor of timesteps, shape [N].
        :param clip_denoised: if True, clip the denoised signal into [-1, 1].
        :param denoised_fn: if not None, a function applied to the x_start prediction before
                            it is used to sample (and before clipping).
        :param model_kwargs: extra keyword arguments for the model (e.g. class labels "y").
        :return: a dict with "mean", "variance", "log_variance" (the model's p parameters) and
                 "pred_xstart" (the x_0 prediction), all of x's shape.
        """
        if model_kwargs is None:
            model_kwargs = {}
        B, C = x.shape[:2]
        if tuple(t.shape) != (B,):
            raise ValueError(f"t must have shape ({B},) to match x, got {tuple(t.shape)}")
        model_output = model(x, self.scale_timesteps(t), **model_kwargs)

        model_var_values = None
        if self.model_var_type.is_learned():
            diffusion_losses.check_learned_output(model_output, x)
            model_output, model_var_values = th.split(model_output, C, dim=1)
        model_variance, model_log_variance = self._p_variance(model_var_values, x, t)
        pred_xstart, model_mean = self._p_mean(model_output, x, t, clip_denoised, denoised_fn)
        if not model_mean.shape == model_log_variance.shape == pred_xstart.shape == x.shape:
            raise ValueError(
                f"model output shape {tuple(model_output.shape)} does not match x {tuple(x.shape)}"
            )
        return {
            "mean": model_mean,
            "variance": model_variance,
            "log_variance": model_log_variance,
            "pred_xstart": pred_xstart,
        }

    def _p_variance(self, model_var_values, x, t):
        """
        (variance, log_variance) of p(x_{t-1} | x_t), like x: fixed by model_var_type, or from
        the model's variance channels `model_var_values` (like x; None for fixed variances).
        """
        if self.model_var_type == ModelVarType.LEARNED:
            return th.exp(model_var_values), model_var_values
        if self.model_var_type == ModelVarType.LEARNED_RANGE:
            min_log = extract_into_tensor(self.posterior_log_variance_clipped, t, x.shape)
            max_log = extract_into_tensor(self._log_betas, t, x.shape)
            # model_var_values in [-1, 1] spans [min_var, max_var] in log space.
            frac = (model_var_values + 1) / 2
            model_log_variance = frac * max_log + (1 - frac) * min_log
            return th.exp(model_log_variance), model_log_variance
        if self.model_var_type == ModelVarType.FIXED_LARGE:
            variance, log_variance = self._fixed_large_variance, self._fixed_large_log_variance
        else:
            variance, log_variance = self.posterior_variance, self.posterior_log_variance_clipped
        return extract_into_tensor(variance, t, x.shape), extract_into_tensor(log_variance, t, x.shape)

    def _p_mean(self, model_output, x, t, clip_denoised, denoised_fn):
        """
        (pred_xstart, mean) of p(x_{t-1} | x_t) from the model's mean channels (like x): x_0 is
        passed through `denoised_fn` and then clipped to [-1, 1] when `clip_denoised`.
        """

        def process_xstart(x0):
            if denoised_fn is not None:
                x0 = denoised_fn(x0)
            if clip_denoised:
                return x0.clamp(-1, 1)
            return x0

        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            pred_xstart = process_xstart(self.predict_xstart_from_xprev(x_t=x, t=t, xprev=model_output))
            return pred_xstart, model_output
        if self.model_mean_type == ModelMeanType.START_X:
            pred_xstart = process_xstart(model_output)
        else:
            pred_xstart = process_xstart(self.predict_xstart_from_eps(x_t=x, t=t, eps=model_output))
        model_mean, _, _ = self.q_posterior_mean_variance(x_start=pred_xstart, x_t=x, t=t)
        return pred_xstart, model_mean

    def predict_xstart_from_eps(self, x_t, t, eps):
        """x_0 = x_t / sqrt(abar_t) - sqrt(1 / abar_t - 1) * eps (inverts q_sample)."""
        _check_like_x_t(eps, x_t, "eps")
        return _difference(self.sqrt_recip_alphas_cumprod, x_t, self.sqrt_recipm1_alphas_cumprod, eps, t)

    def predict_xstart_from_xprev(self, x_t, t, xprev):
        """x_0 = (x_{t-1} - coef2 * x_t) / coef1 (inverts the posterior mean)."""
        _check_like_x_t(xprev, x_t, "xprev")
        return _difference(self._recip_posterior_mean_coef1, xprev, self._posterior_coef2_over_coef1, x_t, t)

    def predict_eps_from_xstart(self, x_t, t, pred_xstart):
        """eps = (x_t / sqrt(abar_t) - x_0) / sqrt(1 / abar_t - 1) (inverts q_sample)."""
        return (
            extract_into_tensor(self.sqrt_recip_alphas_cumprod, t, x_t.shape) * x_t - pred_xstart
        ) / extract_into_tensor(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape)

    def scale_timesteps(self, t):
        """The timesteps the model sees: t * 1000 / T as float with rescale_timesteps, else t."""
        if self.rescale_timesteps:
            return t.float() * (1000.0 / self.num_timesteps)
        return t

    # ------------------------------------------------------------------ guidance

    def condition_mean(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        """
        Shift the mean of p(x_{t-1} | x_t) by variance * grad log p(y | x_t) (Sohl-Dickstein
        et al. 2015; Dhariwal & Nichol 2021, Algorithm 1).

        :param cond_fn: `cond_fn(x, scaled_t, **model_kwargs)` -> the (scaled) gradient, like x,
                        or None for no shift at this step (e.g. outside a guidance interval).
        :param p_mean_var: the dict returned by p_mean_variance.
        :return: the new mean (float32, like x); the mean unchanged when cond_fn gives None.
        """
        if model_kwargs is None:
            model_kwargs = {}
        gradient = cond_fn(x, self.scale_timesteps(t), **model_kwargs)
        if gradient is None:
            return p_mean_var["mean"]
        return p_mean_var["mean"].float() + p_mean_var["variance"] * gradient.float()

    def condition_score(self, cond_fn, p_mean_var, x, t, model_kwargs=None):
        """
        Shift the implied score by the conditioning gradient (Song et al. 2020; Dhariwal &
        Nichol 2021, Algorithm 2): eps' = eps - sqrt(1 - abar_t) * grad, then recompute
        pred_xstart (not clipped again) and the posterior mean from eps'.

        :param cond_fn: `cond_fn(x, scaled_t, **model_kwargs)` -> the (scaled) gradient, like x,
                        or None for no shift at this step (e.g. outside a guidance interval).
        :param p_mean_var: the dict returned by p_mean_variance.
        :return: a copy of p_mean_var with new "pred_xstart" and "mean" (p_mean_var itself when
                 cond_fn gives None: no round trip through eps).
        """
        if model_kwargs is None:
            model_kwargs = {}
        gradient = cond_fn(x, self.scale_timesteps(t), **model_kwargs)
        if gradient is None:
            return p_mean_var
        alpha_bar = extract_into_tensor(self.alphas_cumprod, t, x.shape)
        eps = self.predict_eps_from_xstart(x, t, p_mean_var["pred_xstart"])
        eps = eps - (1 - alpha_bar).sqrt() * gradient
        out = p_mean_var.copy()
        out["pred_xstart"] = self.predict_xstart_from_eps(x, t, eps)
        out["mean"], _, _ = self.q_posterior_mean_variance(x_start=out["pred_xstart"], x_t=x, t=t)
        return out

    # ------------------------------------------------------------------ samplers
    # `noise_fn` (optional): callable noise_fn(x) -> tensor like x used instead of
    # torch.randn_like(x) for every step's noise (e.g. per-sample seeded noise). None keeps the
    # reference random stream exactly. It does not affect the initial x_T (pass `noise`).

    def p_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                 model_kwargs=None, noise_fn=None):
        """
        Sample x_{t-1} from the model at the given timestep.

        :param model: the model to sample from.
        :param x: the current tensor at x_t, [N x C x ...].
        :param t: the value of t, starting at 0 for the first diffusion step, shape [N].
        :param clip_denoised: if True, clip the x_start prediction to [-1, 1].
        :param denoised_fn: if not None, a function applied to the x_start prediction.
        :param cond_fn: if not None, a gradient function acting like the model (condition_mean).
        :param model_kwargs: extra keyword arguments for the model and cond_fn.
        :param noise_fn: see the note above; None draws torch.randn_like(x).
        :return: a dict with "sample" (a random sample from the model) and "pred_xstart".
        """
        return diffusion_sampling.p_sample(
            self, model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
            cond_fn=cond_fn, model_kwargs=model_kwargs, noise_fn=noise_fn,
        )

    def p_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                      cond_fn=None, model_kwargs=None, device=None, progress=False, noise_fn=None):
        """
        Generate samples from the model with ancestral sampling.

        :param shape: the shape of the samples, (N, C, H, W).
        :param noise: if specified, the noise x_T to start from, of shape `shape`.
        :param device: the device to create the samples on; defaults to the model's.
        :param progress: if True, show a tqdm progress bar.
        (Other arguments as in p_sample.)
        :return: a non-differentiable batch of samples.
        """
        return diffusion_sampling.final_sample(
            self.p_sample_loop_progressive(
                model, shape, noise=noise, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                cond_fn=cond_fn, model_kwargs=model_kwargs, device=device, progress=progress,
                noise_fn=noise_fn,
            )
        )

    def p_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True,
                                  denoised_fn=None, cond_fn=None, model_kwargs=None, device=None,
                                  progress=False, noise_fn=None):
        """
        Generate samples and yield the intermediate samples from each timestep of diffusion.

        Arguments are the same as p_sample_loop().
        :return: a generator over dicts, each the return value of p_sample().
        """

        def step(x, t):
            return self.p_sample(
                model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                cond_fn=cond_fn, model_kwargs=model_kwargs, noise_fn=noise_fn,
            )

        return diffusion_sampling.sample_loop_progressive(
            self.num_timesteps, step, model, shape, noise=noise, device=device, progress=progress
        )

    def ddim_sample(self, model, x, t, clip_denoised=True, denoised_fn=None, cond_fn=None,
                    model_kwargs=None, eta=0.0, noise_fn=None):
        """
        Sample x_{t-1} from the model using DDIM (cond_fn through condition_score).

        Same usage as p_sample(), plus `eta` (0 is deterministic, 1 matches DDPM's variance).
        """
        return diffusion_sampling.ddim_sample(
            self, model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
            cond_fn=cond_fn, model_kwargs=model_kwargs, eta=eta, noise_fn=noise_fn,
        )

    def ddim_reverse_sample(self, model, x, t, clip_denoised=True, denoised_fn=None,
                            model_kwargs=None, eta=0.0):
        """
        Sample x_{t+1} from the model using the DDIM reverse ODE (eta must be 0).

        :return: a dict with "sample" (x_{t+1}) and "pred_xstart".
        """
        return diffusion_sampling.ddim_reverse_sample(
            self, model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
            model_kwargs=model_kwargs, eta=eta,
        )

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised=True, denoised_fn=None,
                         cond_fn=None, model_kwargs=None, device=None, progress=False, eta=0.0,
                         noise_fn=None):
        """
        Generate samples from the model using DDIM.

        Same usage as p_sample_loop(), plus `eta`.
        """
        return diffusion_sampling.final_sample(
            self.ddim_sample_loop_progressive(
                model, shape, noise=noise, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                cond_fn=cond_fn, model_kwargs=model_kwargs, device=device, progress=progress,
                eta=eta, noise_fn=noise_fn,
            )
        )

    def ddim_sample_loop_progressive(self, model, shape, noise=None, clip_denoised=True,
                                     denoised_fn=None, cond_fn=None, model_kwargs=None,
                                     device=None, progress=False, eta=0.0, noise_fn=None):
        """
        Use DDIM to sample from the model and yield intermediate samples from each timestep.

        Same usage as p_sample_loop_progressive(), plus `eta`.
        """

        def step(x, t):
            return self.ddim_sample(
                model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                cond_fn=cond_fn, model_kwargs=model_kwargs, eta=eta, noise_fn=noise_fn,
            )

        return diffusion_sampling.sample_loop_progressive(
            self.num_timesteps, step, model, shape, noise=noise, device=device, progress=progress
        )

    def dpm_solver_sample_loop(self, model, shape, noise=None, clip_denoised=True,
                               denoised_fn=None, cond_fn=None, model_kwargs=None, device=None,
                               progress=False, order=2, **solver_options):
        """
        Generate samples with multistep DPM-Solver++: one model call per timestep of this
        process, returning the x_0 prediction at t = 0 (cond_fn through condition_score).

        Same usage as ddim_sample_loop(), plus `order` (1, 2, 3) and the `solver_options` sde,
        eta, thresholding_percentile, lower_order_final, noise_fn of
        `dpm_solver.sample_loop_progressive`.
        """
        return diffusion_sampling.final_sample(self.dpm_solver_sample_loop_progressive(
            model, shape, noise=noise, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
            cond_fn=cond_fn, model_kwargs=model_kwargs, device=device, progress=progress,
            order=order, **solver_options,
        ))

    def dpm_solver_sample_loop_progressive(self, model, shape, order=2, **kwargs):
        """Yield each DPM-Solver++ step's {"sample", "pred_xstart"}; as dpm_solver_sample_loop()."""
        return dpm_solver.sample_loop_progressive(self, model, shape, order=order, **kwargs)

    # ------------------------------------------------------------------ losses and bpd

    def vb_terms_bpd(self, model, x_start, x_t, t, clip_denoised=True, model_kwargs=None):
        """
        A term of the variational lower bound in bits per dimension.

        :return: a dict with "output" (an [N] tensor of NLLs or KLs) and "pred_xstart".
        """
        return diffusion_losses.vb_terms_bpd(
            self, model, x_start, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs
        )

    def training_losses(self, model, x_start, t, model_kwargs=None, noise=None):
        """
        Compute training losses for a single timestep per sample.

        :param model: the model to evaluate loss on.
        :param x_start: the [N x C x ...] tensor of inputs.
        :param t: a batch of timestep indices, shape [N].
        :param model_kwargs: extra keyword arguments for the model (e.g. "y").
        :param noise: if specified, the Gaussian noise to use.
        :return: a dict with "loss" ([N]), plus "mse" and "vb" depending on the configuration.
        """
        return diffusion_losses.training_losses(
            self, model, x_start, t, model_kwargs=model_kwargs, noise=noise
        )

    def prior_bpd(self, x_start):
        """
        The prior KL term of the variational lower bound, in bits per dimension.

        :param x_start: the [N x C x ...] tensor of inputs.
        :return: an [N] tensor of KL values (in bits), one per batch element.
        """
        return diffusion_losses.prior_bpd(self, x_start)

    def calc_bpd_loop(self, model, x_start, clip_denoised=True, model_kwargs=None):
        """
        Compute the entire variational lower bound, in bits per dimension, and other metrics.

        :param model: the model to evaluate loss on.
        :param x_start: the [N x C x ...] tensor of inputs.
        :param clip_denoised: if True, clip denoised samples.
        :param model_kwargs: extra keyword arguments for the model.
        :return: a dict with "total_bpd" [N], "prior_bpd" [N], "vb" [N x T], "xstart_mse"
                 [N x T] and "mse" [N x T] (column j is timestep T - 1 - j).
        """
        return diffusion_losses.calc_bpd_loop(
            self, model, x_start, clip_denoised=clip_denoised, model_kwargs=model_kwargs
        )


def _check_like_x_t(tensor, x_t, name):
    if tensor.shape != x_t.shape:
        raise ValueError(f"{name} shape {tuple(tensor.shape)} differs from x_t {tuple(x_t.shape)}")


def _difference(coef_a, a, coef_b, b, t):
    """coef_a[t] * a - coef_b[t] * b, per-timestep coefficients broadcast over a and b [N, ...]."""
    return extract_into_tensor(coef_a, t, a.shape) * a - extract_into_tensor(coef_b, t, a.shape) * b
