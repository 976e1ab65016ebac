"""
The diffusion training loop at the original's module path: `TrainLoop`, and the functions users
replace to adapt it to their storage.

`TrainLoop` is `training.diffusion.DiffusionTrainLoop` (the loop itself is
`training.loop.TrainLoopBase`) that looks up these patch points in this module each time it
needs them, so assigning e.g. `train_util.get_blob_logdir = my_fn` redirects its saves:
    get_blob_logdir()                         folder for checkpoints (default: the logger's)
    find_resume_checkpoint()                  a checkpoint to resume, found by other means (None)
    parse_resume_step_from_filename(path)     the step in `model<step>.pt`
    log_loss_dict(diffusion, ts, losses)      logs losses overall and per quartile of t
    find_ema_checkpoint(main, step, rate)     the EMA file beside a checkpoint

Compatible with the original's files; differences in behaviour:
- A checkpoint numbered N holds exactly N optimizer updates (the original's periodic saves held
  N + 1), so `k` steps, a stop and a resume for `k` more give the same parameters as `2k` steps.
- Files are written atomically, and the side file `train_state%06d.json` restores RNGs, data
  position, loss scale and the loss-aware sampler.
- `resume_checkpoint="auto"` resumes from the newest complete checkpoint in `get_blob_logdir()`.
- SIGTERM/SIGINT: the current step finishes, a checkpoint is saved, `run_loop` returns and
  `self.stopped_by` holds the signal number.
- `parse_resume_step_from_filename` raises on a name without a step instead of returning 0.
"""

from .runtime import logger
from .training import checkpoints
from .training.checkpoints import find_ema_checkpoint, load_model_state, save_state_file  # noqa: F401
from .training.diffusion import DiffusionTrainLoop
from .training.loop import INITIAL_LOG_LOSS_SCALE, log_loss_dict, parse_ema_rates  # noqa: F401
from .training.state import parse_resume_step_from_filename  # noqa: F401


class TrainLoop(DiffusionTrainLoop):
    """
    The original's constructor: model, diffusion, data, batch_size, microbatch, lr, ema_rate,
    log_interval, save_interval, resume_checkpoint, use_fp16=False, fp16_scale_growth=1e-3,
    schedule_sampler=None, weight_decay=0.0, lr_anneal_steps=0 (see `DiffusionTrainLoop`), plus
    model_flags=None (the flags that built the model, named when a checkpoint does not fit).
    """

    def blob_logdir(self):
        return get_blob_logdir()

    def hooked_resume_checkpoint(self):
        return find_resume_checkpoint()

    def resume_step_of(self, path):
        return parse_resume_step_from_filename(path)

    def log_losses(self, ts, losses):
        log_loss_dict(self.diffusion, ts, losses)

    def ema_checkpoint_path(self, rate):
        return find_ema_checkpoint(self.resume_path, self.resume_step, rate)


def get_blob_logdir():
    """The folder checkpoints are saved to. Replace it to save to a blob store or another drive."""
    return logger.get_dir()


def find_resume_checkpoint():
    """
    Replace it to discover the checkpoint to resume on your own storage; it wins over
    `resume_checkpoint`. (`resume_checkpoint="auto"` does this for `get_blob_logdir()`.)
    """
    return None


def resolve_resume_checkpoint(resume_checkpoint, ema_rates=()):
    """
    The checkpoint `TrainLoop` resumes from: `find_resume_checkpoint()` first, then the flag.

    :param resume_checkpoint: "", a path, or "auto" (newest complete checkpoint in the log dir).
    :return: a path or None.
    :raises FileNotFoundError: when an explicit path does not exist.
    :raises ValueError: when its name has no step number.
    """
    return checkpoints.resolve_resume_checkpoint(
        resume_checkpoint, ema_rates, get_blob_logdir(), find_resume_checkpoint(), parse_resume_step_from_filename
    )
