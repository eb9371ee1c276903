#!/usr/bin/env python
"""MPIRunner's discovery time against the number of ranks, under real mpirun.

    python bench/mpi_discovery.py [--ranks 2 4 8 16 32] [--rounds 10] [--delays 0 0.2] [--publish]

Runs ``workloads/mpi_discovery.py`` (MPIRunner's own set/get_scheduler_address,
and a blocking ``comm.bcast`` for reference) and reports, per world size, the
median and the slowest rank's time from the publish to having the address.
The ranks run on one machine, so one monotonic clock serves them all.
Writes ``mpi_discovery.csv``, ``mpi_discovery.md`` and a PNG.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402


def launch(ranks: int, rounds: int, delay: float, source) -> list[dict]:
    env = {**os.environ, **source.env, **bench.OPENMPI_ENV}
    command = [*bench.MPIRUN.argv(ranks), sys.executable,
               str(bench.WORKLOADS / "mpi_discovery.py"), str(rounds), str(delay)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True,
                         cwd=tempfile.gettempdir()).stdout
    return [{**r, "delay": delay} for r in bench.parse_bench_lines(out) if "method" in r]


def table(records: list[dict]) -> list[str]:
    lines = ["| delay (s) | ranks | method | median since publish (ms) | slowest rank, median over rounds (ms) "
             "| max (ms) | median since start (ms) |",
             "|---:|---:|---|---:|---:|---:|---:|"]
    keys = sorted({(float(r["delay"]), int(r["size"]), r["method"]) for r in records})
    for delay, size, method in keys:
        group = [r for r in records if (float(r["delay"]), int(r["size"]), r["method"]) == (delay, size, method)]
        since = [float(r["since_publish"]) * 1000 for r in group]
        slowest = [max(float(r["since_publish"]) for r in group if r["round"] == k) * 1000
                   for k in {r["round"] for r in group}]
        start = [float(r["since_start"]) * 1000 for r in group]
        lines.append(f"| {delay:g} | {size} | {method} | {statistics.median(since):.2f} "
                     f"| {statistics.median(slowest):.2f} | {max(since):.2f} | {statistics.median(start):.1f} |")
    return lines


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (method, delay), style in {("ours", 0.2): "C0o-", ("blocking", 0.2): "C3s--",
                                   ("ours", 0.0): "C0o:", ("blocking", 0.0): "C3s:"}.items():
        sizes = sorted({int(r["size"]) for r in records if r["method"] == method and float(r["delay"]) == delay})
        if not sizes:
            continue
        ys = []
        for n in sizes:
            group = [r for r in records if r["method"] == method and float(r["delay"]) == delay and int(r["size"]) == n]
            ys.append(statistics.median(max(float(r["since_publish"]) for r in group if r["round"] == k) * 1000
                                        for k in {r["round"] for r in group}))
        label = ("MPIRunner (Ibcast, polled)" if method == "ours" else "blocking comm.bcast") + f", publish at {delay:g} s"
        ax.plot(sizes, ys, style, label=label)
    ax.set_xscale("log", base=2)
    sizes = sorted({int(r["size"]) for r in records})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel(f"ranks (mpirun, one {os.cpu_count()}-core machine)")
    ax.set_ylabel("ms from publish to the slowest rank having it")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"MPI discovery, {time.strftime('%Y-%m-%d')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.2])
    parser.add_argument("--out", type=Path, default=bench.BENCH_DIR / "results")
    parser.add_argument("--publish", action="store_true", help="also write to docs/data/ and docs/images/")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="dask-runners-bench-src-") as snapshot_dir:
        source = bench.Source.snapshot(Path(snapshot_dir))
        for delay in args.delays:
            for n in args.ranks:
                records += launch(n, args.rounds, delay, source)
                print(f"delay={delay:g} n={n} done", flush=True)
    fields = ["delay", "size", "method", "round", "rank", "since_start", "since_publish"]
    with (args.out / "mpi_discovery.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(records)
    text = "\n".join([f"# MPI discovery ({time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, "
                      f"load {os.getloadavg()[0]:.1f}; {args.rounds} rounds per launch)", "", *table(records)]) + "\n"
    (args.out / "mpi_discovery.md").write_text(text)
    print(text)
    plot(records, args.out / "mpi-discovery.png")
    if args.publish:
        data = bench.DOCS_DIR / "data"
        data.mkdir(exist_ok=True)
        for name in ("mpi_discovery.csv", "mpi_discovery.md"):
            shutil.copy(args.out / name, data / name)
        shutil.copy(args.out / "mpi-discovery.png", bench.DOCS_DIR / "images" / "mpi-discovery.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
