"""SIGTERM/SIGINT become a request to stop between steps; a second one aborts as before."""

import os
import signal

import pytest

from guided_diffusion.training.stopping import GracefulStop


def test_first_signal_is_recorded_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with GracefulStop() as stop:
        assert stop.requested() is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested() == signal.SIGTERM and stop.name(stop.requested()) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_second_signal_goes_to_the_previous_handler():
    with GracefulStop(signals=(signal.SIGINT,)) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):  # Python's own SIGINT handler
            os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested() == signal.SIGINT


def test_unknown_signal_number_is_named_by_its_number():
    assert GracefulStop.name(999) == "999"


def test_signals_inside_holding_are_only_recorded():
    with GracefulStop() as stop:
        with stop.holding():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)  # a second signal would abort outside `holding`
            reached = True
        assert reached and stop.requested() == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
