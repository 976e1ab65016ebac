"""
The diffusion training loop (the original's `TrainLoop`), made crash-safe and exactly resumable.

Per step: sample t from the schedule sampler, compute `diffusion.training_losses` over
microbatches (gradients accumulated; DDP syncs only on the last microbatch), weight by the
importance weights, take an AdamW step through `MixedPrecisionTrainer` (fp16 loss scaling),
update the EMA copies, anneal the learning rate linearly to 0 at `lr_anneal_steps`, and log the
losses overall and per quartile of t.

Differences from the original, all compatible with its files:
- A checkpoint numbered N holds exactly N optimizer updates (the original's periodic saves held
  N + 1), so `k` steps, a stop and a resume for `k` more give the same parameters as `2k` steps.
  Numbers still follow the original: `model000000.pt` at the start of a fresh run, then every
  `save_interval` updates, and the last step at the end. Logged `step` values are unchanged.
- Files are written atomically, the side file `train_state%06d.json` (see train_state.py)
  restores RNGs, data position, loss scale and the loss-aware sampler.
- `resume_checkpoint="auto"` resumes from the newest complete checkpoint in the log directory
  (or starts fresh when there is none).
- SIGTERM/SIGINT: the current step finishes, a checkpoint is saved, `run_loop` returns and
  `self.stopped_by` holds the signal number.
- DDP is used whenever there is more than one rank (gloo on CPU too); the lr at update i is
  lr * (1 - i / lr_anneal_steps).
"""

import copy
import functools
import os

import torch as th
import torch.distributed as dist
from torch.nn.parallel.distributed import DistributedDataParallel as DDP
from torch.optim import AdamW

from .runtime import distributed as dist_util
from .runtime import logger
from .training import state as train_state
from .training.mixed_precision import MixedPrecisionTrainer
from .training.stopping import GracefulStop, save_unless_saved, stop_if_requested
from .models.layers import update_ema
from .diffusion.timestep_sampler import LossAwareSampler, UniformSampler
from .training.state import parse_resume_step_from_filename  # noqa: F401  (public, as in the original)

# For ImageNet experiments, this was a good default value.
# We found that the lg_loss_scale quickly climbed to 20-21 within the first ~1K steps of training.
INITIAL_LOG_LOSS_SCALE = 20.0


