"""The exit status a process of the job leaves with, from whatever ended it.

One function, :func:`exit_status`, answers for every kind of ending:

=====================================  ==========================================
what ended the work                    exit status
=====================================  ==========================================
nothing (success)                      0
``SystemExit(code)``                   ``code`` (0 for ``None``, 1 for a non-int)
``KeyboardInterrupt``                  130
any other exception                    1
the preemption signal                  75 (``EX_TEMPFAIL`` of ``sysexits.h``)
any other signal ``N``                 128 + ``N``
a child's ``Popen.returncode`` ``-N``  128 + ``N``, as a shell reports it (75 if
                                       ``N`` is the preemption signal)
=====================================  ==========================================

75 lets a wrapper script tell a preempted job (worth requeueing) from a
failed one.
"""

from __future__ import annotations

import signal

EX_TEMPFAIL = 75


def exit_status(ended_by=None, *, preemption_signal: int | None = None) -> int:
    """The exit status after ``ended_by``.

    Parameters
    ----------
    ended_by : None, BaseException, signal.Signals or int
        ``None`` for success; the exception that ended the work; the signal
        that ended it (a :class:`signal.Signals`, or ``-N`` for signal ``N``,
        as a real-time signal has no member there); or a child process's
        ``returncode``, negative when a signal killed it.
    preemption_signal : int, optional
        The signal that warns of preemption; it maps to :data:`EX_TEMPFAIL`.
    """
    if ended_by is None:
        return 0
    if isinstance(ended_by, SystemExit):
        if ended_by.code is None:
            return 0
        return ended_by.code if isinstance(ended_by.code, int) else 1
    if isinstance(ended_by, KeyboardInterrupt):
        return 130
    if isinstance(ended_by, BaseException):
        return 1
    if isinstance(ended_by, signal.Signals):
        ended_by = -int(ended_by)
    if ended_by < 0:
        return EX_TEMPFAIL if -ended_by == preemption_signal else 128 - ended_by
    return ended_by


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
