#!/usr/bin/env python
"""What MPIRunner's host exchange costs, under real mpirun and mpiexec.mpich.

    python bench/host_exchange.py [--ranks 4 16 32] [--rounds 20] [--launchers mpirun mpich]
    python bench/host_exchange.py --startup [--ranks 4 16] [--repeat 7] [--launchers mpirun mpich]

The first runs ``workloads/host_exchange.py`` (the exchange an MPIRunner does
at construction, a blocking pickled ``comm.allgather`` of host names for
reference, and a whole MPIRunner construction with and without the exchange)
and reports, per launcher and world size, the median over rounds of the
slowest rank's time and the median over every rank and round. Writes
``host_exchange.csv`` and ``host_exchange.md``.

``--startup`` runs the standard workload (start, wait for every worker, one
task, leave) with the exchange (``ours_mpi.py``) and without it
(``ours_mpi_no_exchange.py``), interleaved, on the same snapshot of the
package, through ``run.py``'s harness; writes ``host_exchange_startup.csv``
and ``.md``. ``python bench/run.py --only mpirun/ours_mpi --baseline REF``
compares with an earlier commit instead.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402

LAUNCHERS = {
    "mpirun": (lambda n: ["mpirun", "--oversubscribe", "-n", str(n)], bench.OPENMPI_ENV),
    "mpich": (lambda n: ["mpiexec.mpich", "-n", str(n)], {}),
}
METHODS = ("exchange", "allgather", "construct", "construct_without")


def mpich_env(directory: Path) -> dict:
    """mpi4py's wheel loads MPICH instead of Open MPI (see tests/conftest.py)."""
    library = next(iter(sorted(Path("/usr/lib").glob("*/libmpich.so.12"))), None)
    if library is None:
        raise SystemExit("MPICH is not installed (bash ci/setup.sh)")
    (directory / "libmpi.so.12").symlink_to(library)
    path = os.pathsep.join(filter(None, [str(directory), os.environ.get("LD_LIBRARY_PATH")]))
    return {"MPI4PY_MPIABI": "mpich", "LD_LIBRARY_PATH": path}


def launch(launcher: str, ranks: int, rounds: int, source, extra_env: dict) -> list[dict]:
    argv, env = LAUNCHERS[launcher]
    env = {**os.environ, **source.env, **env, **extra_env}
    command = [*argv(ranks), sys.executable, str(bench.WORKLOADS / "host_exchange.py"), str(rounds)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=True,
                         cwd=tempfile.gettempdir()).stdout
    return [{**r, "launcher": launcher} for r in bench.parse_bench_lines(out) if "method" in r]


def table(records: list[dict]) -> list[str]:
    lines = ["| launcher | ranks | method | slowest rank, median over rounds (ms) | median, every rank (ms) "
             "| max (ms) |", "|---|---:|---|---:|---:|---:|"]
    keys = sorted({(r["launcher"], int(r["size"])) for r in records})
    for launcher, size in keys:
        for method in METHODS:
            group = [r for r in records if (r["launcher"], int(r["size"]), r["method"]) == (launcher, size, method)]
            if not group:
                continue
            seconds = [float(r["seconds"]) * 1000 for r in group]
            slowest = [max(float(r["seconds"]) for r in group if r["round"] == k) * 1000
                       for k in {r["round"] for r in group}]
            lines.append(f"| {launcher} | {size} | {method} | {statistics.median(slowest):.2f} "
                         f"| {statistics.median(seconds):.2f} | {max(seconds):.2f} |")
    return lines


def startup(args) -> int:
    """The whole start-up with and without the exchange, interleaved, through run.py's harness."""
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dask-runners-bench-src-") as snapshot_dir:
        source = bench.Source.snapshot(Path(snapshot_dir))
        envs = {"mpirun": {}, "mpich": mpich_env(Path(snapshot_dir))}
        impls = [
            bench.Impl(name, bench.Launcher(launcher, LAUNCHERS[launcher][0], {**LAUNCHERS[launcher][1],
                                                                              **envs[launcher]}), script, "ours")
            for launcher in args.launchers
            for name, script in (("exchange", "ours_mpi.py"), ("no_exchange", "ours_mpi_no_exchange.py"))
        ]
        if not bench.warm_up(impls, min(args.ranks), 60.0, log_dir, source):
            return 2
        runs = bench.run_suite(impls, args.ranks, args.repeat, 120.0, log_dir, source)
    bench.write_csv(runs, args.out / "host_exchange_startup.csv")
    text = "\n".join([
        f"# Start-up with and without MPIRunner's host exchange ({time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{os.cpu_count()} cores, load {load:.1f} at start, {args.repeat} repeats, interleaved; "
        f"{source.description})", "", *bench.results_table(bench.group_stats(runs))]) + "\n"
    (args.out / "host_exchange_startup.md").write_text(text)
    print(text)
    return 0 if all(r.status == "ok" for r in runs) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=None, help="default 4 16 32; 4 16 with --startup")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--startup", action="store_true", help="time the whole start-up with and without it")
    parser.add_argument("--repeat", type=int, default=7, help="launches per configuration, with --startup")
    parser.add_argument("--launchers", nargs="+", choices=sorted(LAUNCHERS), default=sorted(LAUNCHERS))
    parser.add_argument("--out", type=Path, default=bench.BENCH_DIR / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.startup:
        args.ranks = args.ranks or [4, 16]
        return startup(args)
    args.ranks = args.ranks or [4, 16, 32]
    records = []
    with tempfile.TemporaryDirectory(prefix="dask-runners-bench-src-") as snapshot_dir:
        source = bench.Source.snapshot(Path(snapshot_dir))
        extra = {"mpirun": {}, "mpich": mpich_env(Path(snapshot_dir))}
        for launcher in args.launchers:
            for n in args.ranks:
                records += launch(launcher, n, args.rounds, source, extra[launcher])
                print(f"{launcher} n={n} done", flush=True)
    fields = ["launcher", "size", "method", "round", "rank", "seconds"]
    with (args.out / "host_exchange.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    text = "\n".join([f"# MPIRunner's host exchange ({time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, "
                      f"load {os.getloadavg()[0]:.1f}; {args.rounds} rounds per launch; {source.description})",
                      "", *table(records)]) + "\n"
    (args.out / "host_exchange.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