class TrainLoop:
    """
    :param model: the network, `model(x, t, **cond)`.
    :param diffusion: a GaussianDiffusion (or anything with `training_losses` and `num_timesteps`).
    :param data: iterator of (batch float [N, C, H, W], cond dict); `state_dict()` on it (as
        `load_data` returns) makes resuming exact.
    :param batch_size: per-rank batch size; `microbatch` (<= 0: whole batch) splits it.
    :param ema_rate: float or comma-separated string of EMA rates.
    :param resume_checkpoint: path of a `model%06d.pt`, "auto", or "" for a fresh run.
    :param model_flags: optional dict of the flags that built the model, named in mismatch errors.
    """

    def __init__(
        self,
        *,
        model,
        diffusion,
        data,
        batch_size,
        microbatch,
        lr,
        ema_rate,
        log_interval,
        save_interval,
        resume_checkpoint,
        use_fp16=False,
        fp16_scale_growth=1e-3,
        schedule_sampler=None,
        weight_decay=0.0,
        lr_anneal_steps=0,
        model_flags=None,
    ):
        self.model = model
        self.diffusion = diffusion
        self.data = data
        self.batch_size = batch_size
        self.microbatch = microbatch if microbatch > 0 else batch_size
        self.lr = lr
        self.ema_rate = parse_ema_rates(ema_rate)
        self.log_interval = log_interval
        self.save_interval = save_interval
        self.resume_checkpoint = resume_checkpoint
        self.use_fp16 = use_fp16
        self.fp16_scale_growth = fp16_scale_growth
        self.schedule_sampler = schedule_sampler or UniformSampler(diffusion)
        self.weight_decay = weight_decay
        self.lr_anneal_steps = lr_anneal_steps
        self.model_flags = model_flags
        if log_interval <= 0 or save_interval <= 0:
            raise ValueError(f"log_interval and save_interval must be positive, got {log_interval}, {save_interval}")

        self.step = 0
        self.resume_step = 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.global_batch = self.batch_size * self.world_size
        self.stopped_by = None
        self._last_saved = None

        self.sync_cuda = th.cuda.is_available()
        self.resume_path = resolve_resume_checkpoint(self.resume_checkpoint, self.ema_rate)
        self._load_and_sync_parameters()
        self.mp_trainer = MixedPrecisionTrainer(
            model=self.model, use_fp16=self.use_fp16, fp16_scale_growth=fp16_scale_growth
        )
        self.opt = AdamW(self.mp_trainer.master_params, lr=self.lr, weight_decay=self.weight_decay)
        if self.resume_path:
            self._load_optimizer_state()
            self.ema_params = [self._load_ema_parameters(rate) for rate in self.ema_rate]
        else:
            self.ema_params = [copy.deepcopy(self.mp_trainer.master_params) for _ in self.ema_rate]

        if self.world_size > 1:
            self.use_ddp = True
            on_cuda = dist_util.dev().type == "cuda"
            self.ddp_model = DDP(
                self.model,
                device_ids=[dist_util.dev()] if on_cuda else None,
                output_device=dist_util.dev() if on_cuda else None,
                broadcast_buffers=False,
                bucket_cap_mb=128,
                find_unused_parameters=False,
            )
        else:
            self.use_ddp = False
            self.ddp_model = self.model
        if self.resume_path:
            self._load_train_state()
            self._last_saved = self.resume_step  # that checkpoint exists already

    # ------------------------------------------------------------------------------ loading

    def _load_and_sync_parameters(self):
        if self.resume_path:
            self.resume_step = parse_resume_step_from_filename(self.resume_path)
            logger.log(f"loading model from checkpoint: {self.resume_path}...")
            state_dict = dist_util.load_state_dict(self.resume_path, map_location=dist_util.dev())
            load_model_state(self.model, state_dict, self.resume_path, self.model_flags)
        dist_util.sync_params(self.model.parameters())

    def _load_ema_parameters(self, rate):
        ema_params = copy.deepcopy(self.mp_trainer.master_params)
        ema_checkpoint = find_ema_checkpoint(self.resume_path, self.resume_step, rate)
        if ema_checkpoint:
            logger.log(f"loading EMA from checkpoint: {ema_checkpoint}...")
            state_dict = dist_util.load_state_dict(ema_checkpoint, map_location=dist_util.dev())
            expected = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
            if expected != {k: tuple(v.shape) for k, v in state_dict.items()}:
                # Raises the detailed mismatch error (the run is aborted, so the partial load is moot).
                load_model_state(self.model, state_dict, ema_checkpoint, self.model_flags)
            ema_params = [p.detach().clone() for p in self.mp_trainer.state_dict_to_master_params(state_dict)]
        else:
            logger.warn(f"no EMA checkpoint for rate {rate} at step {self.resume_step}: starting it from the model")
        dist_util.sync_params(ema_params)
        return ema_params

    def _load_optimizer_state(self):
        opt_checkpoint = os.path.join(os.path.dirname(self.resume_path), train_state.opt_filename(self.resume_step))
        if os.path.exists(opt_checkpoint):
            logger.log(f"loading optimizer state from checkpoint: {opt_checkpoint}")
            state_dict = dist_util.load_state_dict(opt_checkpoint, map_location=dist_util.dev())
            self.opt.load_state_dict(state_dict)
        else:
            logger.warn(f"no optimizer state {opt_checkpoint}: AdamW moments start from zero")

    def _load_train_state(self):
        path = os.path.join(os.path.dirname(self.resume_path), train_state.state_filename(self.resume_step))
        doc = train_state.read_train_state(path)
        if doc is None:
            logger.log(f"no {os.path.basename(path)} beside the checkpoint: RNG and data order restart")
            return
        if doc["lg_loss_scale"] is not None and self.use_fp16:
            self.mp_trainer.lg_loss_scale = doc["lg_loss_scale"]
        train_state.load_sampler_state(self.schedule_sampler, doc.get("schedule_sampler"))
        data_state = train_state.restore_rank_state(doc, self.rank, self.world_size, log=logger.warn)
        if data_state is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(data_state)

    # ------------------------------------------------------------------------------ loop

    def run_loop(self):
        with GracefulStop() as stop:
            if self.resume_step == 0 and self.step == 0 and not self.resume_path:
                self.save()  # model000000.pt, as the original writes
            while not self.lr_anneal_steps or self.step + self.resume_step < self.lr_anneal_steps:
                batch, cond = next(self.data)
                self.run_step(batch, cond)
                index = self.step + self.resume_step
                if index % self.log_interval == 0:
                    logger.dumpkvs()
                self.step += 1
                if (self.step + self.resume_step) % self.save_interval == 0:
                    self.save()
                    # Run for a finite amount of time in integration tests.
                    if os.environ.get("DIFFUSION_TRAINING_TEST", ""):
                        return
                if stop_if_requested(self, stop):
                    return
        save_unless_saved(self)

    def run_step(self, batch, cond):
        self._anneal_lr()
        self.forward_backward(batch, cond)
        took_step = self.mp_trainer.optimize(self.opt)
        if took_step:
            self._update_ema()
        self.log_step()

    def forward_backward(self, batch, cond):
        self.mp_trainer.zero_grad()
        for i in range(0, batch.shape[0], self.microbatch):
            micro = batch[i : i + self.microbatch].to(dist_util.dev())
            micro_cond = {k: v[i : i + self.microbatch].to(dist_util.dev()) for k, v in cond.items()}
            last_batch = (i + self.microbatch) >= batch.shape[0]
            t, weights = self.schedule_sampler.sample(micro.shape[0], dist_util.dev())

            compute_losses = functools.partial(
                self.diffusion.training_losses, self.ddp_model, micro, t, model_kwargs=micro_cond
            )
            if last_batch or not self.use_ddp:
                losses = compute_losses()
            else:
                with self.ddp_model.no_sync():
                    losses = compute_losses()

            if isinstance(self.schedule_sampler, LossAwareSampler):
                self.schedule_sampler.update_with_local_losses(t, losses["loss"].detach())

            # Each microbatch is scaled by its share of the batch so the gradient is the batch mean.
            loss = (losses["loss"] * weights).mean() * (micro.shape[0] / batch.shape[0])
            log_loss_dict(self.diffusion, t, {k: v * weights for k, v in losses.items()})
            self.mp_trainer.backward(loss)

    def _update_ema(self):
        for rate, params in zip(self.ema_rate, self.ema_params):
            update_ema(params, self.mp_trainer.master_params, rate=rate)

    def _anneal_lr(self):
        """Set the lr of the coming update i (global, 0-based) to lr * (1 - i / lr_anneal_steps)."""
        if not self.lr_anneal_steps:
            return
        frac_done = (self.step + self.resume_step) / self.lr_anneal_steps
        lr = self.lr * (1 - frac_done)
        for param_group in self.opt.param_groups:
            param_group["lr"] = lr

    def log_step(self):
        logger.logkv("step", self.step + self.resume_step)
        logger.logkv("samples", (self.step + self.resume_step + 1) * self.global_batch)

    # ------------------------------------------------------------------------------ saving

    def save(self):
        """Write model, EMA, optimizer and side file for the current global step (rank 0 writes)."""
        step = self.step + self.resume_step
        logdir = get_blob_logdir()
        rank_states = train_state.gather_rank_states(self.data.state_dict() if hasattr(self.data, "state_dict") else None)
        if self.rank == 0:
            logger.log("saving model 0...")
            save_state_file(
                self.mp_trainer.master_params_to_state_dict(self.mp_trainer.master_params),
                os.path.join(logdir, train_state.model_filename(step)),
            )
            for rate, params in zip(self.ema_rate, self.ema_params):
                logger.log(f"saving model {rate}...")
                save_state_file(
                    self.mp_trainer.master_params_to_state_dict(params),
                    os.path.join(logdir, train_state.ema_filename(rate, step)),
                )
            save_state_file(self.opt.state_dict(), os.path.join(logdir, train_state.opt_filename(step)))
            train_state.write_train_state(
                os.path.join(logdir, train_state.state_filename(step)),
                step,
                rank_states,
                lg_loss_scale=self.mp_trainer.lg_loss_scale if self.use_fp16 else None,
                schedule_sampler=train_state.sampler_state(self.schedule_sampler),
            )
        if self.world_size > 1:
            dist.barrier()
        self._last_saved = step


