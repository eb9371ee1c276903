"""Idle workload: start a cluster, let it sit, and measure what each idle worker process spends.

``BENCH_IDLE_RUNNER`` picks the implementation (``ours_slurm``,
``jobqueue_slurm``, ``ours_mpi``, ``daskmpi``); ``BENCH_IDLE_WINDOW`` is the
idle window in seconds. After every worker has joined and ``SETTLE`` seconds
have passed, the client reads each worker process's CPU time, sleeps
through the window, reads it again and prints ``IDLE {...}``: the CPU
milliseconds per second of each worker.
"""

import json
import os
import time

import psutil
from distributed import Client

SETTLE = 2.0
WINDOW = float(os.environ.get("BENCH_IDLE_WINDOW", "10"))
RUNNER = os.environ["BENCH_IDLE_RUNNER"]


def cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def measure(client: Client, n_workers: int) -> None:
    client.wait_for_workers(n_workers)
    time.sleep(SETTLE)
    before, start = client.run(cpu_seconds), time.monotonic()
    time.sleep(WINDOW)
    after, elapsed = client.run(cpu_seconds), time.monotonic() - start
    per_worker = sorted(1000 * (after[w] - before[w]) / elapsed for w in before)
    print("IDLE " + json.dumps({"runner": RUNNER, "ms_per_s": per_worker}), flush=True)


if RUNNER == "ours_slurm":
    from dask_runners import SLURMRunner

    with SLURMRunner() as runner, Client(runner) as client:
        measure(client, runner.n_workers)
elif RUNNER == "ours_mpi":
    from dask_runners import MPIRunner

    with MPIRunner() as runner, Client(runner) as client:
        measure(client, runner.n_workers)
elif RUNNER == "jobqueue_slurm":
    from dask_jobqueue.slurm import SLURMRunner

    with SLURMRunner(scheduler_file="scheduler-{job_id}.json") as runner, Client(runner) as client:
        measure(client, runner.n_workers)
elif RUNNER == "daskmpi":
    from dask_mpi import initialize
    from mpi4py import MPI

    initialize()
    with Client() as client:
        measure(client, MPI.COMM_WORLD.Get_size() - 2)
else:
    raise SystemExit(f"BENCH_IDLE_RUNNER={RUNNER!r}: expected ours_slurm, jobqueue_slurm, ours_mpi or daskmpi")
