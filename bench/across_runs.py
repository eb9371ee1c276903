"""The first result of distributed alone, and of ours, against the anchor's, over many runs.

Reads the raw runs that ``bench/run.py`` wrote (``runs.csv``, or the
published ``docs/data/bench-*runs.csv``) and, for every run and every point
(launcher, ranks) where ``bare_tls`` and the anchor both ran, takes the
median first result of ``bare_tls``, of the anchor and of ours. It prints,
per point, in how many runs ``bare_tls`` came within 0.9 × the anchor's
first result, and the spread of ``bare_tls`` / anchor and ours /
``bare_tls`` over the runs::

    python bench/across_runs.py                      # every published run in docs/data/
    python bench/across_runs.py /tmp/x/runs.csv ...  # the runs named
    python bench/across_runs.py --publish            # also docs/data/across-runs.md

``bare_tls`` is distributed over TLS with no runner: its address and
certificate are chosen before the launch, and no role is decided at run
time (``bench/README.md``). A point where it never comes within 0.9 × the
anchor's first result is one where that target asks a runner to start
faster than distributed alone does on this machine.
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "data"
ANCHOR = {"srun": "jobqueue_slurm", "srun-4node": "jobqueue_slurm", "mpirun": "daskmpi"}
OURS = {"srun": "ours_slurm", "srun-4node": "ours_slurm", "mpirun": "ours_mpi"}
FLOOR = {"srun": "floor", "srun-4node": "floor", "mpirun": "floor_mpi"}
TARGET = 0.9


def first_results(path: Path) -> dict[tuple[str, int, str], float]:
    """The median first result of each (launcher, ranks, implementation) among a run's successful launches.

    A floor's first result is its last rank's readiness (``ready``).
    """
    times = defaultdict(list)
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            first = row["first_result"] or row.get("ready")
            if row["status"] == "ok" and first:
                times[row["launcher"], int(row["ranks"]), row["impl"]].append(float(first))
    return {key: statistics.median(values) for key, values in times.items()}


def ratios(runs: list[dict]) -> dict[tuple[str, int], list[tuple[float, float | None]]]:
    """Per point, one ``(bare_tls / anchor, ours / bare_tls)`` for every run that has both."""
    points = defaultdict(list)
    for medians in runs:
        for (launcher, ranks, impl), bare in medians.items():
            anchor = medians.get((launcher, ranks, ANCHOR.get(launcher)))
            if impl != "bare_tls" or anchor is None:
                continue
            ours = medians.get((launcher, ranks, OURS[launcher]))
            points[launcher, ranks].append((bare / anchor, None if ours is None else ours / bare))
    return points


def target_before_floor(runs: list[dict]) -> dict[tuple[str, int], list[bool]]:
    """Per point, for every run with the anchor and the floor: whether 0.9 × the anchor's first result came first."""
    points = defaultdict(list)
    for medians in runs:
        for (launcher, ranks, impl), anchor in medians.items():
            floor = medians.get((launcher, ranks, FLOOR.get(launcher)))
            if impl == ANCHOR.get(launcher) and floor is not None:
                points[launcher, ranks].append(TARGET * anchor < floor)
    return points


def mpi_over_import(runs: list[dict]) -> dict[int, list[float]]:
    """Per number of ranks, how much later than the import floor the MPI floor was ready, in each run with both."""
    gaps = defaultdict(list)
    for medians in runs:
        for (launcher, ranks, impl), mpi in medians.items():
            imported = medians.get((launcher, ranks, "floor"))
            if impl == "floor_mpi" and imported is not None:
                gaps[ranks].append(mpi - imported)
    return gaps


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def report(paths: list[Path]) -> str:
    runs = [first_results(path) for path in paths]
    points = ratios(runs)
    names = sorted(path.name for path in paths)
    lines = [
        "# distributed alone over TLS (`bare_tls`) and ours, against the anchor's first result",
        "",
        f"`python bench/across_runs.py` over {len(names)} runs: " + ", ".join(f"`{name}`" for name in names) + ".",
        "Each ratio is of the run's medians. min / median / max over the runs that have the point.",
        "",
        f"| launcher | ranks | runs | `bare_tls` within {TARGET} × anchor | `bare_tls` / anchor | ours / `bare_tls` |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for (launcher, ranks), rows in sorted(points.items()):
        bare = [r for r, _ in rows]
        ours = [r for _, r in rows if r is not None]
        within = sum(r <= TARGET for r in bare)
        lines.append(
            f"| {launcher} | {ranks} | {len(rows)} | {within} of {len(rows)} | {spread(bare)} | "
            f"{spread(ours) if ours else '—'} |"
        )
    before = target_before_floor(runs)
    lines += [
        "",
        f"## {TARGET} × the anchor's first result against the floor's readiness",
        "",
        "The floor is `floor` under `srun` and `srun-4node`, `floor_mpi` under `mpirun`: no first result can come before it.",
        "",
        f"| launcher | ranks | runs | {TARGET} × anchor before the floor was ready |",
        "|---|---:|---:|---:|",
        *(f"| {l} | {n} | {len(b)} | {sum(b)} of {len(b)} |" for (l, n), b in sorted(before.items())),
    ]
    gaps = mpi_over_import(runs)
    if gaps:
        lines += [
            "",
            "## The MPI floor over the import floor under `mpirun` (seconds)",
            "",
            "`floor_mpi`'s readiness (every rank has imported distributed and initialized MPI) minus `floor`'s",
            "(every rank has imported distributed), in each run that had both. min / median / max over the runs.",
            "",
            "| ranks | runs | MPI floor − import floor |",
            "|---:|---:|---:|",
            *(f"| {ranks} | {len(gap)} | {spread(gap)} |" for ranks, gap in sorted(gaps.items())),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="runs.csv files (default: docs/data/bench-*runs.csv)")
    parser.add_argument("--publish", action="store_true", help="also write docs/data/across-runs.md")
    args = parser.parse_args()
    text = report(args.runs or sorted(PUBLISHED.glob("bench-*runs.csv")))
    print(text, end="")
    if args.publish:
        (PUBLISHED / "across-runs.md").write_text(text)


if __name__ == "__main__":
    main()
