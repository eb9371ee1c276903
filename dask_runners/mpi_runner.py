"""MPIRunner: a Dask cluster from the ranks of an MPI job."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
import time

from . import version_report
from .base import BaseRunner
from .config import backoff_delays
from .exceptions import DiscoveryTimeoutError, LauncherEnvironmentError
from .job import JobContext
from .launchers import detect, job_context
from .launchers.placement import (
    RECORD_SIZE,
    RankRecord,
    decode_records,
    launcher_places,
    mismatches,
    remember,
    with_exchange,
)
from .mpi_init import initialize_while
from .security import JobCredentials, TLSChoice
from .signals import let_signals_end_the_process
from .start_failure import print_start_failure
from .transport import FixedAddress, Transport
from .transport.broadcast import BroadcastTransport

logger = logging.getLogger(__name__)

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

    At construction every rank of ``comm`` tells the others its host name in
    one all-gather (:func:`exchange_records`), so that :attr:`job` knows the
    hosts, this rank's node and local numbers, and ``MASTER_ADDR`` (rank 0's
    host) and ``MASTER_PORT`` (rank 0's) alike on every rank, also under
    ``mpirun`` and ``mpiexec``, which publish no hosts. What the launcher
    says and what the exchange says are merged by
    :func:`~dask_runners.launchers.placement.with_exchange`. Every rank of
    ``comm`` must therefore make its ``MPIRunner``, as it must to join the
    cluster.

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
        if comm is None:
            self._initialize_mpi()
        from mpi4py import MPI  # MPI_Finalize at the end of the exit: the hook below runs before it

        self._MPI = MPI
        atexit.register(self._abort_if_the_scheduler_was_lost)
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.world_size = self.comm.Get_size()
        self.job = self._exchange_hosts(job_context(numbering=(self.rank, self.world_size), numbered_by="mpi"))
        self.scheduler_file = None
        if scheduler_file is not None:
            from .transport.scheduler_file import scheduler_file_path

            self.scheduler_file = scheduler_file_path(scheduler_file, self.job, os.environ)
        if not self.scheduler and self.scheduler_file is None and scheduler_address is None:
            raise ValueError(
                "MPIRunner(scheduler=False) needs the existing scheduler's file: "
                "pass scheduler_file='/shared/path/scheduler.json'"
            )
        self.transport = self._transport_for(scheduler_address)

    def _initialize_mpi(self) -> None:
        """Initialize MPI while a thread does the work this rank can do before it knows its peers.

        ``MPI_Init`` returns on every rank once the last one has called it,
        and mostly waits (:mod:`dask_runners.mpi_init`). Meanwhile every rank
        computes the version report that distributed sends at its first
        connection (cached for the process), and the rank that the
        launcher's environment names as the scheduler's makes the job's
        credentials and builds its TLS contexts. If that work fails, the
        whole job is aborted.
        """
        try:
            self._made_credentials = initialize_while(self._before_peers)
        except Exception as e:
            MPI = sys.modules.get("mpi4py.MPI")
            if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():  # the others wait for this rank
                self.comm = MPI.COMM_WORLD
                self.abort_start(e)
            raise

    def _before_peers(self) -> JobCredentials | None:
        """The version report; on the scheduler's rank (by the launcher), also the credentials and TLS contexts."""
        version_report.make()
        if not self.scheduler or not TLSChoice.decide(self._security_option, True).per_job:
            return None
        try:
            rank = detect().rank
        except LauncherEnvironmentError:  # started without a launcher: MPI says the rank later
            return None
        if rank != self.scheduler_rank:
            return None
        credentials = JobCredentials.generate()
        credentials.security().build_contexts("scheduler")
        return credentials

    def _transport_for(self, scheduler_address: str | None) -> Transport:
        if self.scheduler:
            file = None if self.scheduler_file is None else self._file_transport(self.stamp)
            return BroadcastTransport(self.comm, self.scheduler_rank, also_to=file)
        if self.scheduler_file is not None:  # an existing cluster's file; any complete one
            return self._file_transport(None)
        return FixedAddress(scheduler_address)

    def _file_transport(self, stamp) -> Transport:
        from .transport.scheduler_file import SchedulerFileTransport  # only a job that asks for a file loads it

        return SchedulerFileTransport(self.scheduler_file, stamp)

    def _exchange_hosts(self, job: JobContext) -> JobContext:
        """``job`` completed with the host of every rank of :attr:`comm`."""
        mine = RankRecord(socket.gethostname(), job.local_rank, job.master_port)
        try:
            records = exchange_records(self.comm, mine, self.timeouts.discovery)
        except DiscoveryTimeoutError as e:
            self.abort_start(e)
            raise
        MPI = self._MPI
        if MPI.Comm.Compare(self.comm, MPI.COMM_WORLD) in (MPI.IDENT, MPI.CONGRUENT):
            remember(self.rank, records)  # for current_job()
        differ = mismatches(records)
        if differ and self.rank == 0 and not launcher_places(job):
            rank, said, by_name = differ[0]
            logger.warning(
                "MPI rank 0: the host names do not tell the nodes apart as %s does (rank %d: local rank %d by "
                "the launcher, %d by host name); runner.job keeps the launcher's numbers and takes no hosts "
                "from the exchange, so set MASTER_ADDR for torch.distributed", job.launcher, rank, said, by_name,
            )
        return with_exchange(job, records, self.rank, os.environ)

    @property
    def stamp(self) -> dict:
        """The identity written into :attr:`scheduler_file`."""
        return {"launcher": self.job.launcher, "job_id": self.job.job_id, "step_id": self.job.step_id}

    def abort_start(self, exc: BaseException) -> None:
        """End the whole MPI job: this rank failed before the cluster was up.

        The other ranks may be waiting in the broadcast or for this rank to
        join; ``MPI_Abort`` ends them all now instead of at their deadlines.
        The error is printed first, since the abort ends this process too
        (by the rule of :mod:`dask_runners.start_failure`: its traceback on
        the scheduler rank, one line elsewhere), and the launcher is given
        :data:`ABORT_GRACE` to forward it: MPICH's Hydra kills every rank on
        the abort and drops output it has not yet read from the rank's pipe
        (about one run in eight, here).
        """
        print_start_failure(exc, self.rank, self.world_size, self.layout.scheduler_rank)
        sys.stderr.flush()
        time.sleep(ABORT_GRACE)
        self.comm.Abort(1)

    def _abort_if_the_scheduler_was_lost(self) -> None:
        """On the client rank, at exit: abort rather than finalize with a dead scheduler rank."""
        if self.state.scheduler_lost and not self._MPI.Is_finalized():
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(1)

    def exit_process(self, exit_code: int):
        """Finalize MPI, then leave as every runner does.

        MPI launchers treat a rank that exits without finalizing as failed,
        so a service rank finalizes before it goes. ``MPI_Finalize`` waits
        for every rank, so when the client rank's or the scheduler rank's
        process died (:attr:`client_lost`, or the scheduler was lost) the job
        is aborted instead: the launcher would otherwise end it only after
        noticing the death by itself, or never, if it leaves that to the ranks.
        """
        let_signals_end_the_process()  # a launcher's SIGTERM must work in C code too
        if self.client_lost or self.state.scheduler_lost:
            sys.stdout.flush()
            sys.stderr.flush()
            self.comm.Abort(exit_code or 1)
        if not self._MPI.Is_finalized():
            self._MPI.Finalize()
        super().exit_process(exit_code)


