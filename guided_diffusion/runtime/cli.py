"""
The one command-line wrapper of every script: one error format and one set of exit codes.

    exit 0      success (also "nothing to do")
    exit 2      a user error: bad flag value, missing or unreadable file, mismatched checkpoint
                (`ValueError` / `FileNotFoundError`); one line `<script>: error: <message>`
    exit 75     a resumable run stopped before it finished (`RunInterrupted`, EX_TEMPFAIL):
                finished work is kept and rerunning the same command resumes
    exit 128+N  stopped by signal N (`StoppedBySignal`, or Ctrl-C as 130)

Set GUIDED_DIFFUSION_DEBUG=1 to get the traceback instead of the one-line message.
"""

import os
import signal
import sys

DEBUG_ENV = "GUIDED_DIFFUSION_DEBUG"
USER_ERROR_EXIT_CODE = 2
INTERRUPTED_EXIT_CODE = 75


class RunInterrupted(Exception):
    """A resumable run stopped early; the message says what was kept and how to resume."""


class StoppedBySignal(Exception):
    """The run stopped on a signal after saving its state; exit status 128 + signum."""

    def __init__(self, signum, message):
        super().__init__(message)
        self.signum = int(signum)


def _prog():
    return os.path.basename(sys.argv[0]) or "guided-diffusion"


def _say(message):
    print(f"{_prog()}: {message}", file=sys.stderr, flush=True)


def exit_code_for(exc):
    """
    The exit status for an exception escaping a script's main(); None for any other exception
    (a bug: it propagates with its traceback).
    """
    if isinstance(exc, RunInterrupted):
        return INTERRUPTED_EXIT_CODE
    if isinstance(exc, StoppedBySignal):
        return 128 + exc.signum
    if isinstance(exc, KeyboardInterrupt):
        return 128 + signal.SIGINT
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return USER_ERROR_EXIT_CODE
    return None


def run_cli(main):
    """
    Run a script's `main()` and exit with its status (`main` may return an int; None means 0).
    Exceptions listed in the module docstring become one line on stderr (none for a
    `RunInterrupted` / `StoppedBySignal` with an empty message) and their exit code;
    anything else propagates with its traceback (a bug, not a user error).
    """
    try:
        code = main()
    except (RunInterrupted, StoppedBySignal, KeyboardInterrupt, ValueError, FileNotFoundError) as e:
        if os.environ.get(DEBUG_ENV):
            raise
        if isinstance(e, KeyboardInterrupt):
            _say("interrupted (Ctrl-C)")
        elif isinstance(e, (ValueError, FileNotFoundError)):
            _say(f"error: {e}")
        elif str(e):  # an empty message stays quiet (e.g. MPI ranks whose rank 0 reports)
            _say(str(e))
        sys.exit(exit_code_for(e))
    sys.exit(code or 0)
