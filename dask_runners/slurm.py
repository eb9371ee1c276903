"""SLURMRunner: a Dask cluster from the tasks of one ``srun`` step."""

from __future__ import annotations

import os

from .exceptions import LauncherEnvironmentError
from .file_runner import DEFAULT_SCHEDULER_FILE, SchedulerFileRunner
from .job import detect


class SLURMRunner(SchedulerFileRunner):
    """Run a Dask cluster in the tasks of an ``srun`` step.

    Task 0 runs the scheduler, task 1 the client code, every other task a
    worker. The scheduler's address reaches the others through a file on the
    shared filesystem, named after the job and step
    (``scheduler-{job_id}.{step_id}.json``) and stamped with them and the
    restart count, so that a file from an earlier step, job or requeue is
    never trusted. It is a :class:`~dask_runners.SchedulerFileRunner` that
    reads Slurm's variables and says what to do when they are missing.

    It takes every argument of dask-jobqueue's ``SLURMRunner`` (0.9), with the
    same meaning, by keyword: moving from it is an import change.

    Parameters
    ----------
    scheduler_file : str or Path
        Where to write the scheduler file; see
        :class:`~dask_runners.SchedulerFileRunner`. A ``scheduler_file`` in
        ``scheduler_options`` (dask-jobqueue's other spelling) is used when
        this is ``None``; the runner writes and reads the file itself, so
        neither the scheduler nor the workers get that option.
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

    def __init__(
        self,
        *,
        scheduler_file=DEFAULT_SCHEDULER_FILE,
        environ=None,
        scheduler_options: dict | None = None,
        worker_options: dict | None = None,
        **kwargs,
    ):
        scheduler_options = dict(scheduler_options or {})
        worker_options = dict(worker_options or {})
        in_options = scheduler_options.pop("scheduler_file", None)
        worker_options.pop("scheduler_file", None)
        super().__init__(
            launcher="slurm",
            scheduler_file=scheduler_file or in_options or DEFAULT_SCHEDULER_FILE,
            environ=environ,
            scheduler_options=scheduler_options,
            worker_options=worker_options,
            **kwargs,
        )

    def read_job(self, environ, launcher):
        env = os.environ if environ is None else environ
        if "SLURM_JOB_ID" in env and "SLURM_STEP_ID" not in env:
            raise LauncherEnvironmentError(
                "SLURM_STEP_ID is not set: this looks like the batch script itself "
                "rather than a task of an srun step. Start the script with "
                "`srun -n 4 python script.py` inside the job."
            )
        try:
            return detect(env, launcher)
        except LauncherEnvironmentError as e:
            raise LauncherEnvironmentError(
                "SLURMRunner needs the variables srun sets (SLURM_JOB_ID, SLURM_STEP_ID, "
                "SLURM_PROCID, SLURM_NTASKS). Launch the script with "
                "`srun -n 4 python script.py` (or use MPIRunner under mpirun)."
            ) from e

    def describe_world_size(self) -> str:
        return f"SLURM_NTASKS={self.world_size}"

    def launch_hint(self, n_processes: int) -> str:
        return f"try `srun -n {n_processes} python script.py`"
