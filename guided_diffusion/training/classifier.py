"""
Training loop of the (noisy) classifier used for guidance (the original's classifier_train.py
logic, moved into the library so the script stays thin).

Each step draws t from the schedule sampler and trains on `diffusion.q_sample(x, t)` (or on
clean images at t = 0 with `noised=False`), with cross entropy; it logs `train_loss`,
`train_acc@1`, `train_acc@5` overall and per quartile of t, and the same with `val_` on a
validation batch every `eval_interval` steps. Checkpoints are `model%06d.pt` / `opt%06d.pt`
(number = updates done) plus the side file `train_state%06d.json` of train_state.py, written
atomically; `resume_checkpoint="auto"` and SIGTERM/SIGINT behave as in TrainLoop.
"""

import contextlib
import os

import torch as th
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel.distributed import DistributedDataParallel as DDP
from torch.optim import AdamW

from ..runtime import distributed as dist_util
from ..runtime import logger
from . import state as train_state
from .mixed_precision import MixedPrecisionTrainer
from .stopping import GracefulStop, save_unless_saved, stop_if_requested
from ..train_util import (
    get_blob_logdir,
    load_model_state,
    log_loss_dict,
    parse_resume_step_from_filename,
    resolve_resume_checkpoint,
    save_state_file,
)


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
    """Yield tuples of aligned slices of `args` of at most `microbatch` rows (-1: one slice)."""
    bs = len(args[0])
    if microbatch == -1 or microbatch <= 0 or microbatch >= bs:
        yield tuple(args)
    else:
        for i in range(0, bs, microbatch):
            yield tuple(x[i : i + microbatch] if x is not None else None for x in args)


def set_annealed_lr(opt, base_lr, frac_done):
    """lr = base_lr * (1 - frac_done) on every parameter group."""
    lr = base_lr * (1 - frac_done)
    for param_group in opt.param_groups:
        param_group["lr"] = lr


