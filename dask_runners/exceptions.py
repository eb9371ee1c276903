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


class ClusterStoppedError(RunnerError):
    """The cluster was stopped, with a failure, while the client code ran."""


class ShutdownTimeoutError(RunnerError, TimeoutError):
    """The cluster did not confirm its shutdown before the deadline."""