def exchange_records(comm, record: RankRecord, timeout: float) -> list[RankRecord]:
    """Every rank's ``record``, in rank order: one all-gather of fixed-size records over ``comm``.

    The all-gather is non-blocking and polled with short sleeps, so that
    ranks that arrive early wait without spinning on a CPU the slower ranks
    still need to start, and give up at ``timeout`` seconds. An MPIRunner
    makes it right after ``MPI_Init`` (when the runner is what first imports
    mpi4py), which already waits for every rank under Open MPI, MPICH and
    ``srun``: it adds the collective's own time, and no wait for stragglers.

    Raises
    ------
    DiscoveryTimeoutError
        If some rank of ``comm`` did not join within ``timeout``.
    """
    from mpi4py import MPI

    mine = bytearray(record.encode())
    gathered = bytearray(RECORD_SIZE * comm.Get_size())
    request = comm.Iallgather([mine, MPI.BYTE], [gathered, MPI.BYTE])
    deadline = time.monotonic() + timeout
    delays = backoff_delays(first=0.0002, factor=1.5, cap=0.005)
    while not request.Test():
        if time.monotonic() > deadline:
            raise DiscoveryTimeoutError(
                f"MPI rank {comm.Get_rank()}: timed out after {timeout:.0f} s waiting for every rank of the "
                f"communicator ({comm.Get_size()} ranks) to make its MPIRunner and exchange host names. Every "
                "rank must make one; if the ranks are slow to start, raise the deadline with "
                "timeouts={'discovery': ...} or the dask config key runners.timeouts.discovery."
            )
        time.sleep(next(delays))
    return decode_records(bytes(gathered))
