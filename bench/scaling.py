#!/usr/bin/env python
"""How our own cost grows with the number of ranks, apart from Dask's.

    python bench/scaling.py [--sizes 16 64 256 512] [--repeat 3] [--out bench/results] [--profile 256]

Three measurements, all in this one process:

1. **In-process worlds** (:mod:`dask_runners.inprocess`): N runners on one
   event loop, timed phase by phase through the runner's hooks: role
   selection, scheduler start, discovery (address published → every rank has
   it), joining (address known → every worker running, as the client's
   ``wait_for_workers`` sees it), and shutdown (the body ends → every rank has
   left). Against it, the **bare** baseline: a ``distributed.Scheduler`` and
   N - 2 ``distributed.Worker`` started and closed directly, the same
   options, no runner. What the runner adds is the difference.
2. **Profile** (``--profile N``): one world of N under cProfile; the CPU time
   spent in ``dask_runners`` functions themselves (their ``tottime``)
   against the whole.
3. **Role selection from a real launcher's environment**: ``detect()`` on a
   Slurm environment of 10 000 tasks over 2 500 nodes, as each rank does once.

The workers' own periodic work (the profiler's stack sampling every 10 ms,
the system and memory monitors) is switched off in every kind: a real worker
rank does it once in its own process, but N workers in one process would
spend the CPU on it N times over. Both worlds run on plain TCP (``security=False``); a third kind, ``ours+tls``,
runs ours with the job's TLS as a runner does by default. All use one thread per worker, no
dashboard, ``distributed`` logging at WARNING; the runs of the two kinds
alternate. Writes ``scaling.csv`` and ``scaling.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import gc
import logging
import os
import pstats
import resource
import shutil
import statistics
import sys
import time
import timeit
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

import dask.config  # noqa: E402
from distributed import Client, Scheduler, Worker  # noqa: E402

from dask_runners.inprocess import InProcessRunner, InProcessWorld, RankExited  # noqa: E402
from dask_runners.launchers import detect  # noqa: E402
from dask_runners.roles import Role  # noqa: E402
from dask_runners.transport import Transport  # noqa: E402

SCHEDULER_OPTIONS = {"dashboard": False, "dashboard_address": ":0"}  # no probe of port 8787
# No memory monitor: with hundreds of workers in one process, their periodic
# callbacks (and the profiler's, switched off in main) would take the CPU.
WORKER_OPTIONS = {"nthreads": 1, "memory_limit": 0}
# Periodic work that every worker does by itself, N times over in one process;
# a real worker rank does it once, in its own process.
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,  # a stack sample every 10 ms per worker
    "distributed.admin.system-monitor.interval": "1h",  # psutil every 500 ms per worker
}
RUNNER_OPTIONS = {
    "scheduler_options": SCHEDULER_OPTIONS,
    "worker_options": WORKER_OPTIONS,
    "security": False,
    "timeouts": {"shutdown": 120, "discovery": 600, "workers": 600},
}


class StampedDiscovery(Transport):
    """The world's transport, with a stamp when a rank has discovered the contact."""

    def __init__(self, inner, stamp):
        self.inner, self.stamp = inner, stamp

    async def publish(self, contact, scheduler):
        await self.inner.publish(contact, scheduler)

    async def discover(self):
        contact = await self.inner.discover()
        self.stamp()
        return contact


class TimedRunner(InProcessRunner):
    """An in-process rank that writes down when each phase ends."""

    def __init__(self, world, rank, stamps, **kwargs):
        super().__init__(world, rank, **kwargs)
        self.stamps = stamps
        self.transport = StampedDiscovery(self.transport, lambda: self._stamp("address"))

    def _stamp(self, what):
        self.stamps.setdefault(what, {})[self.rank] = time.perf_counter()

    async def get_role(self) -> Role:
        start = time.perf_counter()
        role = await super().get_role()
        self.stamps.setdefault("role_cost", {})[self.rank] = time.perf_counter() - start
        self._stamp("role")
        return role

    async def before_scheduler_start(self):
        self._stamp("scheduler_starting")

    async def set_scheduler_address(self, scheduler):
        await super().set_scheduler_address(scheduler)
        self._stamp("published")

    async def on_worker_start(self, worker):
        self._stamp("worker_running")

    def exit_process(self, exit_code):
        self._stamp("left")
        super().exit_process(exit_code)


