"""MPIRunner: a Dask cluster from the ranks of an MPI job."""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path

from .base import BaseRunner, Role, let_signals_end_the_process
from .config import backoff_delays
from .exceptions import LauncherEnvironmentError
from .job import JobContext, detect
from .scheduler_file import SchedulerFileReader, publish_scheduler, remove_scheduler_file
from .security import JobCredentials


def _job_for(rank: int, world_size: int) -> JobContext:
    """The launcher's view of this rank, if it agrees with the communicator's."""
    try:
        job = detect()
    except LauncherEnvironmentError:
        job = None
    if job is None or (job.rank, job.world_size) != (rank, world_size):
        job = JobContext("mpi", rank=rank, world_size=world_size)
    return job


class MPIRunner(BaseRunner):
    """Run a Dask cluster in the ranks of an MPI job.

    Rank 0 runs the scheduler, rank 1 the client code, every other rank a
    worker (``scheduler_rank`` and ``client_rank`` choose others). The
    scheduler's address reaches the others by a broadcast over ``comm``,
    with the job's TLS credentials. The broadcast is non-blocking and polled
    with backoff, so the event loop keeps running while a rank waits. mpi4py
    is imported only when an ``MPIRunner`` is made.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The communicator whose ranks form the cluster; ``MPI.COMM_WORLD`` by
        default. A sub-communicator (``comm.Split``) leaves the other ranks
        free for MPI work of their own.
    scheduler_file : str or Path, optional
        Also write the scheduler's address and the job's credentials to this
        file (owner-only, removed at the end), for clients outside the job:
        :func:`dask_runners.connect`. ``{job_id}`` and ``{step_id}`` are
        filled in. With ``scheduler=False``, the file of the existing
        scheduler that the workers join.
    scheduler_address : str, optional
        With ``scheduler=False`` and no ``scheduler_file``: the existing
        scheduler's address (give ``security=`` if it requires TLS).
    **kwargs
        Passed to :class:`~dask_runners.BaseRunner`.

    Examples
    --------
    Run with ``mpirun -n 4 python script.py``::

        with MPIRunner() as runner:
            with Client(runner) as client:
                client.wait_for_workers(runner.n_workers)
    """

    shares_credentials = True

    def __init__(self, *, comm=None, scheduler_file=None, scheduler_address=None, **kwargs):
        super().__init__(**kwargs)
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self.job = _job_for(self.rank, self.world_size)
        self.scheduler_file = None
        if scheduler_file is not None:
            name = str(scheduler_file).format(job_id=self.job.job_id, step_id=self.job.step_id)
            self.scheduler_file = Path(name).absolute()
        self._join_address = scheduler_address
        self._reader: SchedulerFileReader | None = None  # with scheduler=False and a file
        if not self.scheduler and self.scheduler_file is None and scheduler_address is None:
            raise ValueError(
                "MPIRunner(scheduler=False) needs the existing scheduler's file: "
                "pass scheduler_file='/shared/path/scheduler.json'"
            )

    @property
    def stamp(self) -> dict:
        """The identity written into :attr:`scheduler_file`."""
        return {"launcher": self.job.launcher, "job_id": self.job.job_id, "step_id": self.job.step_id}

    async def get_role(self) -> Role:
        return self.role_for_rank(self.rank)

    async def set_scheduler_address(self, scheduler) -> None:
        if self.scheduler_file is not None:
            publish_scheduler(self.scheduler_file, scheduler, self.stamp, self.credentials)
        credentials = self.credentials.to_dict() if self.credentials else None
        contact = {"address": scheduler.address, "credentials": credentials}
        await self._broadcast(json.dumps(contact).encode())

    async def get_scheduler_address(self) -> str:
        if not self.scheduler and self.scheduler_file is None:
            return self._join_address
        if not self.scheduler:  # an existing cluster's file; any complete one
            self._reader = SchedulerFileReader(self.scheduler_file, None)
            address = await self._reader.wait()
            self.credentials = JobCredentials.from_dict(self._reader.last.credentials)
            return address
        contact = json.loads(await self._broadcast(b""))
        self.credentials = JobCredentials.from_dict(contact["credentials"])
        return contact["address"]

    def joins_existing_control(self) -> bool:
        return self._reader is not None and self._reader.last.ours

    async def on_scheduler_close(self) -> None:
        if self.scheduler_file is not None:
            remove_scheduler_file(self.scheduler_file, self.stamp)

    async def _broadcast(self, payload: bytes) -> bytes:
        """Broadcast ``payload`` from the scheduler rank, length first."""
        MPI = self._MPI
        length = bytearray(len(payload).to_bytes(8, "little"))
        root = self.scheduler_rank
        await self._wait(self.comm.Ibcast([length, MPI.BYTE], root=root))
        size = int.from_bytes(length, "little")
        buffer = bytearray(payload) if self.rank == root else bytearray(size)
        await self._wait(self.comm.Ibcast([buffer, MPI.BYTE], root=root))
        return bytes(buffer)

    @staticmethod
    async def _wait(request) -> None:
        """Poll a non-blocking MPI request without blocking the event loop."""
        delays = backoff_delays(first=0.001, factor=1.5, cap=0.01)
        while not request.Test():
            await asyncio.sleep(next(delays))

    def describe_world_size(self) -> str:
        return f"the MPI world has {self.world_size} ranks"

    def launch_hint(self, n_processes: int) -> str:
        return f"try `mpirun -n {n_processes} python script.py`"

    def describe_discovery(self) -> str:
        if not self.scheduler:
            return f"the scheduler at {self.scheduler_file or self._join_address}"
        return f"the scheduler address broadcast from MPI rank {self.scheduler_rank}"

    def abort_start(self, exc: BaseException) -> None:
        """End the whole MPI job: this rank failed before the cluster was up.

        The other ranks may be waiting in the broadcast or for this rank to
        join; ``MPI_Abort`` ends them all now instead of at their deadlines.
        The error is printed first, since the abort ends this process too.
        """
        traceback.print_exception(exc)
        sys.stderr.flush()
        self.comm.Abort(1)

    def exit_process(self, exit_code: int):
        """Finalize MPI, then leave as every runner does.

        MPI launchers treat a rank that exits without finalizing as failed,
        so a service rank finalizes before it goes. ``MPI_Finalize`` waits
        for every rank, so when the client rank's process died
        (:attr:`client_lost`) the job is aborted instead: the launcher would
        otherwise end it only after noticing the death by itself.
        """
        let_signals_end_the_process()  # a launcher's SIGTERM must work in C code too
        if self.client_lost:
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(exit_code or 1)
        if not self._MPI.Is_finalized():
            self._MPI.Finalize()
        super().exit_process(exit_code)


# dask-mpi's functions, built on this runner (``from dask_runners.mpi import initialize``).
from .mpi_compat import execute, initialize, send_close_signal  # noqa: E402

__all__ = ["MPIRunner", "execute", "initialize", "send_close_signal"]
