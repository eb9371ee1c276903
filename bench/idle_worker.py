"""What an idle worker costs: ours against the anchors' workers, under real launchers.

Each implementation starts a real cluster (``workloads/idle.py``), lets it
sit, and reports each worker process's CPU per second over an idle window.
Ours runs twice: as shipped, and with distributed's own intervals
(``runners.worker-cadence`` set to ``None``), which isolates what
:mod:`dask_runners.cadence` changes. Interleaved, ``--repeat`` times::

    python bench/idle_worker.py --ranks 8 --repeat 3
    python bench/idle_worker.py --launchers mpirun --window 20 --publish

Writes ``idle_worker.md`` to ``--out`` (``--publish``: also to
``docs/data/idle-worker-<UTC start>.md``). The exit status is 0 only if every
launch reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import run as bench

DISTRIBUTEDS_CADENCE = {"DASK_RUNNERS__WORKER_CADENCE__PROFILE": "None", "DASK_RUNNERS__WORKER_CADENCE__TICK": "None"}
#: Per launcher: implementation name, BENCH_IDLE_RUNNER, extra environment.
IMPLS = {
    "srun": [("ours_slurm", "ours_slurm", {}),
             ("ours_slurm_distributed_cadence", "ours_slurm", DISTRIBUTEDS_CADENCE),
             ("jobqueue_slurm", "jobqueue_slurm", {})],
    "mpirun": [("ours_mpi", "ours_mpi", {}),
               ("ours_mpi_distributed_cadence", "ours_mpi", DISTRIBUTEDS_CADENCE),
               ("daskmpi", "daskmpi", {})],
}
ANCHOR = {"srun": "jobqueue_slurm", "mpirun": "daskmpi"}


def idle_once(launcher: str, runner: str, env: dict, ranks: int, window: float, source: bench.Source) -> list[float]:
    """One launch: the CPU milliseconds per second of each of its idle workers."""
    tag = uuid.uuid4().hex
    launch = bench.LAUNCHERS[launcher]
    environ = {**os.environ, **source.env, **launch.env, **env, bench.TAG_VAR: tag,
               "BENCH_IDLE_RUNNER": runner, "BENCH_IDLE_WINDOW": str(window)}
    command = [*launch.argv(ranks), sys.executable, str(bench.WORKLOADS / "idle.py")]
    with tempfile.TemporaryDirectory(prefix="dask-runners-idle-") as cwd:
        proc = subprocess.Popen(command, cwd=cwd, env=environ, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=window + 120)
        except subprocess.TimeoutExpired:
            bench.stop_after_timeout(proc, tag)
            raise SystemExit(f"{launcher}/{runner} at {ranks} ranks: no end within {window + 120:.0f} s")
        finally:
            bench.reap_strays(tag, grace=5.0)
    lines = [line for line in stdout.splitlines() if line.startswith("IDLE ")]
    if proc.returncode != 0 or len(lines) != 1:
        raise SystemExit(f"{launcher}/{runner} at {ranks} ranks: exit {proc.returncode}, "
                         f"{len(lines)} IDLE lines\n{stderr[-2000:]}")
    return json.loads(lines[0][5:])["ms_per_s"]


def report(results: dict, args, started: datetime.datetime, source: bench.Source) -> str:
    lines = [
        f"# Idle workers: CPU per second of each worker process ({started:%Y-%m-%d %H:%M} UTC)",
        "",
        f"{args.ranks} ranks ({args.ranks - 2} workers), a {args.window:.0f} s idle window after every worker "
        f"joined, {args.repeat} interleaved repeats; dask_runners: {source.description}.",
        "",
        "| launcher | implementation | median ms/s per worker | min | max | / anchor |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for launcher, impls in results.items():
        anchor = statistics.median(impls[ANCHOR[launcher]])
        for name, values in impls.items():
            median = statistics.median(values)
            lines.append(f"| {launcher} | {name} | {median:.1f} | {min(values):.1f} | {max(values):.1f} | "
                         f"{median / anchor:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launchers", nargs="+", choices=sorted(IMPLS), default=sorted(IMPLS))
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="seconds of idle time measured")
    parser.add_argument("--out", type=Path, default=bench.BENCH_DIR / "results")
    parser.add_argument("--publish", action="store_true", help="also copy the report to docs/data/")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="dask-runners-idle-src-") as snapshot:
        source = bench.Source.snapshot(Path(snapshot))
        results = {launcher: {name: [] for name, _, _ in IMPLS[launcher]} for launcher in args.launchers}
        for repeat in range(args.repeat):
            for launcher in args.launchers:
                for name, runner, env in IMPLS[launcher]:
                    per_worker = idle_once(launcher, runner, env, args.ranks, args.window, source)
                    results[launcher][name].extend(per_worker)
                    print(f"[{repeat + 1}/{args.repeat}] {launcher:7s} {name:32s} "
                          f"median {statistics.median(per_worker):6.1f} ms/s", flush=True)
        text = report(results, args, started, source)
    (args.out / "idle_worker.md").write_text(text)
    if args.publish:
        (bench.DOCS_DIR / "data" / f"idle-worker-{started:%Y-%m-%d-%H%M}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
