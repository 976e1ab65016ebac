"""
Turn SIGTERM/SIGINT into a request that the training loop honours between steps (save, then stop),
agreed across ranks so that every process stops after the same step.
"""

import contextlib
import os
import signal
import threading

import torch as th
import torch.distributed as dist

from ..runtime import distributed as dist_util


class GracefulStop:
    """
    Context manager: while active, the first SIGTERM or SIGINT only records the request; a
    second one gets the previous handler (so a double Ctrl-C still aborts at once), except
    inside `holding()`, where every signal is only recorded so that a save always finishes.

    :param signals: signal numbers to catch.
    """

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = tuple(signals)
        self.signum = None
        self._previous = {}
        self._holding = False

    def _handler(self, signum, frame):
        if self.signum is None or self._holding:
            self.signum = self.signum or signum
            return
        _call_previous(self._previous.get(signum, signal.SIG_DFL), signum, frame)

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

    @contextlib.contextmanager
    def holding(self):
        """Inside this block every signal is only recorded (the block is never cut short)."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False

    def requested(self):
        """
        Whether any rank has been asked to stop (a collective call when torch.distributed has
        more than one rank: every rank must call it at the same point).

        :return: the signal number (the largest over ranks) or None.
        """
        local = self.signum or 0
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
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


def _call_previous(previous, signum, frame):
    """Act on a signal as the handler that was installed before GracefulStop would have."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
