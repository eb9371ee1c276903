"""The signals a runner handles while it runs, and the exit codes they lead to.

=============================  ==========================================  =========
signal                         usual sender                                exit code
=============================  ==========================================  =========
``SIGINT``                     Ctrl-C, forwarded by ``srun`` / ``mpirun``  130
``SIGTERM``                    ``scancel``, the time limit, ``mpirun``     143
preemption (``SIGUSR2``)       ``sbatch --signal=USR2@90``                 75
=============================  ==========================================  =========

75 is ``EX_TEMPFAIL`` from ``sysexits.h``: a temporary failure, so a wrapper
script can tell a preempted job (worth requeueing) from a failed one.

Handlers are installed on the main thread when a runner starts and restored
when it ends; nothing is installed at import.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)

EX_TEMPFAIL = 75


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_for_signal(signum: int, preemption_signal: int | None) -> int:
    """The exit status a rank leaves with after ``signum``."""
    if signum == preemption_signal:
        return EX_TEMPFAIL
    return 128 + signum


class JobInterrupted(SystemExit):
    """Raised in the client code when a signal tells the job to stop.

    It is a :class:`SystemExit`, so that ``except Exception`` in user code
    does not swallow it, and an uncaught one ends the process with
    :attr:`code` without a traceback.
    """

    def __init__(self, signum: int, exit_code: int):
        super().__init__(exit_code)
        self.signum = signum

    def __str__(self) -> str:
        return f"the job received {signal_name(self.signum)} (exit code {self.code})"


class SignalHandlers:
    """Handlers for ``signums``, installed on the main thread, then restored.

    Parameters
    ----------
    handler : callable
        Called as ``handler(signum, frame)`` on the main thread.
    signums : iterable of int
        The signals to handle.
    """

    def __init__(self, handler: Callable, signums):
        self.handler = handler
        self.signums = tuple(dict.fromkeys(s for s in signums if s is not None))
        self._previous: dict[int, object] = {}

    def install(self) -> bool:
        """Install the handlers; only possible on the main thread."""
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not on the main thread: no signal handlers installed")
            return False
        for signum in self.signums:
            self._previous[signum] = signal.signal(signum, self.handler)
        return True

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def wake_main_thread(self) -> bool:
        """Run the handler on the main thread, even if it is blocked waiting.

        A blocking wait in the client code (``future.result()``) returns to
        Python only when a signal arrives, so a thread-directed ``SIGINT``
        is the way to deliver news from the event loop thread at once. It
        goes to this process's main thread only.
        """
        if signal.SIGINT not in self._previous:
            return False
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        return True
