"""parallel_for against a plain client.map: overhead per item and parallel efficiency.

    python bench/parallel.py                      # srun; 1 2 4 8 workers; 50 ms items
    python bench/parallel.py --launcher local     # dask-runner launch instead of srun
    python bench/parallel.py --workers 1 8 --repeat 5 --item-ms 100

Each configuration is one job (``parallel_job.py``) in which both ways run on the
same cluster, alternating, ``--repeat`` times. Two measurements:

* efficiency: ``--items`` items that sleep ``--item-ms`` each, on 1, 2, 4, 8
  one-thread workers. Efficiency is the ideal time (items x item time / workers)
  over the measured time; sleeping items keep the 2 cores of a small machine out of
  the measurement, so it is the layer's own cost that shows;
* overhead: ``--overhead-items`` items that do nothing, on 2 workers:
  (parallel_for - client.map) / items.

It prints a Markdown table and writes the runs to ``--out``/parallel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = HERE / "parallel_job.py"


def launch(launcher: str, n_workers: int, items: int, item_ms: float, repeat: int) -> list[dict]:
    job = [str(JOB), "--items", str(items), "--item-ms", str(item_ms), "--repeat", str(repeat)]
    ranks = str(n_workers + 2)
    if launcher == "srun":
        argv = ["srun", "-n", ranks, sys.executable, *job]
    else:
        argv = [sys.executable, "-m", "dask_runners", "launch", "-n", ranks, *job]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return [json.loads(line.split(" ", 1)[1]) for line in out.stdout.splitlines() if line.startswith("PARALLEL ")]


def median_seconds(runs: list[dict], impl: str, workers: int, item_ms: float) -> float:
    return statistics.median(
        r["seconds"] for r in runs if (r["impl"], r["workers"], r["item_ms"]) == (impl, workers, item_ms)
    )


def efficiency_table(runs, workers, items, item_ms) -> str:
    lines = [
        f"Efficiency: {items} items of {item_ms:g} ms, one-thread workers, median seconds",
        "",
        "| workers | ideal | client.map | parallel_for | efficiency (parallel_for) | efficiency (client.map) |",
        "|---|---|---|---|---|---|",
    ]
    for n in workers:
        ideal = items * item_ms / 1000 / n
        plain = median_seconds(runs, "client.map", n, item_ms)
        ours = median_seconds(runs, "parallel_for", n, item_ms)
        lines.append(f"| {n} | {ideal:.2f} | {plain:.2f} | {ours:.2f} | {ideal / ours:.1%} | {ideal / plain:.1%} |")
    return "\n".join(lines)


def overhead_table(runs, items) -> str:
    plain = median_seconds(runs, "client.map", 2, 0.0)
    ours = median_seconds(runs, "parallel_for", 2, 0.0)
    return "\n".join([
        f"Overhead: {items} items that do nothing, 2 one-thread workers, median seconds",
        "",
        "| client.map | parallel_for | difference per item |",
        "|---|---|---|",
        f"| {plain:.2f} | {ours:.2f} | {(ours - plain) / items * 1000:+.3f} ms |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", choices=["srun", "local"], default="srun")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--items", type=int, default=320)
    parser.add_argument("--item-ms", type=float, default=50.0)
    parser.add_argument("--overhead-items", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    runs = launch(args.launcher, 2, args.overhead_items, 0.0, args.repeat)
    for n in args.workers:
        runs += launch(args.launcher, n, args.items, args.item_ms, args.repeat)
    report = "\n\n".join([
        f"parallel_for benchmark, {started}, {os.cpu_count()} cores, launcher {args.launcher}, "
        f"{args.repeat} repeats",
        efficiency_table(runs, args.workers, args.items, args.item_ms),
        overhead_table(runs, args.overhead_items),
    ])
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel.json").write_text(json.dumps({"started": started, "runs": runs}, indent=1))
    (args.out / "parallel.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
