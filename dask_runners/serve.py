"""Batch clusters: a scheduler and workers with no client rank, for clients outside the job.

``dask-runner serve`` (under ``srun``, ``mpirun``, ...) runs :func:`serve` on
every rank: one scheduler, every other rank a worker. The scheduler rank
writes a scheduler file with the job's TLS credentials, so a notebook or a
process on the login node connects with :func:`dask_runners.connect`.

The cluster stops when told, and then every rank exits 0 and the file is
removed:

* ``client.shutdown()`` from a connected client;
* ``dask-runner stop --scheduler-file F`` (:func:`stop`);
* ``SIGTERM`` or ``SIGINT`` (``scancel``, ``kill`` of the launcher), which in
  this mode are requests, not failures.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import NoReturn

from .config import backoff_delays, user_path
from .exceptions import ClusterNotFoundError
from .flags import runner_options_from_flags
from .registry import Runner
from .transport.scheduler_file import DEFAULT_SCHEDULER_FILE, connect, look_once

#: In a batch cluster a signal is the requested way to stop: exit 0.
STOP_SIGNALS = {signal.SIGTERM: 0, signal.SIGINT: 0}


class _AnnounceWhereToConnect:
    """Say on the scheduler rank where the cluster is and how to reach it."""

    runner = None

    def on_scheduler_start(self) -> None:
        runner = self.runner
        path = runner.scheduler_file
        print(
            f"dask-runner serve: scheduler at {runner.scheduler_address}, "
            f"{runner.n_workers} worker rank(s); scheduler file {path}\n"
            f"  connect: dask_runners.connect({str(path)!r})\n"
            f"  stop:    dask-runner stop --scheduler-file {path}",
            flush=True,
        )


def serve(launcher: str | None = None, *, scheduler_file=None, **options) -> NoReturn:
    """Serve a cluster with no client rank until it is told to stop; never returns.

    Parameters
    ----------
    launcher : str, optional
        Use this launcher instead of detecting one.
    scheduler_file : str or Path, optional
        Where the scheduler rank writes the scheduler file (``{job_id}`` and
        ``{step_id}`` are filled in); by default
        ``scheduler-{job_id}.{step_id}.json`` in the working directory. With
        ``scheduler=False``: the existing cluster's file.
    **options
        dask-mpi's options (see
        :func:`dask_runners.flags.runner_options_from_flags`) and the runner's.
    """
    announce = _AnnounceWhereToConnect()
    runner = Runner(
        launcher,
        client=False,
        scheduler_file=scheduler_file or DEFAULT_SCHEDULER_FILE,
        signal_exit_codes=STOP_SIGNALS,
        callbacks=[announce],
        **runner_options_from_flags(**options),
    )
    announce.runner = runner
    with runner:  # every rank is a service rank: it leaves from inside
        pass
    sys.exit(runner.exit_code or 0)  # only if a runner keeps its process


def stop(scheduler_file, timeout: float = 30.0) -> None:
    """Shut down the cluster whose scheduler file is ``scheduler_file``.

    Connects with the job's credentials, asks the scheduler to shut the
    cluster down, and waits until the scheduler rank has removed its file.

    Raises
    ------
    ClusterNotFoundError
        If the file is missing or holds no address, or nothing answers at
        the address it holds (a stale file) within ``timeout`` seconds.
    TimeoutError
        If the file is still there ``timeout`` seconds after the shutdown.
    """
    path = user_path(scheduler_file).absolute()
    state = look_once(path, None)
    if state.kind == "missing":
        raise ClusterNotFoundError(
            f"no scheduler file at {path}: the cluster has already stopped (its file "
            "is removed at the end), has not started yet, or the path is wrong"
        )
    if state.kind != "ready":
        raise ClusterNotFoundError(f"{path} holds no scheduler address (found a {state.kind} file)")
    try:
        client = connect(path, timeout=timeout)
    except (OSError, TimeoutError) as e:
        raise ClusterNotFoundError(
            f"no scheduler answered at {state.contact.address} (from {path}) within {timeout:.0f} s: "
            "the file is stale, left by a job that was killed; remove it"
        ) from e
    try:
        client.shutdown()
    finally:
        client.close()
    deadline = time.monotonic() + timeout
    for delay in backoff_delays(cap=0.2):
        if not path.exists():
            return
        if time.monotonic() + delay > deadline:
            raise TimeoutError(
                f"the cluster at {state.contact.address} was told to shut down, but its scheduler "
                f"file {path} was still there after {timeout:.0f} s"
            )
        time.sleep(delay)
