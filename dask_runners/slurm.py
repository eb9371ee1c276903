"""SLURMRunner: a Dask cluster from the tasks of one ``srun`` step."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from .base import BaseRunner, Role
from .exceptions import LauncherEnvironmentError
from .security import JobCredentials
from .scheduler_file import SchedulerFileReader, remove_scheduler_file, write_scheduler_file

DEFAULT_SCHEDULER_FILE = "scheduler-{job_id}.{step_id}.json"


@dataclasses.dataclass(frozen=True)
class SlurmStep:
    """Where this process sits in its Slurm job step.

    Built by :meth:`from_environ` from the variables ``srun`` sets.
    """

    job_id: str
    step_id: str
    rank: int
    n_tasks: int
    restart_count: int = 0
    cpus_per_task: int | None = None

    REQUIRED = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NTASKS")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SlurmStep:
        """Read the step from ``environ`` (default ``os.environ``).

        Raises
        ------
        LauncherEnvironmentError
            If a variable ``srun`` sets is missing, with the fix.
        """
        env = os.environ if environ is None else environ
        missing = [name for name in cls.REQUIRED if name not in env]
        if missing == ["SLURM_STEP_ID"]:
            raise LauncherEnvironmentError(
                "SLURM_STEP_ID is not set: this looks like the batch script itself "
                "rather than a task of an srun step. Start the script with "
                "`srun -n 4 python script.py` inside the job."
            )
        if missing:
            raise LauncherEnvironmentError(
                f"SLURMRunner needs the variables srun sets, but {', '.join(missing)} "
                "is missing. Launch the script with `srun -n 4 python script.py` "
                "(or use MPIRunner under mpirun)."
            )
        cpus = env.get("SLURM_CPUS_PER_TASK")
        return cls(
            job_id=env["SLURM_JOB_ID"],
            step_id=env["SLURM_STEP_ID"],
            rank=int(env["SLURM_PROCID"]),
            n_tasks=int(env.get("SLURM_STEP_NUM_TASKS", env["SLURM_NTASKS"])),
            restart_count=int(env.get("SLURM_RESTART_COUNT", 0)),
            cpus_per_task=int(cpus) if cpus else None,
        )

    def stamp(self) -> dict:
        """The identity a scheduler file of this step carries."""
        return {
            "job_id": self.job_id,
            "step_id": self.step_id,
            "restart_count": self.restart_count,
        }


class SLURMRunner(BaseRunner):
    shares_credentials = True

    """Run a Dask cluster in the tasks of an ``srun`` step.

    Task 0 runs the scheduler, task 1 the client code, every other task a
    worker. The scheduler's address reaches the others through a file on the
    shared filesystem; see :mod:`dask_runners.scheduler_file`.

    Parameters
    ----------
    scheduler_file : str or Path
        Where to write the scheduler file; ``{job_id}`` and ``{step_id}`` are
        filled in. The default, ``scheduler-{job_id}.{step_id}.json`` in the
        working directory, is unique to the job step. The directory must be
        on a filesystem every node of the job sees. With ``scheduler=False``
        this names the file of a scheduler started outside the job, and any
        complete scheduler file there is trusted.
    environ : mapping, optional
        The environment to read ``SLURM_*`` variables from; default
        ``os.environ``.
    **kwargs
        Passed to :class:`~dask_runners.BaseRunner`.

    Examples
    --------
    Run with ``srun -n 4 python script.py``::

        with SLURMRunner() as runner:
            with Client(runner) as client:
                client.wait_for_workers(runner.n_workers)
    """

    def __init__(self, *, scheduler_file=DEFAULT_SCHEDULER_FILE, environ=None, **kwargs):
        super().__init__(**kwargs)
        self.step = SlurmStep.from_environ(environ)
        self.rank = self.step.rank
        self.world_size = self.step.n_tasks
        name = str(scheduler_file).format(job_id=self.step.job_id, step_id=self.step.step_id)
        self.scheduler_file = Path(name).absolute()
        # Without a scheduler of our own, the file comes from outside the job
        # and carries no stamp of this step.
        stamp = self.step.stamp() if self.scheduler else None
        self._reader = SchedulerFileReader(self.scheduler_file, stamp)
        if self.step.cpus_per_task:
            self.worker_options.setdefault("nthreads", self.step.cpus_per_task)

    async def get_role(self) -> Role:
        return self.role_for_rank(self.rank)

    async def set_scheduler_address(self, scheduler) -> None:
        services = {"dashboard": scheduler.services["dashboard"].port} if "dashboard" in scheduler.services else {}
        extra = {"id": scheduler.id, "services": services}
        if self.credentials is not None:
            extra["credentials"] = self.credentials.to_dict()
        write_scheduler_file(self.scheduler_file, scheduler.address, self.step.stamp(), extra=extra)

    async def get_scheduler_address(self) -> str:
        address = await self._reader.wait()
        self.credentials = JobCredentials.from_dict(self._reader.last.credentials)
        return address

    def abort_start(self, exc: BaseException) -> None:
        """On the scheduler rank: tell the waiting ranks why it failed."""
        if self.role is Role.scheduler:
            error = f"{type(exc).__name__}: {exc}"
            write_scheduler_file(self.scheduler_file, None, self.step.stamp(), extra={"error": error})

    async def on_scheduler_close(self) -> None:
        remove_scheduler_file(self.scheduler_file, self.step.stamp())

    def describe_world_size(self) -> str:
        return f"SLURM_NTASKS={self.world_size}"

    def launch_hint(self, n_processes: int) -> str:
        return f"try `srun -n {n_processes} python script.py`"

    def describe_discovery(self) -> str:
        return self._reader.describe()
