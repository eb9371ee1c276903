#!/usr/bin/env python
"""Shared-filesystem load of waiting for the scheduler file: counted, then projected.

    python bench/fsops.py [--strace] [--out bench/results] [--publish]

1. **Counted in process**: the real :class:`~dask_runners.transport.scheduler_file.SchedulerFileReader`
   waits while a task writes the file after D seconds; every ``open`` and
   ``os.stat`` the module makes is counted (the module's globals are wrapped).
2. **Counted under srun** (``--strace``): ``srun -n 4`` of our SLURMRunner and of
   dask-jobqueue's, the scheduler start delayed by ``--delay`` s, every rank under
   ``strace -f -e trace=%file``; the calls naming the scheduler file are counted
   per rank, and so are all path calls (mostly imports) for scale.
3. **Model**: looks per waiting rank from :func:`dask_runners.config.backoff_delays`
   for a scheduler that publishes D s after the ranks start, against a fixed
   0.2 s poll and against distributed's ``json_load_robust`` (a stat every 0.1 s,
   what dask-jobqueue's worker ranks use), projected to 1 000 and 10 000 ranks.

A look at a missing file is one path operation (``openat`` → ENOENT); the
look that finds the file adds the ``close`` (on Lustre both are MDS requests).
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from dask_runners.transport import scheduler_file as sf  # noqa: E402
from dask_runners.config import backoff_delays  # noqa: E402

DELAYS = (0.5, 2.0, 10.0, 60.0)
RANKS = (1_000, 10_000)


# --------------------------------------------------------------------------- model
def look_times(delays, until: float) -> list[float]:
    """When a reader looks, given its sleeps: at 0, then after each sleep, up to ``until``."""
    times, t = [0.0], 0.0
    for delay in delays:
        t += delay
        if t > until:
            break
        times.append(t)
    return times


def ours(until: float) -> list[float]:
    return look_times(backoff_delays(), until)


def fixed(interval: float):
    def schedule(until: float) -> list[float]:
        return look_times(itertools.repeat(interval), until)
    return schedule


def proposed(until: float) -> list[float]:
    """A look at once, then 0.1 s growing ×1.5 to 0.5 s (jitter left out of the model)."""
    return look_times(backoff_delays(first=0.1, factor=1.5, cap=0.5), until)


SCHEMES = {
    "ours (backoff 5 ms ×1.5 → 0.5 s)": ours,
    "proposed: 0.1 s ×1.5 → 0.5 s": proposed,
    "fixed 0.2 s poll": fixed(0.2),
    "json_load_robust, 0.1 s (jobqueue workers)": fixed(0.1),
}


def looks_until_found(schedule, ready_at: float) -> int:
    """Looks a rank makes if the file appears ``ready_at`` s after it starts."""
    times = schedule(ready_at + 5)
    return sum(t < ready_at for t in times) + 1  # the misses, and the look that finds it


def max_rate_after(schedule, start: float, horizon: float = 120.0) -> int:
    """Most looks in any 1 s window that begins at or after ``start``."""
    times = [t for t in schedule(horizon) if t >= start]
    # half-open windows, with a margin for float drift: looks 0.5 s apart are 2 per second
    return max((sum(1 for u in times if t - 1e-9 <= u < t + 1 - 1e-9) for t in times), default=0)


def model_lines() -> list[str]:
    lines = ["## Model: looks per waiting rank", "",
             "| scheme | first look | looks in 1st s | max looks/s after 1 s | "
             + " | ".join(f"looks if ready at {d:g} s" for d in DELAYS) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(DELAYS)]
    for name, schedule in SCHEMES.items():
        first_second = sum(t < 1.0 for t in schedule(2.0))
        lines.append(f"| {name} | 0 s | {first_second} | {max_rate_after(schedule, 1.0)} | "
                     + " | ".join(str(looks_until_found(schedule, d)) for d in DELAYS) + " |")
    lines += ["", "## Projection: path operations on the scheduler file's directory", "",
              "All waiting ranks start together (the worst case); one operation per look, "
              "one more (the `close`) for the look that finds the file.", "",
              "| ranks | scheme | scheduler ready at | total ops | ops/s in the 1st s "
              "| ops/s after 1 s | mean ops/s |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    for n in RANKS:
        waiting = n - 1
        for name, schedule in SCHEMES.items():
            first_second = sum(t < 1.0 for t in schedule(2.0))
            steady = max_rate_after(schedule, 1.0)
            for d in (2.0, 10.0, 60.0):
                total = waiting * (looks_until_found(schedule, d) + 1)
                lines.append(f"| {n:,} | {name} | {d:g} s | {total:,} | {waiting * first_second:,} "
                             f"| {waiting * steady:,} | {total / d:,.0f} |")
    return lines


# --------------------------------------------------------------------------- counted in process
async def counted_wait(ready_at: float, directory: Path) -> tuple[int, int, int, float]:
    """Wait with the real reader for a file written ``ready_at`` s in; count its calls."""
    path = directory / f"scheduler-{ready_at:g}.json"
    stamp = {"launcher": "bench", "job_id": "1", "step_id": "0", "restart_count": 0}
    calls = {"open": 0, "stat": 0}
    real_open, real_stat = builtins.open, os.stat

    def counting_open(file, *args, **kwargs):
        if str(file) == str(path):
            calls["open"] += 1
        return real_open(file, *args, **kwargs)

    def counting_stat(file, *args, **kwargs):
        if str(file) == str(path):
            calls["stat"] += 1
        return real_stat(file, *args, **kwargs)

    async def write_later():
        await asyncio.sleep(ready_at)
        sf.write_scheduler_file(path, "tcp://127.0.0.1:1", stamp)

    sf.open = counting_open  # the module's own name for open, looked up before builtins
    os.stat = counting_stat
    try:
        reader = sf.SchedulerFileReader(path, stamp)
        start = time.perf_counter()
        writer = asyncio.ensure_future(write_later())
        await reader.wait()
        latency = time.perf_counter() - start - ready_at
        await writer
    finally:
        del sf.open
        os.stat = real_stat
    return reader.looks, calls["open"], calls["stat"], latency


def counted_lines(delays) -> list[str]:
    lines = ["## Counted in process (the real reader; a writer task publishes after D s)", "",
             "| D | looks | `open` calls | `os.stat` calls | model looks | found after publish (ms) |",
             "|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="dask-runners-fsops-") as tmp:
        for d in delays:
            looks, opens, stats, latency = asyncio.run(counted_wait(d, Path(tmp)))
            lines.append(f"| {d:g} s | {looks} | {opens} | {stats} | {looks_until_found(ours, d)} "
                         f"| {latency * 1000:.0f} |")
            print(lines[-1], flush=True)
    return lines


# --------------------------------------------------------------------------- counted under srun
STRACE_JOB = '''\
import asyncio, sys, time
from distributed import Client
impl, delay = sys.argv[1], float(sys.argv[2])
if impl == "ours":
    from dask_runners import SLURMRunner as Base
    options = {"scheduler_file": "scheduler-{job_id}.json"}
else:
    from dask_jobqueue.slurm import SLURMRunner as Base
    options = {"scheduler_file": "scheduler-{job_id}.json"}

class Delayed(Base):
    async def before_scheduler_start(self):
        await asyncio.sleep(delay)

with Delayed(**options) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
'''


def strace_counts(impl: str, ranks: int, delay: float) -> list[dict]:
    """Per rank: calls naming the scheduler file, all path calls, and the span of the former."""
    with tempfile.TemporaryDirectory(prefix="dask-runners-fsops-") as tmp:
        job = Path(tmp) / "job.py"
        job.write_text(STRACE_JOB)
        command = ["srun", "-n", str(ranks), "bash", "-c",
                   f"exec strace -f -qq -ttt -e trace=%file -o trace.$SLURM_PROCID "
                   f"{sys.executable} {job} {impl} {delay}"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR.parent), os.environ.get("PYTHONPATH")]))}
        subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=300, check=True)
        rows = []
        for rank in range(ranks):
            trace = (Path(tmp) / f"trace.{rank}").read_text().splitlines()
            mine = [line for line in trace if re.search(r'"[^"]*scheduler-\d+\.json"', line)]
            stamps = [float(line.split()[1]) for line in mine]
            rows.append({"rank": rank, "scheduler_file_calls": len(mine),
                         "kinds": sorted({re.sub(r"\(.*", "", line.split(None, 2)[2]) for line in mine}),
                         "span": (max(stamps) - min(stamps)) if stamps else 0.0,
                         "path_calls": len(trace)})
        return rows


def strace_lines(ranks: int, delay: float) -> list[str]:
    lines = [f"## Counted under `srun -n {ranks}` with strace (scheduler start delayed {delay:g} s)", "",
             "| implementation | rank | calls naming the scheduler file | which | over (s) "
             "| calls/s | all path calls of the rank |", "|---|---:|---:|---|---:|---:|---:|"]
    for impl in ("ours", "jobqueue"):
        for row in strace_counts(impl, ranks, delay):
            rate = row["scheduler_file_calls"] / row["span"] if row["span"] else 0.0
            lines.append(f"| {impl} | {row['rank']} | {row['scheduler_file_calls']} | "
                         f"{', '.join(row['kinds'])} | {row['span']:.2f} | {rate:.1f} | {row['path_calls']:,} |")
            print(lines[-1], flush=True)
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strace", action="store_true", help="also count under srun with strace")
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--delay", type=float, default=5.0, help="scheduler start delay under srun")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--publish", action="store_true", help="also copy fsops.md to docs/data/")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sections = [[f"# Scheduler-file polling load ({time.strftime('%Y-%m-%d %H:%M %Z')})"],
                counted_lines((0.5, 2.0, 5.0))]
    if args.strace:
        sections.append(strace_lines(args.ranks, args.delay))
    sections.append(model_lines())
    text = "\n\n".join("\n".join(s) for s in sections) + "\n"
    (args.out / "fsops.md").write_text(text)
    print(text)
    if args.publish:
        data = BENCH_DIR.parent / "docs" / "data"
        data.mkdir(exist_ok=True)
        shutil.copy(args.out / "fsops.md", data / "fsops.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
