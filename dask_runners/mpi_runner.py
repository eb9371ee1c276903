"""MPIRunner: a Dask cluster from the ranks of an MPI job."""

from __future__ import annotations

import os
import sys
import time
import traceback

from .base import BaseRunner
from .launchers import job_context
from .signals import let_signals_end_the_process
from .transport import FixedAddress, Transport
from .transport.broadcast import BroadcastTransport
from .transport.scheduler_file import SchedulerFileTransport, scheduler_file_path

#: Seconds a rank that aborts the job waits after printing its error, for the launcher to forward it.
ABORT_GRACE = 0.2


class MPIRunner(BaseRunner):
    """Run a Dask cluster in the ranks of an MPI job.

    Rank 0 runs the scheduler, rank 1 the client code, every other rank a
    worker (``scheduler_rank`` and ``client_rank`` choose others). The
    scheduler's address reaches the others by a broadcast over ``comm``,
    with the job's TLS credentials
    (:class:`~dask_runners.transport.broadcast.BroadcastTransport`). mpi4py
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

    def __init__(self, *, comm=None, scheduler_file=None, scheduler_address=None, **kwargs):
        super().__init__(**kwargs)
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self.job = job_context(numbering=(self.rank, self.world_size), numbered_by="mpi")
        self.scheduler_file = None
        if scheduler_file is not None:
            self.scheduler_file = scheduler_file_path(scheduler_file, self.job, os.environ)
        if not self.scheduler and self.scheduler_file is None and scheduler_address is None:
            raise ValueError(
                "MPIRunner(scheduler=False) needs the existing scheduler's file: "
                "pass scheduler_file='/shared/path/scheduler.json'"
            )
        self.transport = self._transport_for(scheduler_address)

    def _transport_for(self, scheduler_address: str | None) -> Transport:
        if self.scheduler:
            file = None if self.scheduler_file is None else SchedulerFileTransport(self.scheduler_file, self.stamp)
            return BroadcastTransport(self.comm, self.scheduler_rank, also_to=file)
        if self.scheduler_file is not None:  # an existing cluster's file; any complete one
            return SchedulerFileTransport(self.scheduler_file, None)
        return FixedAddress(scheduler_address)

    @property
    def stamp(self) -> dict:
        """The identity written into :attr:`scheduler_file`."""
        return {"launcher": self.job.launcher, "job_id": self.job.job_id, "step_id": self.job.step_id}

    def abort_start(self, exc: BaseException) -> None:
        """End the whole MPI job: this rank failed before the cluster was up.

        The other ranks may be waiting in the broadcast or for this rank to
        join; ``MPI_Abort`` ends them all now instead of at their deadlines.
        The error is printed first, since the abort ends this process too,
        and the launcher is given :data:`ABORT_GRACE` to forward it: MPICH's
        Hydra kills every rank on the abort and drops output it has not yet
        read from the rank's pipe (about one run in eight, here).
        """
        traceback.print_exception(exc)
        sys.stderr.flush()
        time.sleep(ABORT_GRACE)
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
