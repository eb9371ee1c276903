"""The least a runner must do: plain distributed over TLS, everything agreed before the job.

No runner at all. bench/run.py picks the scheduler's address and writes the
TLS credentials before it launches the job, and passes both in the
environment (``BENCH_BARE_ADDRESS``, ``BENCH_BARE_TLS``). Rank 0 starts a
``distributed.Scheduler`` on that address, rank 1 connects a ``Client`` and
runs the standard workload, every other rank builds a ``distributed.Worker``
at once and starts it as soon as the scheduler accepts connections. The
client shuts the cluster down with ``Client.shutdown``.

So this job makes no credentials, exchanges no address, and decides no role
at run time: what is left is what distributed itself needs to bring up a
TLS cluster and run one task. Under ``mpirun`` (``BENCH_BARE_MPI=1``) every
rank also calls ``MPI_Init`` after the import, as every runner that finds
its scheduler over MPI must.
"""

import _bench  # noqa: F401  (first: stamps the process start)

import asyncio
import os
from pathlib import Path

import distributed  # noqa: F401  (first, as in every workload: the import is the floor)
from distributed import Client, Scheduler, Worker
from distributed.security import Security

if os.environ.get("BENCH_BARE_MPI") == "1":
    from mpi4py import MPI  # noqa: F401  (MPI_Init)

RANK_VARS = ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
SIZE_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _first_of(names) -> int:
    return int(next(os.environ[name] for name in names if name in os.environ))


def _security() -> Security:
    tls = Path(os.environ["BENCH_BARE_TLS"])
    ca, cert, key = (str(tls / name) for name in ("ca.pem", "cert.pem", "key.pem"))
    return Security(
        tls_ca_file=ca,
        tls_scheduler_cert=cert, tls_scheduler_key=key,
        tls_worker_cert=cert, tls_worker_key=key,
        tls_client_cert=cert, tls_client_key=key,
        require_encryption=True,
    )


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    return host, int(port)


async def _listening(address: str) -> None:
    """Return once the scheduler accepts connections, tried every 2 ms.

    distributed's own retries back off up to hundreds of milliseconds; a
    runner's exchange tells each rank the moment the scheduler listens, and so
    does this probe, at no cost worth the name.
    """
    while True:
        try:
            _, writer = await asyncio.open_connection(*_host_port(address))
        except OSError:
            await asyncio.sleep(0.002)
            continue
        writer.close()
        return


async def _scheduler(address: str, security: Security) -> None:
    host, port = _host_port(address)
    scheduler = Scheduler(
        host=host, port=port, protocol="tls", security=security, dashboard_address="127.0.0.1:0"
    )
    async with scheduler:
        await scheduler.finished()


async def _worker(address: str, security: Security) -> None:
    worker = Worker(address, security=security)  # built while the scheduler starts
    await _listening(address)
    async with worker:
        await worker.finished()


async def _client(address: str, security: Security, n_workers: int) -> None:
    client = Client(address, security=security, asynchronous=True)
    await _listening(address)
    async with client:
        await client.wait_for_workers(n_workers)
        assert await client.submit(lambda x: x + 1, 10) == 11
        _bench.first_result()
        _bench.body_exit()
        await client.shutdown()


def main() -> None:
    address = os.environ["BENCH_BARE_ADDRESS"]
    rank, size = _first_of(RANK_VARS), _first_of(SIZE_VARS)
    security = _security()
    if rank == 0:
        asyncio.run(_scheduler(address, security))
    elif rank == 1:
        asyncio.run(_client(address, security, size - 2))
    else:
        asyncio.run(_worker(address, security))


main()
