"""Soak workload: a busy cluster whose client code leaves while work is still going on.

    srun -n 8 python bench/workloads/soak.py --runner slurm [--case busy] [--tasks 20000]
    mpirun -n 8 python bench/workloads/soak.py --runner mpi --case nanny

Cases (``--case``):

``busy``
    maps ``--tasks`` small tasks and checks their sum; shuffles blocks all to
    all (every output block takes a slice of every input block, so workers
    fetch from one another); holds more data than the workers' memory limit,
    so that it spills to disk; then submits one more map and leaves the
    ``with`` block at once, with tasks running, transfers and spilled data in
    flight.
``nanny``
    the same with ``worker_class="distributed.Nanny"``.
``early``
    leaves before every worker has joined: the odd-numbered workers build a
    slow ``worker_setup`` before they join, and the client code runs one task
    without waiting for them.

The client rank prints ``SOAK key=value ...`` lines: what it checked
(``ok=1`` once every result was right) and how many tasks it ran. bench/soak.py
and tests/launchers/test_soak.py read them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import dask.config

#: Each worker's memory limit: small, so that the held data spills to disk.
MEMORY_LIMIT = 100 * 2**20
#: In the ``early`` case, odd-numbered workers join this much later.
STRAGGLE_SECONDS = 10.0
#: Blocks of the shuffle and of the held data are this large.
BLOCK_BYTES = 4 * 2**20

# The worker spills its held data above the managed-memory target (60 % of
# the limit). The process-memory thresholds are off: an idle worker's
# interpreter alone takes most of a 100 MB limit, and pausing or killing it
# for that would test distributed's memory policy, not our shutdown.
MEMORY_CONFIG = {
    "distributed.worker.memory.target": 0.6,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    "distributed.worker.memory.terminate": False,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", choices=("slurm", "mpi"), default="slurm")
    parser.add_argument("--case", choices=("busy", "nanny", "early"), default="busy")
    parser.add_argument("--tasks", type=int, default=20_000, help="small tasks in the map")
    parser.add_argument("--spill", type=float, default=1.5, help="data held, in worker memory limits per worker")
    return parser.parse_args(argv)


def report(**fields) -> None:
    """One ``SOAK`` line on stdout, in one write."""
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    sys.stdout.write(f"SOAK {text}\n")
    sys.stdout.flush()


def inc(x: int) -> int:
    return x + 1


def block(seed: int, nbytes: int):
    """A block of ``nbytes`` of float64, all equal to ``seed``."""
    import numpy as np

    return np.full(nbytes // 8, float(seed))


def take_slices(j: int, n: int, *blocks) -> float:
    """Output ``j`` of ``n`` in the shuffle: the sum of slice ``j`` of every input block."""
    return float(sum(b[j * (len(b) // n) : (j + 1) * (len(b) // n)].sum() for b in blocks))


def spilled_keys(dask_worker) -> int:
    """How many keys this worker holds on disk."""
    return len(getattr(dask_worker.data, "slow", ()))


def small_tasks(client, n: int) -> int:
    """Map ``n`` small tasks; check and return how many ran."""
    futures = client.map(inc, range(n), key=[f"inc-{i}" for i in range(n)])
    total = sum(client.gather(futures))
    assert total == n * (n + 1) // 2, total
    return n


def shuffle(client, n_blocks: int) -> int:
    """An all-to-all transfer of ``n_blocks`` blocks; check it and return the tasks it took."""
    inputs = [client.submit(block, i, BLOCK_BYTES, key=f"block-{i}") for i in range(n_blocks)]
    outputs = [client.submit(take_slices, j, n_blocks, *inputs, key=f"shuffle-{j}") for j in range(n_blocks)]
    got = sum(client.gather(outputs))
    per_block = (BLOCK_BYTES // 8) // n_blocks * n_blocks
    assert got == per_block * sum(range(n_blocks)), got
    return 2 * n_blocks


def held_data(client, n_workers: int, factor: float):
    """Blocks adding up to ``factor`` memory limits per worker, held; check that some spilled."""
    from distributed import wait

    n = int(factor * n_workers * MEMORY_LIMIT / BLOCK_BYTES)
    held = client.map(block, range(n), [BLOCK_BYTES] * n, key=[f"held-{i}" for i in range(n)])
    wait(held)
    spilled = sum(client.run(spilled_keys).values())
    assert spilled > 0, "nothing spilled"
    return held, spilled


def late_work(client, held, n_outputs: int, n_small: int) -> list:
    """Work the client code leaves behind: small tasks, and a shuffle of the held (spilled) blocks."""
    late = client.map(inc, range(n_small), key=[f"late-{i}" for i in range(n_small)])
    for j in range(n_outputs):
        late.append(client.submit(take_slices, j, n_outputs, *held, key=f"late-shuffle-{j}"))
    return late


def busy_body(client, runner, args) -> None:
    """The busy case: all the work, then leave with more of it in flight."""
    client.wait_for_workers(runner.n_workers)
    started = time.perf_counter()
    tasks = small_tasks(client, args.tasks)
    tasks += shuffle(client, 2 * runner.n_workers)
    held, spilled = held_data(client, runner.n_workers, args.spill)
    tasks += len(held)
    in_flight = late_work(client, held, 2 * runner.n_workers, args.tasks // 4)
    report(ok=1, tasks=tasks, spilled=spilled, in_flight=len(in_flight), body=f"{time.perf_counter() - started:.2f}")


def early_body(client, runner, args) -> None:
    """The early case: one task, without waiting for every worker, and leave."""
    assert client.submit(inc, 1).result() == 2
    joined = len(client.scheduler_info(n_workers=-1)["workers"])
    report(ok=1, tasks=1, joined=joined, workers=runner.n_workers)


def launcher_rank() -> int:
    """This process's rank, as the launcher set it."""
    for name in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def straggle() -> dict:
    """A worker setup that holds every other worker back from joining for a while."""
    if launcher_rank() % 2:
        time.sleep(STRAGGLE_SECONDS)
    return {}


def make_runner(args):
    from dask_runners import MPIRunner, SLURMRunner

    worker_class = "distributed.Nanny" if args.case == "nanny" else None
    setup = straggle if args.case == "early" else None
    options = {"memory_limit": MEMORY_LIMIT, "nthreads": 1}
    runner = SLURMRunner if args.runner == "slurm" else MPIRunner
    return runner(worker_class=worker_class, worker_options=options, worker_setup=setup)


def main(argv=None) -> None:
    from distributed import Client

    args = parse_args(argv)
    dask.config.set(MEMORY_CONFIG)
    body = early_body if args.case == "early" else busy_body
    with make_runner(args) as runner:
        with Client(runner) as client:
            body(client, runner, args)
            report(left=f"{time.time():.3f}")
    report(done=1)


if __name__ == "__main__":
    main()
