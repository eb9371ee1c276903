"""SchedulerFileRunner: a cluster from any launcher that numbers its processes.

The scheduler's address (and the job's TLS credentials) cross a shared
filesystem in a scheduler file; see :mod:`dask_runners.scheduler_file`. Rank
and world size come from the launcher's environment through
:class:`~dask_runners.job.JobContext`, so this one runner serves Slurm, PBS,
LSF, Flux, torchrun and our own local launcher alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import BaseRunner, Role
from .exceptions import LauncherEnvironmentError
from .job import detect
from .scheduler_file import SchedulerFileReader, publish_scheduler, remove_scheduler_file, write_scheduler_file
from .security import JobCredentials

DEFAULT_SCHEDULER_FILE = "scheduler-{job_id}.{step_id}.json"
#: Set by our local launcher (:mod:`dask_runners.local`): the run's own file.
SCHEDULER_FILE_VAR = "DASK_RUNNERS_SCHEDULER_FILE"


class SchedulerFileRunner(BaseRunner):
    """Run a Dask cluster in the processes of any launcher, through a file.

    Rank 0 runs the scheduler, rank 1 the client code, every other rank a
    worker.

    Parameters
    ----------
    launcher : str, optional
        The launcher whose variables to read (a name from
        :data:`dask_runners.job.PARSERS`); detected by default.
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
    """

    shares_credentials = True

    def __init__(self, *, launcher=None, scheduler_file=DEFAULT_SCHEDULER_FILE, environ=None, **kwargs):
        super().__init__(**kwargs)
        self._environ = os.environ if environ is None else environ
        self.job = self.read_job(environ, launcher)
        if self.job.rank is None or self.job.world_size is None:
            raise LauncherEnvironmentError(
                f"{self.job.launcher} gives this process no rank and world size "
                f"({self.job.describe()}); start the script through the launcher, "
                "one process per rank"
            )
        self.rank, self.world_size = self.job.rank, self.job.world_size
        self.scheduler_file = self._scheduler_file_path(scheduler_file)
        # Without a scheduler of our own, the file comes from outside the job
        # and carries no stamp of this launch.
        self._reader = SchedulerFileReader(self.scheduler_file, self.stamp if self.scheduler else None)
        if self.job.cpus_per_task:
            self.worker_options.setdefault("nthreads", self.job.cpus_per_task)

    def read_job(self, environ, launcher):
        """Build :attr:`job` from the environment; subclasses refine the errors."""
        return detect(environ, launcher)

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

    def _scheduler_file_path(self, template) -> Path:
        template = str(template)
        if template == DEFAULT_SCHEDULER_FILE and self._environ.get(SCHEDULER_FILE_VAR):
            # our own local launcher gives each run a private file
            template = self._environ[SCHEDULER_FILE_VAR]
        elif template == DEFAULT_SCHEDULER_FILE:
            if self.job.job_id is None:
                raise LauncherEnvironmentError(
                    f"{self.job.launcher} gives no job id to name the scheduler file after; "
                    "pass scheduler_file='/shared/path/scheduler.json' unique to this job"
                )
            if self.job.step_id is None:
                template = "scheduler-{job_id}.json"
        name = template.format(job_id=self.job.job_id, step_id=self.job.step_id)
        return Path(name).absolute()

    async def get_role(self) -> Role:
        return self.role_for_rank(self.rank)

    async def set_scheduler_address(self, scheduler) -> None:
        publish_scheduler(self.scheduler_file, scheduler, self.stamp, self.credentials)

    async def get_scheduler_address(self) -> str:
        address = await self._reader.wait()
        self.credentials = JobCredentials.from_dict(self._reader.last.credentials)
        return address

    def joins_existing_control(self) -> bool:
        return self._reader.last.ours

    def abort_start(self, exc: BaseException) -> None:
        """On the scheduler rank: tell the waiting ranks why it failed."""
        if self.role is Role.scheduler:
            error = f"{type(exc).__name__}: {exc}"
            write_scheduler_file(self.scheduler_file, None, self.stamp, extra={"error": error})

    async def on_scheduler_close(self) -> None:
        remove_scheduler_file(self.scheduler_file, self.stamp)

    def describe_world_size(self) -> str:
        return f"the {self.job.launcher} job has {self.world_size} processes"

    def describe_discovery(self) -> str:
        return self._reader.describe()
