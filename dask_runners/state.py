"""Where one rank is in its life: the state its runner, services and signal policy share."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable

from distributed.core import Status

from .roles import Role


class RankState:
    """What one rank knows about itself while it runs.

    The runner owns it; the services of :mod:`dask_runners.services` and the
    :class:`~dask_runners.signals.SignalPolicy` read and write the parts that
    concern them.

    Attributes
    ----------
    rank : int or None
        The rank, for log lines.
    role : Role or None
        This rank's role, once chosen.
    status : distributed.core.Status
        ``created`` until the role's service runs, then ``running``,
        ``closing`` and ``closed``.
    stop_service : callable or None
        A coroutine function that stops what this rank is doing now (its
        start, its worker, its scheduler), set by whoever does it; a signal
        calls it.
    signal_exit : int or None
        The exit status a signal asked for.
    signal_received : int or None
        That signal.
    client_lost : bool
        The service stopped because the client rank's process died.
    scheduler_lost : bool
        The scheduler rank died or could not be reached: this rank left
        without being told to stop.
    failure : BaseException or None
        On the client rank: the cluster stopped or was lost while the client
        code ran; raised in the client code.
    failure_raised : bool
        Whether :attr:`failure` has reached the client code.
    shutdown_requested : bool
        On the client rank: the shutdown has begun.
    interrupting : threading.RLock
        Held while the signal handler decides whether a signal interrupts
        the client code, and while the event loop thread decides whether a
        stopped cluster must: one of them interrupts it, once.
    """

    def __init__(self, rank: int | None = None):
        self.rank = rank
        self.role: Role | None = None
        self.status = Status.created
        self.stop_service: Callable[[], Awaitable] | None = None
        self.signal_exit: int | None = None
        self.signal_received: int | None = None
        self.client_lost = False
        self.scheduler_lost = False
        self.failure: BaseException | None = None
        self.failure_raised = False
        self.shutdown_requested = False
        self.interrupting = threading.RLock()  # a handler may run again inside itself: reentrant

    @property
    def log_prefix(self) -> str:
        """How this rank's log lines begin: ``worker rank 3``."""
        role = self.role.value if self.role else "runner"
        return f"{role} rank {self.rank}" if self.rank is not None else role

    def raise_failure_once(self) -> None:
        """Raise :attr:`failure` if the client code has not seen it yet; the rank is closing then."""
        if self.failure is not None and not self.failure_raised:
            raise self._deliver_failure()

    def raise_failure_unseen_by(self, exc: BaseException | None) -> None:
        """Raise :attr:`failure` when the client code ended without meeting it.

        The code may end with another error first: distributed cancels the
        client's futures when it loses the scheduler, so ``future.result()``
        can raise ``FutureCancelledError`` before the handler delivers the
        failure, or the handler may run inside distributed's clean-up, which
        swallows it. The failure is then raised from the code's error.
        """
        if exc is None:
            self.raise_failure_once()
            return
        seen = exc
        while seen is not None:
            if seen is self.failure:
                return
            seen = seen.__context__
        if self.failure is not None:
            raise self._deliver_failure() from exc

    def _deliver_failure(self) -> BaseException:
        """:attr:`failure`, noted as reaching the client code; the rank is closing then."""
        self.failure_raised = True
        self.status = Status.closing
        return self.failure
