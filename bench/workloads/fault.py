"""Fault workload for bench/faults.py: ``python fault.py IMPL SCENARIO``.

IMPL is ours_slurm, jobqueue_slurm, ours_mpi or daskmpi; SCENARIO is

* ``client_killed``: once every worker is up, the client rank SIGKILLs itself;
* ``scheduler_killed``: once every worker is up, the client SIGKILLs the
  scheduler rank, then waits on a task as a running job would;
* ``stale_file``: the standard workload, started in a directory where the
  harness left ``scheduler.json`` from another job, pointing at a dead port.
  Both file-based implementations are told to use that path.
* ``stale_file_late``: the same, with the scheduler rank 2 s late to start (as
  when rank 0's node is slower than the rest), so that the other ranks find
  the stale file before the scheduler replaces it.
* ``taken_port``: the scheduler is given a port that another process of the
  node holds (``BENCH_TAKEN_PORT``, opened by the harness), as when two jobs
  on one node both ask for 8786. dask-mpi's ``initialize`` takes no port.

The client prints ``BENCH fault=<time>`` just before it injects the fault.
"""

import _bench  # noqa: F401  (first: stamps the process start)
import asyncio
import os
import signal
import sys
import time

from distributed import Client

IMPL, SCENARIO = sys.argv[1:3]
SCHEDULER_FILE = "scheduler.json"


def late(runner_class):
    """``runner_class`` whose scheduler rank starts 2 s late."""

    class Late(runner_class):
        async def before_scheduler_start(self):
            await asyncio.sleep(2)

    return Late


def make_runner():
    taken = {"port": int(os.environ["BENCH_TAKEN_PORT"])} if SCENARIO == "taken_port" else None
    if IMPL == "ours_slurm":
        from dask_runners import SLURMRunner

        if taken:
            return SLURMRunner(scheduler_options=taken)
        if SCENARIO.startswith("stale_file"):
            cls = late(SLURMRunner) if SCENARIO == "stale_file_late" else SLURMRunner
            return cls(scheduler_file=SCHEDULER_FILE)
        return SLURMRunner()
    if IMPL == "jobqueue_slurm":
        from dask_jobqueue.slurm import SLURMRunner

        cls = late(SLURMRunner) if SCENARIO == "stale_file_late" else SLURMRunner
        return cls(scheduler_file=SCHEDULER_FILE, scheduler_options=taken)
    if IMPL == "ours_mpi":
        from dask_runners import MPIRunner

        return MPIRunner(scheduler_options=taken)
    raise SystemExit(f"fault.py: unknown implementation {IMPL!r}")


def body(client: Client, n_workers: int) -> None:
    client.wait_for_workers(n_workers)
    if SCENARIO == "client_killed":
        _bench.emit(fault=time.time())
        os.kill(os.getpid(), signal.SIGKILL)
    elif SCENARIO == "scheduler_killed":
        pid = client.run_on_scheduler(os.getpid)
        _bench.emit(fault=time.time())
        os.kill(pid, signal.SIGKILL)
        client.submit(time.sleep, 60).result()
    elif SCENARIO.startswith("stale_file"):
        assert client.submit(lambda x: x + 1, 10).result() == 11
        _bench.first_result()
    else:
        raise SystemExit(f"fault.py: unknown scenario {SCENARIO!r}")


if IMPL == "daskmpi":
    from dask_mpi import initialize
    from mpi4py import MPI

    initialize()
    body(Client(), MPI.COMM_WORLD.Get_size() - 2)
else:
    with make_runner() as runner:
        with Client(runner) as client:
            body(client, runner.n_workers)
