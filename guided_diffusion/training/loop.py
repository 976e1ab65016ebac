"""
The one training loop, shared by diffusion, super-resolution and classifier training.

`TrainLoopBase` owns everything but the loss: distributed setup (DDP whenever there is more than
one rank; gloo on CPU too), resume (model, EMA, optimizer, and the side file of `state.py`,
which restores RNGs, data position, loss scale and the loss-aware sampler), EMA, the lr
schedule, atomic saves, a graceful stop on SIGTERM/SIGINT, and logging. A subclass supplies the
loss step `forward_backward(batch, cond)` and, through class attributes, what differs in its
checkpoints.

Update i (global and 0-based, i = step + resume_step):
    lr_i = lr * (1 - i / total_steps) when annealing (linear to 0);
    forward_backward; optimizer step (loss scaling in MixedPrecisionTrainer with fp16);
    ema <- rate * ema + (1 - rate) * params for each EMA rate (not when fp16 overflowed);
    log `step` = i and `samples` = (i + 1) * global batch; write the row when i % log_interval == 0.
A checkpoint numbered N holds exactly N updates: one every `save_interval` updates, one at the
end, one on a stop (and `model000000.pt` before the first update when `save_at_start`). The run
ends after `total_steps` updates (0: never). Resuming at step N drops the logger's table rows of
steps >= N, which the resumed run writes again, so no row is lost or repeated.

Precision (`precision`, --precision): "fp32" calls the network as it is. "bf16" / "fp16" (or
"auto", resolved by the device and logged) run the forward pass and the loss under autocast
(`runtime.speed.fast_call`); the parameters, hence the optimizer's master weights and the EMA,
stay float32, and fp16 adds dynamic loss scaling (`MixedPrecisionTrainer(loss_scaling=True)`).
`use_fp16` is the original's separate path (float16 weights, flat float32 masters) and combines
with fp32 only. `compile` runs the forward pass through torch.compile (eager on failure, with one
warning); checkpoints are written from the uncompiled module, so their keys do not change.

SIGTERM/SIGINT: the current step finishes, a checkpoint is saved, `run_loop` returns and
`stopped_by` holds the signal number. A signal during a save lets the save finish first.
"""

import contextlib
import copy
import os

import torch as th
import torch.distributed as dist
from torch.nn.parallel.distributed import DistributedDataParallel as DDP
from torch.optim import AdamW

from ..diffusion.timestep_sampler import UniformSampler
from ..models.layers import update_ema
from ..runtime import distributed as dist_util
from ..runtime import logger
from ..runtime.precision import log_resolution, resolve_precision
from ..runtime.speed import fast_call
from . import checkpoints
from . import state as train_state
from .mixed_precision import INITIAL_LOG_LOSS_SCALE, MixedPrecisionTrainer
from .stopping import GracefulStop

# The original's switch for integration tests: return after the first periodic save.
TRAINING_TEST_ENV = "DIFFUSION_TRAINING_TEST"


def parse_ema_rates(ema_rate):
    """
    :param ema_rate: a float, or a string like "0.9999" or "0.999,0.9999" ("" for none), or a
        sequence of floats.
    :return: list of floats, each in [0, 1).
    :raises ValueError: naming the bad value.
    """
    if isinstance(ema_rate, (int, float)):
        rates = [float(ema_rate)]
    elif isinstance(ema_rate, (list, tuple)):
        rates = [float(r) for r in ema_rate]
    else:
        try:
            rates = [float(x) for x in str(ema_rate).split(",") if x.strip()]
        except ValueError:
            raise ValueError(f"--ema_rate must be comma-separated floats, got {ema_rate!r}") from None
    for r in rates:
        if not 0.0 <= r < 1.0:
            raise ValueError(f"--ema_rate values must be in [0, 1), got {r} in {ema_rate!r}")
    return rates


def log_loss_dict(diffusion, ts, losses):
    """
    Log each loss term's batch mean and its mean per quartile of t (`<key>_q0`..`_q3`).

    :param ts: int64 [N] timesteps in [0, diffusion.num_timesteps).
    :param losses: dict of float [N] per-sample values.
    """
    for key, values in losses.items():
        logger.logkv_mean(key, values.mean().item())
        for sub_t, sub_loss in zip(ts.cpu().numpy(), values.detach().cpu().numpy()):
            quartile = int(4 * sub_t / diffusion.num_timesteps)
            logger.logkv_mean(f"{key}_q{quartile}", sub_loss)


