"""
Training of the (noisy) classifier used for guidance: the loss step of the shared loop in
`loop.py`.

Each step draws t from the schedule sampler and trains on `diffusion.q_sample(x, t)` (or on
clean images at t = 0 with `noised=False`) with cross entropy; it logs `train_loss`,
`train_acc@1`, `train_acc@5` overall and per quartile of t, and the same with `val_` on a
validation batch every `eval_interval` steps. Checkpoints are `model%06d.pt` and `opt%06d.pt`
(no EMA) plus the side file; the run ends at `iterations`, to which the lr anneals linearly
with `anneal_lr`.
"""

import torch as th
import torch.nn.functional as F

from ..runtime import distributed as dist_util
from .loop import TrainLoopBase


def compute_top_k(logits, labels, k, reduction="mean"):
    """
    Top-k accuracy.

    :param logits: float [N, C]; labels: int64 [N].
    :param reduction: "mean" -> Python float; "none" -> float tensor [N] of 0/1.
    """
    k = min(k, logits.shape[-1])
    _, top_ks = th.topk(logits, k, dim=-1)
    hits = (top_ks == labels[:, None]).float().sum(dim=-1)
    if reduction == "mean":
        return hits.mean().item()
    if reduction == "none":
        return hits
    raise ValueError(f"unknown reduction {reduction!r}; allowed: mean, none")


def split_microbatches(microbatch, *args):
    """Yield tuples of aligned slices of `args` of at most `microbatch` rows (<= 0: one slice)."""
    bs = len(args[0])
    if microbatch <= 0 or microbatch >= bs:
        yield tuple(args)
    else:
        for i in range(0, bs, microbatch):
            yield tuple(x[i : i + microbatch] if x is not None else None for x in args)


class ClassifierTrainLoop(TrainLoopBase):
    """
    :param model: an EncoderUNetModel (`model(x, timesteps=t)` -> logits [N, classes]).
    :param data, val_data: iterators of (images [N, 3, H, W] in [-1, 1], {"y": int64 [N]});
        val_data may be None.
    :param noised: train on q_sample(x, t) at sampled t (True) or on clean x at t = 0.
    :param iterations: total number of updates (the run ends there).
    :param anneal_lr: anneal the lr linearly to 0 at `iterations`.
    :param eval_interval: log `val_*` metrics every this many updates (> 0).
    :param schedule_sampler: draws t when noised (its weights are not applied, as in the original).
    The other arguments are those of `TrainLoopBase`.
    """

    checkpoint_kind = "classifier"
    initial_lg_loss_scale = 16.0

    def __init__(self, *, model, diffusion, data, val_data=None, noised=True, iterations, lr, weight_decay=0.0,
                 anneal_lr=False, batch_size, microbatch=-1, schedule_sampler=None, resume_checkpoint="",
                 log_interval=10, eval_interval=5, save_interval=10000, use_fp16=False, model_flags=None,
                 precision="fp32", compile=False):
        if eval_interval <= 0:
            raise ValueError(f"--eval_interval must be > 0, got {eval_interval}")
        self.val_data = val_data
        self.noised = noised
        self.iterations = iterations
        self.anneal_lr = anneal_lr
        self.eval_interval = eval_interval
        super().__init__(
            model=model, diffusion=diffusion, data=data, batch_size=batch_size, microbatch=microbatch, lr=lr,
            ema_rate=(), log_interval=log_interval, save_interval=save_interval,
            resume_checkpoint=resume_checkpoint, use_fp16=use_fp16, schedule_sampler=schedule_sampler,
            weight_decay=weight_decay, model_flags=model_flags, precision=precision, compile=compile,
        )

    @property
    def total_steps(self):
        return self.iterations

    def data_state(self):
        return {
            key: loader.state_dict() if hasattr(loader, "state_dict") else None
            for key, loader in (("train", self.data), ("val", self.val_data))
        }

    def load_data_state(self, state):
        for key, loader in (("train", self.data), ("val", self.val_data)):
            if state and state.get(key) is not None and hasattr(loader, "load_state_dict"):
                loader.load_state_dict(state[key])

    def run_step(self, batch, cond):
        """One update, then the validation metrics every `eval_interval` updates."""
        index = self.global_step
        super().run_step(batch, cond)
        if index % self.eval_interval == 0:
            self.evaluate()

    def forward_backward(self, batch, cond, prefix="train"):
        """
        One batch: cross entropy and accuracies logged under `prefix`; gradients accumulated
        when grad is enabled.

        :param batch: float [N, C, H, W] in [-1, 1]; cond: {"y": int64 [N]}.
        """
        labels = cond["y"].to(dist_util.dev())
        batch = batch.to(dist_util.dev())
        if self.noised:
            t, _ = self.schedule_sampler.sample(batch.shape[0], dist_util.dev())
            batch = self.diffusion.q_sample(batch, t)
        else:
            t = th.zeros(batch.shape[0], dtype=th.long, device=dist_util.dev())
        chunks = list(split_microbatches(self.microbatch, batch, labels, t))
        for i, (sub_batch, sub_labels, sub_t) in enumerate(chunks):
            with self.sync_gradients(i == len(chunks) - 1):
                logits = self.forward_model(sub_batch, timesteps=sub_t)
                loss = F.cross_entropy(logits, sub_labels, reduction="none")
                self.log_losses(sub_t, {
                    f"{prefix}_loss": loss.detach(),
                    f"{prefix}_acc@1": compute_top_k(logits, sub_labels, k=1, reduction="none"),
                    f"{prefix}_acc@5": compute_top_k(logits, sub_labels, k=5, reduction="none"),
                })
                loss = loss.mean()
                if loss.requires_grad:
                    if i == 0:
                        self.mp_trainer.zero_grad()
                    self.mp_trainer.backward(loss * len(sub_batch) / len(batch))

    def forward_backward_log(self, data_loader, prefix="train"):
        """`forward_backward` on the next batch of `data_loader`."""
        self.forward_backward(*next(data_loader), prefix=prefix)

    def evaluate(self):
        """Log `val_*` metrics on one validation batch."""
        if self.val_data is None:
            return
        with th.no_grad():
            self.model.eval()
            self.forward_backward_log(self.val_data, prefix="val")
            self.model.train()
