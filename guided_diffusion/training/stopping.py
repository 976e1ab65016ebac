"""
Turn SIGTERM/SIGINT into a request that the training loop honours between steps (save, then stop),
agreed across ranks so that every process stops after the same step.
"""

import signal
import threading

import torch as th
import torch.distributed as dist


class GracefulStop:
    """
    Context manager: while active, the first SIGTERM or SIGINT only records the request; a
    second one gets the previous handler (so a double Ctrl-C still aborts at once).

    :param signals: signal numbers to catch.
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = tuple(signals)
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        else:  # pragma: no cover - the handler is already restored after the first signal
            signal.default_int_handler(signum, frame)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, prev in self._previous.items():
            signal.signal(s, prev)
        self._previous = {}
        return False

    def requested(self):
        """
        Whether any rank has been asked to stop (a collective call when torch.distributed has
        more than one rank: every rank must call it at the same point).

        :return: the signal number (the largest over ranks) or None.
        """
        local = self.signum or 0
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from ..runtime import distributed as dist_util

            flag = th.tensor([local], dtype=th.int64, device=dist_util.dev() if dist.get_backend() == "nccl" else "cpu")
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            local = int(flag.item())
        return local or None

    @staticmethod
    def name(signum):
        try:
            return signal.Signals(signum).name
        except ValueError:
            return str(signum)


def save_unless_saved(loop):
    """
    Save a training loop's current step unless that checkpoint is already on disk.

    :param loop: has `step`, `resume_step`, `_last_saved` and `save()`.
    """
    if loop._last_saved != loop.step + loop.resume_step:
        loop.save()


def stop_if_requested(loop, stop):
    """
    Between steps: when any rank was asked to stop, record the signal in `loop.stopped_by`, save
    the current step and log how to continue (a collective call, like `stop.requested()`).

    :return: True when the loop should return now.
    """
    from ..runtime import logger

    signum = stop.requested()
    if not signum:
        return False
    loop.stopped_by = signum
    save_unless_saved(loop)
    logger.log(
        f"received {GracefulStop.name(signum)}: saved step {loop.step + loop.resume_step} in "
        f"{logger.get_dir()}; continue with --resume_checkpoint auto"
    )
    return True