# ---------------------------------------------------------------------------------- helpers


def parse_ema_rates(ema_rate):
    """
    :param ema_rate: a float, or a string like "0.9999" or "0.999,0.9999" ("" for none).
    :return: list of floats, each in [0, 1).
    """
    if isinstance(ema_rate, (int, float)):
        rates = [float(ema_rate)]
    else:
        try:
            rates = [float(x) for x in str(ema_rate).split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"ema_rate must be comma-separated floats, got {ema_rate!r}") from None
    for r in rates:
        if not 0.0 <= r < 1.0:
            raise ValueError(f"EMA rates must be in [0, 1), got {r} in ema_rate={ema_rate!r}")
    return rates


def save_state_file(state_dict, path):
    """`torch.save` written atomically locally, or through blobfile for URLs."""
    if "://" in path:
        import blobfile as bf

        with bf.BlobFile(path, "wb") as f:
            th.save(state_dict, f)
    else:
        from .runtime.fileio import atomic_torch_save

        atomic_torch_save(state_dict, path)


def load_model_state(model, state_dict, path, flags=None, kind="model"):
    """Strict load with a helpful error (flags that probably differ) when layouts mismatch."""
    try:
        from .config.checkpoint import load_model_checkpoint
    except ImportError:
        load_model_checkpoint = None
    if load_model_checkpoint is not None:
        try:
            return load_model_checkpoint(model, state_dict, flags=flags, kind=kind)
        except ValueError as e:
            raise type(e)(f"{path}: {e}") from None
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise ValueError(f"checkpoint {path} does not fit this {kind} (were different flags used?): {e}") from None


