"""The signals a runner handles while it runs, and what each rank does with them.

=============================  ==========================================  =========
signal                         usual sender                                exit code
=============================  ==========================================  =========
``SIGINT``                     Ctrl-C, forwarded by ``srun`` / ``mpirun``  130
``SIGTERM``                    ``scancel``, the time limit, ``mpirun``     143
preemption (``SIGUSR2``)       ``sbatch --signal=USR2@90``                 75
=============================  ==========================================  =========

The exit codes come from :func:`dask_runners.exit_status.exit_status`.
:class:`SignalHandlers` installs the handlers on the main thread when a
runner starts and restores them when it ends; nothing is installed at
import. :class:`SignalPolicy` decides what a signal does on each rank.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from distributed.core import Status

from .exceptions import JobInterrupted
from .exit_status import exit_status, signal_name
from .roles import Role
from .state import RankState

logger = logging.getLogger(__name__)


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


class SignalPolicy:
    """What a signal does to one rank.

    * On the client rank while the client code runs: the code is
      interrupted (``KeyboardInterrupt`` for ``SIGINT``, else
      :class:`~dask_runners.JobInterrupted`), and leaving the ``with`` block
      shuts the cluster down.
    * On any other rank, or before the code runs: the rank stops what it is
      doing (:attr:`RankState.stop_service`) and leaves with the signal's
      exit status.
    * The preemption signal, when ``on_preemption`` is given, calls it on the
      client rank and is ignored elsewhere.
    * A failure of the cluster noted while the client code ran
      (:attr:`RankState.failure`) is raised in the client code by the
      handler; :meth:`SignalHandlers.wake_main_thread` delivers it.

    Parameters
    ----------
    state : RankState
        The rank's state, read and written.
    preemption_signal : int or None
        The signal that warns of preemption.
    on_preemption : callable, optional
        Called with no arguments on the client rank when it arrives.
    exit_codes : dict, optional
        Exit codes by signal number that replace the usual ones.
    """

    def __init__(self, state: RankState, preemption_signal: int | None, on_preemption=None, exit_codes=None):
        self.state = state
        self.preemption_signal = preemption_signal
        self.on_preemption = on_preemption
        self.exit_codes = dict(exit_codes or {})
        #: The loop the rank's services run on, once there is one.
        self.loop = None

    @property
    def signums(self) -> tuple[int, ...]:
        """The signals this policy handles."""
        return (signal.SIGINT, signal.SIGTERM, self.preemption_signal)

    def exit_code(self, signum: int) -> int:
        """The exit status a rank leaves with after ``signum``."""
        return self.exit_codes.get(signum, exit_status(-signum, preemption_signal=self.preemption_signal))

    def handle(self, signum: int, frame) -> None:
        """Runs on the main thread when one of :attr:`signums` arrives."""
        state = self.state
        exit_code = self.exit_code(signum)
        preempted = signum == self.preemption_signal and self.on_preemption is not None
        # Atomic against the loop thread (ClientSession._on_cluster_stopped): either a failure
        # it noted is raised here, or it sees that this signal already interrupts the code.
        with state.interrupting:
            if state.role is Role.client:
                state.raise_failure_once()
            interrupts = not preempted and state.role is Role.client and state.status is Status.running
            if interrupts:
                state.signal_received, state.signal_exit = signum, exit_code  # for a script with no `with`
        if preempted:
            if state.role is Role.client:
                self.on_preemption()
            return  # on other ranks: the client's callback decides what happens
        if interrupts:
            logger.warning(
                "%s: received %s; interrupting the client code and shutting the cluster down (exit code %d)",
                state.log_prefix,
                signal_name(signum),
                exit_code,
            )
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise JobInterrupted(signum, exit_code)
        if state.shutdown_requested or state.signal_exit is not None:
            return  # already shutting down
        logger.warning("%s: received %s; closing (exit code %d)", state.log_prefix, signal_name(signum), exit_code)
        state.signal_exit = exit_code
        state.signal_received = signum
        if self.loop is not None:  # else the start sees signal_exit and does not begin
            self.loop.add_callback(self._stop_service)

    async def _stop_service(self) -> None:
        if self.state.stop_service is not None:
            await self.state.stop_service()


def let_signals_end_the_process() -> None:
    """From here on, SIGTERM and SIGINT end the process at once.

    A leaving rank may still wait in C code (``MPI_Finalize`` waits for every
    rank); a Python handler would run only after it returns, so a launcher's
    SIGTERM would go unheeded until it gives up and sends SIGKILL.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
