"""The one CLI wrapper: one error line and one exit code per kind of stop."""

import signal

import pytest

from guided_diffusion.runtime.cli import RunInterrupted, StoppedBySignal, run_cli


def _raiser(exc):
    def main():
        raise exc
    return main


@pytest.mark.parametrize("exc,code,text", [
    (ValueError("--batch_size must be > 0, got 0"), 2, "error: --batch_size must be > 0, got 0"),
    (FileNotFoundError("no such file x.pt"), 2, "error: no such file x.pt"),
    (RunInterrupted("3 of 5 shards kept; rerun to resume"), 75, "3 of 5 shards kept"),
    (StoppedBySignal(signal.SIGTERM, "saved at step 7"), 128 + signal.SIGTERM, "saved at step 7"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_exit_code_and_one_line(exc, code, text, capsys, monkeypatch):
    monkeypatch.delenv("GUIDED_DIFFUSION_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        run_cli(_raiser(exc))
    assert info.value.code == code
    err = capsys.readouterr().err
    assert text in err and err.count("\n") == 1 and "Traceback" not in err


def test_debug_env_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("GUIDED_DIFFUSION_DEBUG", "1")
    with pytest.raises(ValueError):
        run_cli(_raiser(ValueError("boom")))


def test_return_value_is_the_exit_code():
    with pytest.raises(SystemExit) as info:
        run_cli(lambda: 3)
    assert info.value.code == 3


def test_bugs_keep_their_traceback():
    with pytest.raises(ZeroDivisionError):
        run_cli(_raiser(ZeroDivisionError()))
