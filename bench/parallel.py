"""parallel_for against client.map and dask.bag: tiny items, 10 ms items, 1 s items.

    python bench/parallel.py                      # srun; the three workloads below
    python bench/parallel.py --launcher local     # dask-runner launch instead of srun
    python bench/parallel.py --workers 1 8 --repeat 5

Each configuration is one job (``parallel_job.py``) in which the three ways run on
the same cluster of one-thread workers, alternating, ``--repeat`` times:

* tiny items: ``--tiny-items`` items of ``i * 2`` on 2 workers, where the round
  trips, not the work, set the pace; the ratio to dask.bag (64 partitions) is the
  number to watch;
* 10 ms items that sleep ``--item-ms`` each, on 1, 2, 4, 8 workers, two ways:

  - throughput: as many items as keep every worker busy for ``--seconds``
    (8 s: 800 items per worker), so that each size is measured over the same
    ideal time and a map's fixed cost (its first measuring tasks, its last
    short ones: about 0.3 s) weighs the same at every size;
  - a short map: ``--items`` items (1 600) at every size, where that fixed
    cost is a quarter of the 2 s ideal at 8 workers.

  Efficiency is the ideal time (items x item time / workers) over the
  measured time; sleeping items keep the 2 cores of a small machine out of the
  measurement, so it is the layer's own cost that shows;
* 1 s items: ``--slow-items`` items of 1 s on 4 workers: they must spread one by
  one over every worker (ideal: slow-items / 4 seconds).

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


def median_seconds(runs: list[dict], impl: str, workers: int, item_ms: float, items: int | None = None) -> float:
    return statistics.median(
        r["seconds"] for r in runs
        if (r["impl"], r["workers"], r["item_ms"]) == (impl, workers, item_ms) and items in (None, r["items"])
    )


def throughput_items(seconds: float, workers: int, item_ms: float) -> int:
    """Items that keep ``workers`` one-thread workers busy for ``seconds``."""
    return round(seconds * workers * 1000 / item_ms)


IMPLS = ["client.map", "dask.bag", "parallel_for"]


def efficiency_table(runs, workers, items, item_ms, title=None) -> str:
    """``items``: a count, or a function of the number of workers."""
    count = items if callable(items) else (lambda n: items)
    lines = [
        title or f"{items} items of {item_ms:g} ms, one-thread workers, median seconds (efficiency: ideal / measured)",
        "",
        "| workers | items | ideal | client.map | dask.bag | parallel_for | efficiency: parallel_for | client.map "
        "| dask.bag |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in workers:
        ideal = count(n) * item_ms / 1000 / n
        times = [median_seconds(runs, impl, n, item_ms, count(n)) for impl in IMPLS]
        plain, bag, ours = times
        lines.append(f"| {n} | {count(n)} | {ideal:.2f} | {plain:.2f} | {bag:.2f} | {ours:.2f} | {ideal / ours:.1%} "
                     f"| {ideal / plain:.1%} | {ideal / bag:.1%} |")
    return "\n".join(lines)


def tiny_table(runs, items) -> str:
    plain, bag, ours = (median_seconds(runs, impl, 2, 0.0) for impl in IMPLS)
    return "\n".join([
        f"Tiny items: {items} items of `i * 2`, 2 one-thread workers, median seconds",
        "",
        "| client.map | dask.bag | parallel_for | parallel_for / dask.bag |",
        "|---|---|---|---|",
        f"| {plain:.2f} | {bag:.2f} | {ours:.2f} | {ours / bag:.2f}x |",
    ])


def plot(runs, workers, seconds, items, item_ms, tiny_items, path: Path) -> None:
    """Two panels: tiny items by implementation; efficiency on 10 ms items by workers (solid: throughput
    over ``seconds``; faint: the short map of ``items``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    tiny = [median_seconds(runs, impl, 2, 0.0) for impl in IMPLS]
    left.bar(IMPLS, tiny, color=["#999999", "#6a8caf", "#c0504d"])
    left.set_yscale("log")
    left.set_ylabel("seconds (log scale)")
    left.set_title(f"{tiny_items} tiny items, 2 workers")
    for x, taken in enumerate(tiny):
        left.annotate(f"{taken:.2f} s", (x, taken), ha="center", va="bottom")
    for impl, style, color in zip(IMPLS, ["o:", "s--", "D-"], ["#999999", "#6a8caf", "#c0504d"]):
        long = [throughput_items(seconds, n, item_ms) for n in workers]
        efficiency = [c * item_ms / 1000 / n / median_seconds(runs, impl, n, item_ms, c) for n, c in zip(workers, long)]
        right.plot(workers, [100 * e for e in efficiency], style, color=color, label=f"{impl}, {seconds:g} s")
        short = [items * item_ms / 1000 / n / median_seconds(runs, impl, n, item_ms, items) for n in workers]
        right.plot(workers, [100 * e for e in short], style, color=color, alpha=0.35, label=f"{impl}, {items} items")
    right.axhline(90, color="#cccccc", linewidth=1)
    right.set_xscale("log", base=2)
    right.set_xticks(workers, [str(n) for n in workers])
    right.set_ylim(0, 105)
    right.set_xlabel("one-thread workers")
    right.set_ylabel("efficiency, % of ideal")
    right.set_title(f"items of {item_ms:g} ms")
    right.legend(loc="lower left", fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", choices=["srun", "local"], default="srun")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seconds", type=float, default=8.0, help="ideal seconds of the throughput runs")
    parser.add_argument("--items", type=int, default=1600, help="items of the short map, at every size")
    parser.add_argument("--item-ms", type=float, default=10.0)
    parser.add_argument("--tiny-items", type=int, default=20000)
    parser.add_argument("--slow-items", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--plot", type=Path, help="also draw the two figures to this PNG (needs matplotlib)")
    parser.add_argument("--from-json", type=Path, help="report (and plot) these saved runs instead of running")
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        started, runs = saved["started"], saved["runs"]
    else:
        started = time.strftime("%Y-%m-%d %H:%M")
        runs = launch(args.launcher, 2, args.tiny_items, 0.0, args.repeat)
        for n in args.workers:
            runs += launch(args.launcher, n, throughput_items(args.seconds, n, args.item_ms), args.item_ms, args.repeat)
            runs += launch(args.launcher, n, args.items, args.item_ms, args.repeat)
        runs += launch(args.launcher, 4, args.slow_items, 1000.0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel.json").write_text(json.dumps({"started": started, "runs": runs}, indent=1))
    if args.plot:
        plot(runs, args.workers, args.seconds, args.items, args.item_ms, args.tiny_items, args.plot)
    report = "\n\n".join([
        f"parallel_for benchmark, {started}, {os.cpu_count()} cores, launcher {args.launcher}, "
        f"{args.repeat} repeats",
        tiny_table(runs, args.tiny_items),
        efficiency_table(
            runs, args.workers, lambda n: throughput_items(args.seconds, n, args.item_ms), args.item_ms,
            f"Throughput: items of {args.item_ms:g} ms for {args.seconds:g} s of ideal work per worker count, "
            "one-thread workers, median seconds (efficiency: ideal / measured)",
        ),
        efficiency_table(runs, args.workers, args.items, args.item_ms),
        efficiency_table(runs, [4], args.slow_items, 1000.0),
    ])
    print(report)
    (args.out / "parallel.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
