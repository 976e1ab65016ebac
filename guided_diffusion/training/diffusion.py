"""
Diffusion (and super-resolution) training: the loss step of the shared loop in `loop.py`.

Per microbatch: draw t and importance weights from the schedule sampler, compute
`diffusion.training_losses(model, x_start, t, model_kwargs=cond)`, feed the per-sample losses
back to a loss-aware sampler, and backpropagate the weighted mean scaled by the microbatch's
share of the batch (so the gradient is that of the whole batch). Checkpoints: `model%06d.pt`,
one `ema_<rate>_%06d.pt` per EMA rate, `opt%06d.pt`, and `model000000.pt` at the start of a
fresh run, as the original writes them. The run ends at `lr_anneal_steps` (0: never), to which
the lr anneals linearly. Super-resolution needs nothing else: its `low_res` input is in `cond`.
"""

from ..diffusion.timestep_sampler import LossAwareSampler
from ..runtime import distributed as dist_util
from .loop import TrainLoopBase


class DiffusionTrainLoop(TrainLoopBase):
    """
    The arguments of `TrainLoopBase`, plus:

    :param lr_anneal_steps: total updates; the lr goes linearly to 0 there and the run ends
        (0: constant lr, no end).
    """

    save_at_start = True

    def __init__(self, *, model, diffusion, data, batch_size, microbatch, lr, ema_rate, log_interval,
                 save_interval, resume_checkpoint, use_fp16=False, fp16_scale_growth=1e-3,
                 schedule_sampler=None, weight_decay=0.0, lr_anneal_steps=0, model_flags=None, precision="fp32",
                 compile=False):
        self.lr_anneal_steps = lr_anneal_steps
        super().__init__(
            model=model, diffusion=diffusion, data=data, batch_size=batch_size, microbatch=microbatch, lr=lr,
            ema_rate=ema_rate, log_interval=log_interval, save_interval=save_interval,
            resume_checkpoint=resume_checkpoint, use_fp16=use_fp16, fp16_scale_growth=fp16_scale_growth,
            schedule_sampler=schedule_sampler, weight_decay=weight_decay, model_flags=model_flags,
            precision=precision, compile=compile,
        )

    @property
    def total_steps(self):
        return self.lr_anneal_steps

    @property
    def anneal_lr(self):
        return bool(self.lr_anneal_steps)

    def forward_backward(self, batch, cond):
        """
        :param batch: float [N, C, H, W] in [-1, 1].
        :param cond: dict of [N, ...] tensors passed to the model (e.g. `y`, `low_res`).
        """
        self.mp_trainer.zero_grad()
        for i in range(0, batch.shape[0], self.microbatch):
            micro = batch[i : i + self.microbatch].to(dist_util.dev())
            micro_cond = {k: v[i : i + self.microbatch].to(dist_util.dev()) for k, v in cond.items()}
            last = (i + self.microbatch) >= batch.shape[0]
            t, weights = self.schedule_sampler.sample(micro.shape[0], dist_util.dev())
            with self.sync_gradients(last):
                losses = self.diffusion.training_losses(self.forward_model, micro, t, model_kwargs=micro_cond)
            if isinstance(self.schedule_sampler, LossAwareSampler):
                self.schedule_sampler.update_with_local_losses(t, losses["loss"].detach())
            loss = (losses["loss"] * weights).mean() * (micro.shape[0] / batch.shape[0])
            self.log_losses(t, {k: v * weights for k, v in losses.items()})
            self.mp_trainer.backward(loss)
