"""MPIRunner's discovery alone, for bench/mpi_discovery.py: ``python mpi_discovery.py ROUNDS DELAY``.

Each round: every rank passes a barrier; rank 0 publishes an address through
MPIRunner.set_scheduler_address ``DELAY`` s later (as a scheduler that took
that long to start); every other rank waits in MPIRunner.get_scheduler_address,
the very code a real run uses. Then the same with a blocking ``comm.bcast``
(what dask-mpi does), for reference. Every rank prints one BENCH line per
round and method: the time from the barrier to having the address, and from
the publish (rank 0's stamp, gathered afterwards) to having it.
"""

import _bench  # noqa: F401  (first: stamps the process start)
import asyncio
import sys
import time
import types

from dask_runners import MPIRunner

ROUNDS, DELAY = int(sys.argv[1]), float(sys.argv[2])
runner = MPIRunner(client=False, security=False)  # the hooks only: no cluster is started
comm = runner.comm
rank = comm.Get_rank()
scheduler = types.SimpleNamespace(address="tcp://10.0.0.1:8786")


async def ours() -> tuple[float, float]:
    if rank == 0:
        await asyncio.sleep(DELAY)
        published = time.perf_counter()
        await runner.set_scheduler_address(scheduler)
        return published, published
    start = time.perf_counter()
    assert await runner.get_scheduler_address() == scheduler.address
    return start, time.perf_counter()


def blocking() -> tuple[float, float]:
    if rank == 0:
        time.sleep(DELAY)
        published = time.perf_counter()
        comm.bcast(scheduler.address, root=0)
        return published, published
    start = time.perf_counter()
    assert comm.bcast(None, root=0) == scheduler.address
    return start, time.perf_counter()


for round_ in range(ROUNDS):
    for method in ("ours", "blocking"):
        comm.Barrier()
        start, got = asyncio.run(ours()) if method == "ours" else blocking()
        published = comm.bcast(start if rank == 0 else None, root=0)  # rank 0's publish time
        if rank:
            _bench.emit(method=method, round=round_, rank=rank, size=comm.Get_size(),
                        since_start=f"{got - start:.6f}",
                        since_publish=f"{got - published:.6f}")  # one machine: one monotonic clock