async def one_world(n: int, tls: bool = False) -> dict:
    """Run a world of ``n`` in-process ranks; return the phases in seconds."""
    options = {**RUNNER_OPTIONS, "security": True} if tls else RUNNER_OPTIONS
    world = InProcessWorld(n)
    stamps: dict = {}
    marks = {}

    async def body(runner):
        async with Client(runner, asynchronous=True) as client:
            await client.wait_for_workers(runner.n_workers)
            marks["all_running"] = time.perf_counter()
            assert await client.submit(lambda x: x + 1, 10) == 11
        marks["body_end"] = time.perf_counter()

    async def rank_main(rank):
        try:
            async with TimedRunner(world, rank, stamps, **options) as runner:
                await body(runner)
        except RankExited:
            pass
        marks.setdefault("ranks_done", {})[rank] = time.perf_counter()

    marks["start"] = time.perf_counter()
    await asyncio.gather(*(rank_main(r) for r in range(n)))
    end = max(marks["ranks_done"].values())
    published = stamps["published"][0]
    address = list(stamps["address"].values())
    return {
        "role": max(stamps["role"].values()) - marks["start"],
        "role_cpu_per_rank": statistics.mean(stamps["role_cost"].values()),
        "scheduler_start": published - stamps["scheduler_starting"][0],
        "discovery": max(address) - published,
        "join": marks["all_running"] - max(address),
        "first_result": marks["body_end"] - marks["start"],
        "shutdown": end - marks["body_end"],
        "total": end - marks["start"],
    }


async def tls_world(n: int) -> dict:
    """``one_world`` with the job's TLS, as a runner has by default."""
    return await one_world(n, tls=True)


async def bare_world(n: int) -> dict:
    """The same cluster without a runner: a Scheduler and n - 2 Workers, started and closed."""
    start = time.perf_counter()
    scheduler = await Scheduler(**SCHEDULER_OPTIONS)
    published = time.perf_counter()
    workers = [Worker(scheduler.address, name=i, **WORKER_OPTIONS) for i in range(2, n)]
    await asyncio.gather(*workers)
    async with Client(scheduler.address, asynchronous=True) as client:
        await client.wait_for_workers(n - 2)
        all_running = time.perf_counter()
        assert await client.submit(lambda x: x + 1, 10) == 11
    body_end = time.perf_counter()
    await asyncio.gather(*(w.close(executor_wait=False) for w in workers))
    await scheduler.close()
    end = time.perf_counter()
    return {
        "role": 0.0,
        "role_cpu_per_rank": 0.0,
        "scheduler_start": published - start,
        "discovery": 0.0,
        "join": all_running - published,
        "first_result": body_end - start,
        "shutdown": end - body_end,
        "total": end - start,
    }


def run_fresh(coroutine_function, n: int) -> dict:
    """One world on a fresh event loop, garbage collected before and after."""
    gc.collect()
    result = asyncio.run(coroutine_function(n))
    gc.collect()
    return result


def profile_world(n: int) -> dict:
    """CPU seconds in dask_runners' own functions, and in everything, for one world of ``n``."""
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(one_world(n))
    profiler.disable()
    stats = pstats.Stats(profiler)
    package = str(BENCH_DIR.parent / "dask_runners")
    ours, total = 0.0, 0.0
    top = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():
        total += tottime
        if filename.startswith(package):
            ours += tottime
            top.append((tottime, calls, f"{Path(filename).name}:{line}({name})"))
    top.sort(reverse=True)
    return {"ours": ours, "total": total, "top": top[:8]}


