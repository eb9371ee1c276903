"""SLURMRunner: a Dask cluster from the tasks of one ``srun`` step."""

from __future__ import annotations

from .scheduler_file_runner import SchedulerFileRunner
from .transport.scheduler_file import DEFAULT_SCHEDULER_FILE


class SLURMRunner(SchedulerFileRunner):
    """Run a Dask cluster in the tasks of an ``srun`` step.

    Task 0 runs the scheduler, task 1 the client code, every other task a
    worker. The scheduler's address reaches the others through a file on the
    shared filesystem, named after the job and step
    (``scheduler-{job_id}.{step_id}.json``) and stamped with them and the
    restart count, so that a file from an earlier step, job or requeue is
    never trusted. It is a :class:`~dask_runners.SchedulerFileRunner` that
    reads Slurm's variables only; started outside a step, it says to use
    ``srun``.

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

    @classmethod
    def for_launcher(cls, launcher: str, environ=None, **kwargs) -> SLURMRunner:
        """The runner for the tasks of an ``srun`` step, reading ``environ``."""
        return cls(environ=environ, **kwargs)