class ClassifierTrainLoop:
    """
    :param model: an EncoderUNetModel (`model(x, timesteps=t)` -> logits [N, classes]).
    :param data, val_data: iterators of (images [N, 3, H, W], {"y": int64 [N]}); val_data may be None.
    :param noised: train on q_sample(x, t) at sampled t (True) or on clean x at t = 0.
    :param iterations: total number of updates (the run stops there).
    :param schedule_sampler: draws t when noised (its weights are not applied, as in the original).
    :param resume_checkpoint: "", a `model%06d.pt` path, or "auto".
    """

    def __init__(
        self,
        *,
        model,
        diffusion,
        data,
        val_data=None,
        noised=True,
        iterations,
        lr,
        weight_decay=0.0,
        anneal_lr=False,
        batch_size,
        microbatch=-1,
        schedule_sampler=None,
        resume_checkpoint="",
        log_interval=10,
        eval_interval=5,
        save_interval=10000,
        use_fp16=False,
        model_flags=None,
    ):
        from ..diffusion.timestep_sampler import UniformSampler

        for name, value in (("log_interval", log_interval), ("eval_interval", eval_interval), ("save_interval", save_interval)):
            if value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}")
        self.model = model
        self.diffusion = diffusion
        self.data = data
        self.val_data = val_data
        self.noised = noised
        self.iterations = iterations
        self.lr = lr
        self.anneal_lr = anneal_lr
        self.batch_size = batch_size
        self.microbatch = microbatch
        self.schedule_sampler = schedule_sampler or UniformSampler(diffusion)
        self.log_interval = log_interval
        self.eval_interval = eval_interval
        self.save_interval = save_interval
        self.use_fp16 = use_fp16
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.step = 0
        self.resume_step = 0
        self.stopped_by = None
        self._last_saved = None

        self.resume_path = resolve_resume_checkpoint(resume_checkpoint, ())
        if self.resume_path:
            self.resume_step = parse_resume_step_from_filename(self.resume_path)
            logger.log(f"loading model from checkpoint: {self.resume_path}... at {self.resume_step} step")
            state_dict = dist_util.load_state_dict(self.resume_path, map_location=dist_util.dev())
            load_model_state(model, state_dict, self.resume_path, model_flags, kind="classifier")
        # Needed for creating correct EMAs and fp16 parameters.
        dist_util.sync_params(model.parameters())

        self.mp_trainer = MixedPrecisionTrainer(model=model, use_fp16=use_fp16, initial_lg_loss_scale=16.0)
        if self.world_size > 1:
            on_cuda = dist_util.dev().type == "cuda"
            self.ddp_model = DDP(
                model,
                device_ids=[dist_util.dev()] if on_cuda else None,
                output_device=dist_util.dev() if on_cuda else None,
                broadcast_buffers=False,
                bucket_cap_mb=128,
                find_unused_parameters=False,
            )
        else:
            self.ddp_model = model
        self.opt = AdamW(self.mp_trainer.master_params, lr=lr, weight_decay=weight_decay)
        if self.resume_path:
            self._load_optimizer_and_state()
            self._last_saved = self.resume_step  # that checkpoint exists already

    def _load_optimizer_and_state(self):
        directory = os.path.dirname(self.resume_path)
        opt_checkpoint = os.path.join(directory, train_state.opt_filename(self.resume_step))
        if os.path.exists(opt_checkpoint):
            logger.log(f"loading optimizer state from checkpoint: {opt_checkpoint}")
            self.opt.load_state_dict(dist_util.load_state_dict(opt_checkpoint, map_location=dist_util.dev()))
        else:
            logger.warn(f"no optimizer state {opt_checkpoint}: AdamW moments start from zero")
        doc = train_state.read_train_state(os.path.join(directory, train_state.state_filename(self.resume_step)))
        if doc is None:
            return
        if doc["lg_loss_scale"] is not None and self.use_fp16:
            self.mp_trainer.lg_loss_scale = doc["lg_loss_scale"]
        data_state = train_state.restore_rank_state(doc, self.rank, self.world_size, log=logger.warn)
        for key, loader in (("train", self.data), ("val", self.val_data)):
            if data_state and data_state.get(key) is not None and hasattr(loader, "load_state_dict"):
                loader.load_state_dict(data_state[key])

    # ------------------------------------------------------------------------------ steps

    def forward_backward_log(self, data_loader, prefix="train"):
        """One batch: losses and accuracies logged; gradients accumulated when training."""
        batch, extra = next(data_loader)
        labels = extra["y"].to(dist_util.dev())
        batch = batch.to(dist_util.dev())
        if self.noised:
            t, _ = self.schedule_sampler.sample(batch.shape[0], dist_util.dev())
            batch = self.diffusion.q_sample(batch, t)
        else:
            t = th.zeros(batch.shape[0], dtype=th.long, device=dist_util.dev())

        chunks = list(split_microbatches(self.microbatch, batch, labels, t))
        for i, (sub_batch, sub_labels, sub_t) in enumerate(chunks):
            last = i == len(chunks) - 1
            sync = contextlib.nullcontext() if last or self.ddp_model is self.model else self.ddp_model.no_sync()
            with sync:
                logits = self.ddp_model(sub_batch, timesteps=sub_t)
                loss = F.cross_entropy(logits, sub_labels, reduction="none")
                losses = {
                    f"{prefix}_loss": loss.detach(),
                    f"{prefix}_acc@1": compute_top_k(logits, sub_labels, k=1, reduction="none"),
                    f"{prefix}_acc@5": compute_top_k(logits, sub_labels, k=5, reduction="none"),
                }
                log_loss_dict(self.diffusion, sub_t, losses)
                loss = loss.mean()
                if loss.requires_grad:
                    if i == 0:
                        self.mp_trainer.zero_grad()
                    self.mp_trainer.backward(loss * len(sub_batch) / len(batch))

    def evaluate(self):
        """Log `val_*` metrics on one validation batch."""
        if self.val_data is None:
            return
        with th.no_grad():
            self.model.eval()
            self.forward_backward_log(self.val_data, prefix="val")
            self.model.train()

    def run_loop(self):
        with GracefulStop() as stop:
            while self.step + self.resume_step < self.iterations:
                index = self.step + self.resume_step
                logger.logkv("step", index)
                logger.logkv("samples", (index + 1) * self.batch_size * self.world_size)
                if self.anneal_lr:
                    set_annealed_lr(self.opt, self.lr, index / self.iterations)
                self.forward_backward_log(self.data)
                self.mp_trainer.optimize(self.opt)
                if not index % self.eval_interval:
                    self.evaluate()
                if not index % self.log_interval:
                    logger.dumpkvs()
                self.step += 1
                if (self.step + self.resume_step) % self.save_interval == 0:
                    self.save()
                if stop_if_requested(self, stop):
                    return
        save_unless_saved(self)

    def save(self):
        """Write model%06d.pt, opt%06d.pt and the side file for the current step (rank 0 writes)."""
        step = self.step + self.resume_step
        data_state = {
            key: loader.state_dict() if hasattr(loader, "state_dict") else None
            for key, loader in (("train", self.data), ("val", self.val_data))
        }
        rank_states = train_state.gather_rank_states(data_state)
        if self.rank == 0:
            logger.log("saving model...")
            logdir = get_blob_logdir()
            save_state_file(
                self.mp_trainer.master_params_to_state_dict(self.mp_trainer.master_params),
                os.path.join(logdir, train_state.model_filename(step)),
            )
            save_state_file(self.opt.state_dict(), os.path.join(logdir, train_state.opt_filename(step)))
            train_state.write_train_state(
                os.path.join(logdir, train_state.state_filename(step)),
                step,
                rank_states,
                lg_loss_scale=self.mp_trainer.lg_loss_scale if self.use_fp16 else None,
            )
        if self.world_size > 1:
            dist.barrier()
        self._last_saved = step