def wrap_ddp(model, world_size):
    """:return: (the model to call, whether it is a DDP wrapper); DDP only with several ranks."""
    if world_size <= 1:
        return model, False
    on_cuda = dist_util.dev().type == "cuda"
    ddp_model = DDP(
        model,
        device_ids=[dist_util.dev()] if on_cuda else None,
        output_device=dist_util.dev() if on_cuda else None,
        broadcast_buffers=False,
        bucket_cap_mb=128,
        find_unused_parameters=False,
    )
    return ddp_model, True


class TrainLoopBase:
    """
    :param model: the network.
    :param diffusion: a GaussianDiffusion (`training_losses`, `q_sample`, `num_timesteps`).
    :param data: iterator of (batch float [N, C, H, W] in [-1, 1], cond dict of [N, ...]
        tensors); `state_dict()` / `load_state_dict()` on it (as `load_data` gives) make
        resuming exact.
    :param batch_size: per-rank batch size; `microbatch` (<= 0: the whole batch) splits it.
    :param lr: base learning rate; `weight_decay`: AdamW's.
    :param ema_rate: EMA rates as `parse_ema_rates` reads them ("" or (): none).
    :param log_interval: write a log row every this many updates (> 0).
    :param save_interval: write a checkpoint every this many updates (> 0).
    :param resume_checkpoint: path of a `model%06d.pt`, "auto" (the newest complete checkpoint
        in `blob_logdir()`), or "" for a fresh run.
    :param use_fp16: train the torso in fp16 with dynamic loss scaling (`fp16_scale_growth`).
    :param precision: "fp32", "bf16", "fp16" or "auto": autocast for forward and loss (see the
        module docstring); "fp16" scales the loss as use_fp16 does.
    :param compile: run the forward pass through torch.compile.
    :param schedule_sampler: draws t (default: uniform over the diffusion's steps).
    :param model_flags: optional dict of the flags that built the model, named in mismatch errors.
    """

    checkpoint_kind = "model"  # which factory `model_flags` belong to: "model" or "classifier"
    save_at_start = False  # write checkpoint 0 before the first update of a fresh run
    initial_lg_loss_scale = INITIAL_LOG_LOSS_SCALE
    total_steps = 0  # the run ends after this many updates (0: never)
    anneal_lr = False  # anneal the lr linearly to 0 at total_steps

    def __init__(self, *, model, diffusion, data, batch_size, microbatch, lr, ema_rate, log_interval,
                 save_interval, resume_checkpoint, use_fp16=False, fp16_scale_growth=1e-3,
                 schedule_sampler=None, weight_decay=0.0, model_flags=None, precision="fp32", compile=False):
        for name, value in (("log_interval", log_interval), ("save_interval", save_interval)):
            if value <= 0:
                raise ValueError(f"--{name} must be > 0, got {value}")
        self.model, self.diffusion, self.data = model, diffusion, data
        self.batch_size = batch_size
        self.microbatch = microbatch if microbatch > 0 else batch_size
        self.lr, self.weight_decay = lr, weight_decay
        self.ema_rate = parse_ema_rates(ema_rate)
        self.log_interval, self.save_interval = log_interval, save_interval
        self.resume_checkpoint = resume_checkpoint
        self.use_fp16, self.fp16_scale_growth = use_fp16, fp16_scale_growth
        self.schedule_sampler = schedule_sampler or UniformSampler(diffusion)
        self.model_flags = model_flags

        self.step = 0
        self.resume_step = 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.global_batch = self.batch_size * self.world_size
        self.stopped_by = None
        self.last_saved_step = None
        self.sync_cuda = th.cuda.is_available()

        self.resume_path = checkpoints.resolve_resume_checkpoint(
            resume_checkpoint, self.ema_rate, self.blob_logdir(), self.hooked_resume_checkpoint(), self.resume_step_of
        )
        resolution = resolve_precision(precision, dist_util.dev(), use_fp16=use_fp16)
        if precision != "fp32":
            log_resolution(resolution, "training")
        self.precision = resolution.precision
        self._load_and_sync_parameters()
        self.mp_trainer = MixedPrecisionTrainer(
            model=model, use_fp16=use_fp16, fp16_scale_growth=fp16_scale_growth,
            initial_lg_loss_scale=self.initial_lg_loss_scale, loss_scaling=self.precision == "fp16",
        )
        self.opt = AdamW(self.mp_trainer.master_params, lr=lr, weight_decay=weight_decay)
        if self.resume_path:
            self._load_optimizer_state()
            self.ema_params = [self._load_ema_parameters(rate) for rate in self.ema_rate]
        else:
            self.ema_params = [copy.deepcopy(self.mp_trainer.master_params) for _ in self.ema_rate]
        self.ddp_model, self.use_ddp = wrap_ddp(model, self.world_size)
        # what the loss steps call: ddp_model itself for fp32 without compile
        self.forward_model = fast_call(self.ddp_model, self.precision, dist_util.dev(), compile, self.checkpoint_kind)
        if self.resume_path:
            self._load_train_state()
            self.last_saved_step = self.resume_step  # that checkpoint is on disk already
        logger.discard_rows("step", self.resume_step)

    # ------------------------------------------------------------------------------ hooks

    def blob_logdir(self):
        """The folder checkpoints are written to (and `auto` looks in): the logger's."""
        return logger.get_dir()

    def hooked_resume_checkpoint(self):
        """A checkpoint found by other means, which wins over `resume_checkpoint` (None: none)."""
        return None

    def resume_step_of(self, path):
        """The global step of the checkpoint file `path`."""
        return train_state.parse_resume_step_from_filename(path)

    def log_losses(self, ts, losses):
        """Log per-sample losses ([N] each) overall and per quartile of t ([N])."""
        log_loss_dict(self.diffusion, ts, losses)

    def ema_checkpoint_path(self, rate):
        """The EMA file of `rate` beside the resumed checkpoint, or None."""
        return checkpoints.find_ema_checkpoint(self.resume_path, self.resume_step, rate)

    def data_state(self):
        """This rank's JSON-able data position (saved in the side file)."""
        return self.data.state_dict() if hasattr(self.data, "state_dict") else None

    def load_data_state(self, state):
        """Inverse of `data_state`."""
        if state is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state)

    def forward_backward(self, batch, cond):
        """The loss step: zero the gradients, then accumulate those of the batch's mean loss."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------ loading

    def _load_and_sync_parameters(self):
        if self.resume_path:
            self.resume_step = self.resume_step_of(self.resume_path)
            logger.log(f"loading model from checkpoint: {self.resume_path}... at {self.resume_step} step")
            state_dict = dist_util.load_state_dict(self.resume_path, map_location=dist_util.dev())
            checkpoints.load_model_state(self.model, state_dict, self.resume_path, self.model_flags,
                                         kind=self.checkpoint_kind)
        dist_util.sync_params(self.model.parameters())

    def _load_ema_parameters(self, rate):
        ema_params = copy.deepcopy(self.mp_trainer.master_params)
        ema_checkpoint = self.ema_checkpoint_path(rate)
        if ema_checkpoint:
            logger.log(f"loading EMA from checkpoint: {ema_checkpoint}...")
            state_dict = dist_util.load_state_dict(ema_checkpoint, map_location=dist_util.dev())
            expected = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
            if expected != {k: tuple(v.shape) for k, v in state_dict.items()}:
                # Raises the detailed mismatch error (the run is aborted, so the partial load is moot).
                checkpoints.load_model_state(self.model, state_dict, ema_checkpoint, self.model_flags,
                                             kind=self.checkpoint_kind)
            ema_params = [p.detach().clone() for p in self.mp_trainer.state_dict_to_master_params(state_dict)]
        else:
            logger.warn(f"no EMA checkpoint for rate {rate} at step {self.resume_step}: starting it from the model")
        dist_util.sync_params(ema_params)
        return ema_params

    def _load_optimizer_state(self):
        opt_checkpoint = os.path.join(os.path.dirname(self.resume_path), train_state.opt_filename(self.resume_step))
        if os.path.exists(opt_checkpoint):
            logger.log(f"loading optimizer state from checkpoint: {opt_checkpoint}")
            self.opt.load_state_dict(dist_util.load_state_dict(opt_checkpoint, map_location=dist_util.dev()))
        else:
            logger.warn(f"no optimizer state {opt_checkpoint}: AdamW moments start from zero")

    def _load_train_state(self):
        path = os.path.join(os.path.dirname(self.resume_path), train_state.state_filename(self.resume_step))
        doc = train_state.read_train_state(path)
        if doc is None:
            logger.log(f"no {os.path.basename(path)} beside the checkpoint: RNG and data order restart")
            return
        if doc["lg_loss_scale"] is not None and self.mp_trainer.scales_loss:
            self.mp_trainer.lg_loss_scale = doc["lg_loss_scale"]
        train_state.load_sampler_state(self.schedule_sampler, doc.get("schedule_sampler"))
        self.load_data_state(train_state.restore_rank_state(doc, self.rank, self.world_size, log=logger.warn))

    # ------------------------------------------------------------------------------ loop

    @property
    def global_step(self):
        """Updates done, counting those of the resumed checkpoint."""
        return self.step + self.resume_step

    def finished(self):
        """True once `total_steps` updates are done (never when total_steps is 0)."""
        return bool(self.total_steps) and self.global_step >= self.total_steps

    def run_loop(self):
        """Train until `total_steps` (or a stop signal), saving as the module docstring says."""
        with GracefulStop() as stop:
            if self.finished():
                logger.log(f"nothing to do: step {self.global_step} reached (the run ends at {self.total_steps})")
                return
            if self.save_at_start and not self.resume_path and self.global_step == 0:
                self._save_holding(stop)
            while not self.finished():
                batch, cond = next(self.data)
                self.run_step(batch, cond)
                if self.global_step % self.log_interval == 0:
                    logger.dumpkvs()
                self.step += 1
                if self.global_step % self.save_interval == 0:
                    self._save_holding(stop)
                    if os.environ.get(TRAINING_TEST_ENV, ""):
                        return
                if self._stop_if_requested(stop):
                    return
            self._save_holding(stop)
            self._stop_if_requested(stop)

    def run_step(self, batch, cond):
        """One update: lr, loss step, optimizer step, EMA, log keys."""
        self._anneal_lr()
        self.forward_backward(batch, cond)
        if self.mp_trainer.optimize(self.opt):
            self._update_ema()
        self.log_step()

    def sync_gradients(self, last):
        """Context for one microbatch: DDP syncs gradients only on the last one."""
        if last or not self.use_ddp:
            return contextlib.nullcontext()
        return self.ddp_model.no_sync()

    def _update_ema(self):
        for rate, params in zip(self.ema_rate, self.ema_params):
            update_ema(params, self.mp_trainer.master_params, rate=rate)

    def _anneal_lr(self):
        """Set the lr of the coming update i to lr * (1 - i / total_steps) when annealing."""
        if not (self.anneal_lr and self.total_steps):
            return
        lr = self.lr * (1 - self.global_step / self.total_steps)
        for param_group in self.opt.param_groups:
            param_group["lr"] = lr

    def log_step(self):
        logger.logkv("step", self.global_step)
        logger.logkv("samples", (self.global_step + 1) * self.global_batch)

    def _stop_if_requested(self, stop):
        """
        Between steps: when any rank was asked to stop, save the current step, log how to go on,
        record the signal in `stopped_by` (a collective call, like `stop.requested()`).

        :return: True when the loop should return now.
        """
        signum = stop.requested()
        if not signum:
            return False
        self.stopped_by = signum
        self._save_holding(stop)
        if self.finished():
            logger.log(f"received {stop.name(signum)} while finishing: the last checkpoint, step "
                       f"{self.global_step}, is complete in {self.blob_logdir()}")
        else:
            logger.log(f"received {stop.name(signum)}: saved step {self.global_step} in {self.blob_logdir()}; "
                       f"continue with --resume_checkpoint auto")
        return True

    # ------------------------------------------------------------------------------ saving

    def save_if_unsaved(self):
        """Save unless the checkpoint of this step is on disk already."""
        if self.last_saved_step != self.global_step:
            self.save()

    def _save_holding(self, stop):
        """`save_if_unsaved` with every signal held until the save is done."""
        with stop.holding():
            self.save_if_unsaved()

    def save(self):
        """Write the checkpoint of the current global step (rank 0 writes; a collective call)."""
        step = self.global_step
        rank_states = train_state.gather_rank_states(self.data_state())
        if self.rank == 0:
            self._write_checkpoint(step, rank_states)
        if self.world_size > 1:
            dist.barrier()
        self.last_saved_step = step

    def _write_checkpoint(self, step, rank_states):
        logdir = self.blob_logdir()
        to_state_dict = self.mp_trainer.master_params_to_state_dict
        logger.log("saving model 0...")
        checkpoints.save_state_file(to_state_dict(self.mp_trainer.master_params),
                                    os.path.join(logdir, train_state.model_filename(step)))
        for rate, params in zip(self.ema_rate, self.ema_params):
            logger.log(f"saving model {rate}...")
            checkpoints.save_state_file(to_state_dict(params), os.path.join(logdir, train_state.ema_filename(rate, step)))
        checkpoints.save_state_file(self.opt.state_dict(), os.path.join(logdir, train_state.opt_filename(step)))
        train_state.write_train_state(
            os.path.join(logdir, train_state.state_filename(step)),
            step,
            rank_states,
            lg_loss_scale=self.mp_trainer.lg_loss_scale if self.mp_trainer.scales_loss else None,
            schedule_sampler=train_state.sampler_state(self.schedule_sampler),
        )
