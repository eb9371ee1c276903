"""The exceptions dask_runners raises, rooted at :class:`RunnerError`."""

from __future__ import annotations


class RunnerError(RuntimeError):
    """Base class of every error raised by dask_runners."""


class LauncherEnvironmentError(RunnerError):
    """The process was not started by the launcher this runner expects."""


class WorldTooSmallError(RunnerError):
    """The job has too few processes for a scheduler, a client and a worker."""


class DiscoveryTimeoutError(RunnerError, TimeoutError):
    """The scheduler was not up and published before the discovery deadline."""


class SchedulerStartError(RunnerError):
    """The scheduler rank reported that it could not start."""


class WorkersTimeoutError(RunnerError, TimeoutError):
    """Fewer workers than asked for arrived before the deadline."""


class SchedulerLostError(RunnerError):
    """The scheduler rank went away without shutting the cluster down."""


class ClusterStoppedError(SystemExit):
    """Raised in the client code when the cluster was stopped with a failure status.

    For example, the scheduler rank alone received SIGTERM. Like
    :class:`~dask_runners.signals.JobInterrupted` it is a ``SystemExit``
    carrying the cluster's exit status, so the client rank leaves with the
    same status as every other rank, and ``except Exception`` does not
    swallow it. The runner logs the reason.
    """

    def __init__(self, reason: str, exit_code: int):
        super().__init__(exit_code)
        self.reason = reason

    def __str__(self) -> str:
        return f"the cluster was stopped while the client code ran: {self.reason} (exit code {self.code})"


class ShutdownTimeoutError(RunnerError, TimeoutError):
    """The cluster did not confirm its shutdown before the deadline."""


class ClusterNotFoundError(RunnerError):
    """No running cluster behind a scheduler file: missing, unfinished or stale."""