def resolve_resume_checkpoint(resume_checkpoint, ema_rates=()):
    """
    The checkpoint path to resume from: `find_resume_checkpoint()` (hook) first, then the flag.

    :param resume_checkpoint: "", a path, or "auto" (newest complete checkpoint in the log dir).
    :return: a path or None.
    :raises FileNotFoundError: when an explicit path does not exist.
    :raises ValueError: when its name has no step number.
    """
    hooked = find_resume_checkpoint()
    if hooked:
        return hooked
    if not resume_checkpoint:
        return None
    if resume_checkpoint == "auto":
        path = train_state.find_latest_checkpoint(get_blob_logdir(), ema_rates)
        if path is None:
            logger.log(f"--resume_checkpoint auto: no complete checkpoint in {get_blob_logdir()}, starting fresh")
        else:
            logger.log(f"--resume_checkpoint auto: resuming from {path}")
        return path
    if "://" not in resume_checkpoint and not os.path.isfile(resume_checkpoint):
        raise FileNotFoundError(f"resume checkpoint {resume_checkpoint!r} does not exist")
    parse_resume_step_from_filename(resume_checkpoint)
    return resume_checkpoint


def get_blob_logdir():
    # You can change this to be a separate path to save checkpoints to a blobstore or some
    # external drive.
    return logger.get_dir()


def find_resume_checkpoint():
    # On your infrastructure, you may want to override this to automatically discover the
    # latest checkpoint on your blob storage, etc. (`--resume_checkpoint auto` does this for
    # the log directory.)
    return None


def find_ema_checkpoint(main_checkpoint, step, rate):
    """Path of `ema_<rate>_<step>.pt` beside `main_checkpoint`, or None when absent."""
    if main_checkpoint is None:
        return None
    directory = os.path.dirname(main_checkpoint)
    for name in (train_state.ema_filename(rate, step), f"ema_{rate}_{step:06d}.pt"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    return None


def log_loss_dict(diffusion, ts, losses):
    """Log each loss term's batch mean and its mean per quartile of t (`<key>_q0`..`_q3`)."""
    for key, values in losses.items():
        logger.logkv_mean(key, values.mean().item())
        # Log the quantiles (four quartiles, in particular).
        for sub_t, sub_loss in zip(ts.cpu().numpy(), values.detach().cpu().numpy()):
            quartile = int(4 * sub_t / diffusion.num_timesteps)
            logger.logkv_mean(f"{key}_q{quartile}", sub_loss)
