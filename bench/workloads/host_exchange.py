"""MPIRunner's host exchange alone, for bench/host_exchange.py: ``python host_exchange.py ROUNDS``.

Each round runs every method once; before each, every rank passes a barrier.
The methods:

* ``exchange``: :func:`dask_runners.mpi_runner.exchange_records`, the very
  all-gather an MPIRunner does at construction (non-blocking, polled);
* ``allgather``: a blocking ``comm.allgather(socket.gethostname())`` of
  pickled names, what Lightning's MPI environment does, for reference;
* ``construct``: a whole ``MPIRunner(...)`` construction (mpi4py already
  imported), exchange included;
* ``construct_without``: the same with the exchange left out.

Every rank prints one BENCH line per round and method: seconds from leaving
the barrier to being done.
"""

import _bench  # noqa: F401  (first: stamps the process start)
import socket
import sys
import time

from mpi4py import MPI

from dask_runners import MPIRunner
from dask_runners.launchers.placement import RankRecord
from dask_runners.mpi_runner import exchange_records

ROUNDS = int(sys.argv[1])
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
record = RankRecord(socket.gethostname(), None, 29500)
with_exchange = MPIRunner._exchange_hosts


def construct(exchange: bool) -> None:
    MPIRunner._exchange_hosts = with_exchange if exchange else (lambda self, job: job)
    try:
        MPIRunner(client=False, security=False)
    finally:
        MPIRunner._exchange_hosts = with_exchange


METHODS = {
    "exchange": lambda: exchange_records(comm, record, 60),
    "allgather": lambda: comm.allgather(socket.gethostname()),
    "construct": lambda: construct(True),
    "construct_without": lambda: construct(False),
}

for round_ in range(ROUNDS):
    for method, run in METHODS.items():
        comm.Barrier()
        start = time.perf_counter()
        run()
        _bench.emit(method=method, round=round_, rank=rank, size=size, seconds=f"{time.perf_counter() - start:.6f}")