def slurm_environment(tasks: int, nodes: int, rank: int) -> dict:
    per_node = tasks // nodes
    return {
        "SLURM_JOB_ID": "123456", "SLURM_STEP_ID": "0", "SLURM_PROCID": str(rank),
        "SLURM_NTASKS": str(tasks), "SLURM_STEP_NUM_TASKS": str(tasks),
        "SLURM_LOCALID": str(rank % per_node), "SLURM_NODEID": str(rank // per_node),
        "SLURM_JOB_NODELIST": f"nid[00001-{nodes:05d}]", "SLURM_STEP_NODELIST": f"nid[00001-{nodes:05d}]",
        "SLURM_STEP_NUM_NODES": str(nodes), "SLURM_TASKS_PER_NODE": f"{per_node}(x{nodes})",
        "SLURM_STEP_TASKS_PER_NODE": f"{per_node}(x{nodes})",
    }


def role_selection_cost(tasks: int = 10_000, nodes: int = 2_500) -> float:
    """Seconds for one rank to read its place in a job of ``tasks`` from the environment."""
    env = slurm_environment(tasks, nodes, rank=tasks - 1)
    job = detect(env)
    assert (job.rank, job.world_size, len(job.hosts)) == (tasks - 1, tasks, nodes), job
    number, total = timeit.Timer(lambda: detect(env)).autorange()
    return total / number


KINDS = (("ours", one_world), ("bare", bare_world), ("ours+tls", tls_world))
FDS_JOB = """\
import os
from distributed import Client
from dask_runners import SLURMRunner

def open_fds():
    return len(os.listdir("/proc/self/fd"))

with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("FDS", runner.n_workers, client.run_on_scheduler(open_fds), flush=True)
"""


def scheduler_fds(ranks: int) -> int:
    """Open file descriptors of the scheduler rank of ``srun -n ranks`` once every worker is in."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dask-runners-fds-") as tmp:
        job = Path(tmp) / "job.py"
        job.write_text(FDS_JOB)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR.parent), os.environ.get("PYTHONPATH")]))}
        out = subprocess.run(["srun", "-n", str(ranks), sys.executable, str(job)], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=300, check=True).stdout
    return int(out.split("FDS", 1)[1].split()[1])


PHASES = ("role", "scheduler_start", "discovery", "join", "first_result", "shutdown", "total")


def summary(rows: list[dict], profile: dict | None, role_cost: float, fds, args) -> str:
    lines = [
        "# Scaling of in-process worlds",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f} at the end; {args.repeat} repeats, medians in seconds",
        "- ours: N InProcessRunners on one loop, plain TCP; bare: Scheduler + N-2 Workers, no runner; "
        "ours+tls: ours with the job's TLS (the default)",
        "",
        "| N | kind | " + " | ".join(PHASES) + " | role CPU per rank (µs) |",
        "|---:|---|" + "---:|" * (len(PHASES) + 1),
    ]
    for n in args.sizes:
        for kind, _ in KINDS:
            group = [r for r in rows if r["n"] == n and r["kind"] == kind]
            if not group:
                continue
            med = {p: statistics.median(r[p] for r in group) for p in PHASES + ("role_cpu_per_rank",)}
            lines.append(f"| {n} | {kind} | " + " | ".join(f"{med[p]:.3f}" for p in PHASES)
                         + f" | {med['role_cpu_per_rank'] * 1e6:.1f} |")
    lines += ["", "Ours over bare (ratio of medians):", "",
              "| N | first_result | shutdown | total |", "|---:|---:|---:|---:|"]
    for n in args.sizes:
        meds = {}
        for kind in ("ours", "bare"):
            group = [r for r in rows if r["n"] == n and r["kind"] == kind]
            if group:
                meds[kind] = {p: statistics.median(r[p] for r in group) for p in PHASES}
        if len(meds) == 2:
            lines.append(f"| {n} | " + " | ".join(
                f"{meds['ours'][p] / meds['bare'][p]:.2f}×" for p in ("first_result", "shutdown", "total")) + " |")
    if profile:
        lines += [
            "",
            f"## Profile of one world of {args.profile}",
            "",
            f"CPU in dask_runners' own functions (tottime): {profile['ours']:.3f} s of "
            f"{profile['total']:.3f} s profiled ({100 * profile['ours'] / profile['total']:.1f} %).",
            "",
            "| tottime (s) | calls | function |",
            "|---:|---:|---|",
        ]
        lines += [f"| {t:.4f} | {c} | `{name}` |" for t, c, name in profile["top"]]
    if fds:
        (n1, f1), (n2, f2) = fds[0], fds[-1]
        per = (f2 - f1) / (n2 - n1)
        lines += ["", "Open file descriptors of the scheduler rank under `srun` once every worker "
                      "has joined (TLS on, the default): "
                  + ", ".join(f"{f} at {n} ranks" for n, f in fds)
                  + f"; {per:.2f} per worker rank, so 10 000 ranks need about {f1 + per * (10_000 - n1):,.0f} "
                  f"(soft RLIMIT_NOFILE here: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]})."]
    lines += ["", f"Role selection from a Slurm environment of 10 000 tasks on 2 500 nodes "
                  f"(`detect()`, once per rank): {role_cost * 1e3:.2f} ms."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 512])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", type=int, default=256, help="world size to profile; 0 for none")
    parser.add_argument("--fds-ranks", type=int, nargs="*", default=[4, 16],
                        help="srun world sizes at which to count the scheduler rank's open files")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--publish", action="store_true", help="also copy to docs/data/")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    dask.config.set(QUIET_WORKERS)
    logging.getLogger("dask_runners").setLevel(logging.ERROR)  # "TLS is off", once per world
    run_fresh(one_world, 4)  # warm the imports
    run_fresh(bare_world, 4)
    rows = []
    for repeat in range(args.repeat):
        for n in args.sizes:
            for kind, function in KINDS:
                phases = run_fresh(function, n)
                rows.append({"n": n, "kind": kind, "repeat": repeat, **phases})
                print(f"n={n:<5d} {kind:4s} " + " ".join(f"{p}={phases[p]:.3f}" for p in PHASES), flush=True)
    profile = profile_world(args.profile) if args.profile else None
    role_cost = role_selection_cost()
    with (args.out / "scaling.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fds = [(n, scheduler_fds(n)) for n in args.fds_ranks] if args.fds_ranks else []
    text = summary(rows, profile, role_cost, fds, args)
    (args.out / "scaling.md").write_text(text)
    print(text)
    if args.publish:
        data = BENCH_DIR.parent / "docs" / "data"
        data.mkdir(exist_ok=True)
        for name in ("scaling.csv", "scaling.md"):
            shutil.copy(args.out / name, data / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
