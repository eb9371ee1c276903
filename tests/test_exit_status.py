"""The one function from an ending to an exit status."""

import signal

import pytest

from dask_runners.exit_status import EX_TEMPFAIL, exit_status, signal_name


@pytest.mark.parametrize(
    "ended_by, status",
    [
        (None, 0),
        (SystemExit(), 0),
        (SystemExit(0), 0),
        (SystemExit(3), 3),
        (SystemExit("message"), 1),
        (KeyboardInterrupt(), 130),
        (ValueError("bad"), 1),
        (signal.SIGTERM, 143),
        (signal.SIGINT, 130),
        (-signal.SIGKILL, 137),  # a child's Popen.returncode
        (0, 0),
        (2, 2),
    ],
)
def test_every_ending_has_its_status(ended_by, status):
    assert exit_status(ended_by) == status


def test_the_preemption_signal_is_a_temporary_failure():
    assert exit_status(signal.SIGUSR2, preemption_signal=signal.SIGUSR2) == EX_TEMPFAIL == 75
    assert exit_status(signal.SIGUSR2) == 128 + signal.SIGUSR2


def test_signal_names():
    assert signal_name(15) == "SIGTERM"
    assert signal_name(999) == "signal 999"


def test_a_real_time_signal_has_a_status_too():
    rt = signal.SIGRTMIN + 2  # no member of signal.Signals
    assert exit_status(-rt) == 128 + rt
    assert exit_status(-rt, preemption_signal=rt) == EX_TEMPFAIL
