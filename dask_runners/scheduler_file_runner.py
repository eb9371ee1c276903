"""SchedulerFileRunner: a cluster from any launcher that numbers its processes.

The scheduler's contact (its address and the job's TLS credentials) crosses a
shared filesystem in a scheduler file; see
:mod:`dask_runners.transport.scheduler_file`. Rank and world size come from
the launcher's environment through :func:`dask_runners.launchers.job_context`,
so this one runner serves Slurm, PBS, LSF, Flux, torchrun and our own local
launcher alike.
"""

from __future__ import annotations

import os

from .base import BaseRunner
from .launchers import job_context
from .transport.scheduler_file import (
    DEFAULT_SCHEDULER_FILE,
    SchedulerFileTransport,
    scheduler_file_path,
)


class SchedulerFileRunner(BaseRunner):
    """Run a Dask cluster in the processes of any launcher, through a file.

    Rank 0 runs the scheduler, rank 1 the client code, every other rank a
    worker.

    Parameters
    ----------
    launcher : str, optional
        The launcher whose variables to read (a name from
        :data:`dask_runners.launchers.PARSERS`); detected by default.
    scheduler_file : str or Path
        Where to write the scheduler file; ``{job_id}`` and ``{step_id}`` are
        filled in from the job. The default,
        ``scheduler-{job_id}.{step_id}.json`` in the working directory, is
        unique to one launch. The directory must be on a filesystem every node
        of the job sees. With ``scheduler=False`` this names the file of a
        scheduler started outside the job, and any complete scheduler file
        there is trusted.
    environ : mapping, optional
        The environment to read; default ``os.environ``.
    **kwargs
        Passed to :class:`~dask_runners.BaseRunner`.

    Attributes
    ----------
    job : JobContext
        Where this process sits in the job.
    scheduler_file : Path
        The scheduler file of this launch.
    """

    def __init__(self, *, launcher=None, scheduler_file=DEFAULT_SCHEDULER_FILE, environ=None, **kwargs):
        super().__init__(**kwargs)
        env = os.environ if environ is None else environ
        self.job = job_context(env, launcher)
        self.rank, self.world_size = self.job.rank, self.job.world_size
        self.scheduler_file = scheduler_file_path(scheduler_file, self.job, env)
        # Without a scheduler of our own, the file comes from outside the job
        # and carries no stamp of this launch.
        self.transport = SchedulerFileTransport(self.scheduler_file, self.stamp if self.scheduler else None)

    @classmethod
    def for_launcher(cls, launcher: str, environ=None, **kwargs) -> SchedulerFileRunner:
        """The runner for ``launcher``'s processes, reading ``environ``."""
        return cls(launcher=launcher, environ=environ, **kwargs)

    @property
    def stamp(self) -> dict:
        """The identity that a scheduler file of this launch carries."""
        job = self.job
        return {
            "launcher": job.launcher,
            "job_id": job.job_id,
            "step_id": job.step_id,
            "restart_count": job.restart_count,
        }
