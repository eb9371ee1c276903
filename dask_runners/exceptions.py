"""Every exception dask_runners raises.

Errors derive from :class:`RunnerError`. Two ``SystemExit`` subclasses,
:class:`JobInterrupted` and :class:`ClusterStoppedError`, carry an exit status
into the client code, and :class:`RankExited` stands for a process exit in
in-process test worlds.
"""

from __future__ import annotations

import asyncio

from .exit_status import EX_TEMPFAIL, signal_name


class RunnerError(RuntimeError):
    """Base class of every error raised by dask_runners."""


class LauncherEnvironmentError(RunnerError):
    """The process was not started by the launcher this runner expects."""


class WorldTooSmallError(RunnerError):
    """The job has too few processes for its scheduler, client and worker ranks."""


#: dask-jobqueue's and dask-mpi's name for :class:`WorldTooSmallError`, so that
#: ``except WorldTooSmallException`` keeps working after the import change.
WorldTooSmallException = WorldTooSmallError


class CredentialsRequiredError(RunnerError):
    """A cluster on its job's own TLS was reached without the credentials in its scheduler file.

    distributed's ``Client(scheduler_file=...)`` meets it; :func:`dask_runners.connect` reads them.
    """


class DiscoveryTimeoutError(RunnerError, TimeoutError):
    """The scheduler was not up and published before the discovery deadline."""

    @classmethod
    async def unless_done_within(cls, step, seconds: float, who: str, what: str):
        """Await ``step``; past ``seconds``, raise the error of rank ``who`` that was doing ``what``."""
        try:
            return await asyncio.wait_for(step, seconds)
        except asyncio.TimeoutError as e:
            raise cls.after(who, seconds, what) from e

    @classmethod
    def after(cls, who: str, seconds: float, what: str) -> DiscoveryTimeoutError:
        """The error of rank ``who`` that spent ``seconds`` on ``what``, with the fix."""
        return cls(
            f"{who}: timed out after {seconds:.0f} s {what}. "
            "If the ranks are slow to start, raise the deadline with "
            "timeouts={'discovery': ...} or the dask config key "
            "runners.timeouts.discovery; otherwise look at the scheduler rank's output."
        )


class SchedulerFileError(RunnerError):
    """The scheduler file cannot be used: its directory is missing or read-only, or it holds bad contents."""


class ConfigurationError(RunnerError, ValueError):
    """A setting (an argument, a dask config key, an environment variable) has a value that cannot work."""


class SchedulerStartError(RunnerError):
    """The scheduler rank reported that it could not start."""


class WorkersTimeoutError(RunnerError, TimeoutError):
    """Fewer workers than asked for arrived before the deadline."""


class SchedulerLostError(RunnerError):
    """The scheduler rank went away without shutting the cluster down."""


class ClusterStoppedError(SystemExit):
    """Raised in the client code when the cluster was stopped with a failure status.

    For example, the scheduler rank alone received SIGTERM. Like
    :class:`JobInterrupted` it is a ``SystemExit``
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


class MapStopped(JobInterrupted):
    """Raised by :func:`~dask_runners.parallel_for` stopped by :func:`~dask_runners.stop_maps`.

    A :class:`JobInterrupted` with exit code 75 (``EX_TEMPFAIL``), as the
    preemption signal gives: a job script can requeue the job on it, and the
    map resumes from its ``output_dir``.

    Attributes
    ----------
    abandoned : int
        Items in flight that did not finish within the grace period; they run
        again on resume.
    done : int
        Items this run finished.
    """

    def __init__(self, abandoned: int, done: int):
        super().__init__(None, EX_TEMPFAIL)
        self.abandoned = abandoned
        self.done = done

    def __str__(self) -> str:
        return (
            f"the map stopped for preemption after {self.done} items; {self.abandoned} in flight "
            "will run again when it resumes (exit code 75)"
        )


class RankExited(Exception):
    """Raised where a real service rank would have left the process (in-process worlds)."""

    def __init__(self, rank: int, exit_code: int):
        super().__init__(f"rank {rank} left with exit code {exit_code}")
        self.rank = rank
        self.exit_code = exit_code


class ParallelForError(RunnerError):
    """Some items of a :func:`~dask_runners.parallel_for` failed; every other result was delivered first.

    Attributes
    ----------
    failures : list of ItemFailure
        Every failure, by index.
    """

    def __init__(self, failures: list, done: int, stopped_early: bool = False):
        self.failures = sorted(failures, key=lambda failure: failure.index)
        shown = "; ".join(f"item {f.index}: {f.error}" for f in self.failures[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        ending = "stopping early (max_failures)" if stopped_early else "every other result was delivered"
        super().__init__(
            f"{len(self.failures)} of {done} finished items failed, {ending}: {shown}{more}. "
            "The tracebacks are in .failures; pass on_error='return' to get failures in place of "
            "results, or on_error='skip' to go on without them"
        )

