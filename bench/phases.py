"""Where the start-up time goes: every rank's milestones, ours against plain distributed over TLS.

Runs the standard workload of ours (``MPIRunner`` under ``mpirun``,
``SLURMRunner`` under ``srun``) and of ``bare_tls`` (plain distributed,
address and credentials agreed before the job; under ``mpirun``,
``MPI_Init`` after the import) under each launcher, interleaved, with each
rank's milestones stamped by ``workloads/_phases.py``: the import of
distributed, the runner's import, ``MPI_Init`` done (``mpirun``) or the
runner made (``srun``), the scheduler's contact received, the worker built,
started and closing, the process's end. For each milestone it reports when
the median and the last worker rank reached it (seconds since launch), and
the CPU a worker rank spent on each step, and the CPU of all the job's ranks::

    python bench/phases.py --ranks 16 64 --repeat 3
    python bench/phases.py --launchers srun mpirun --ranks 4 16 --repeat 3
    python bench/phases.py --ranks 16 --repeat 3 --publish   # also docs/data/phases-<UTC start>.md
    python bench/phases.py --launchers srun mpirun --ranks 4 --repeat 9 --baseline main   # before/after

``--baseline REF`` also runs ours as the package was at git ``REF``
(``ours_slurm_base``, ``ours_mpi_base``), interleaved: CPU, unlike wall
time, hardly moves with the machine's load, so a change of a few
milliseconds per rank shows in a few repeats.

The package is a byte-compiled snapshot, as in bench/run.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import run as bench

WRAPPER = bench.WORKLOADS / "_phases.py"
#: What runs under each launcher: ours and plain distributed over TLS.
IMPLS = {
    launcher: {i.name: i for i in bench.IMPLS if i.launcher.name == launcher and i.family in ("ours", "bare")}
    for launcher in ("mpirun", "srun")
}
RUNNERS = {"mpirun": "MPIRunner", "srun": "SLURMRunner"}
#: The milestones of a worker rank, in the order they are reached.
WORKER_MARKS = (
    "started", "distributed imported", "runner imported", "MPI ready", "runner made", "contact",
    "worker built", "worker started", "worker closing", "exit",
)
#: Where each rank has done what every implementation must do before the cluster can start.
READY = {"mpirun": "MPI ready", "srun": "imports done"}


class RunFailed(Exception):
    """A launch that did not exit 0 with its result and every rank's stamps."""


def run_once(impl: bench.Impl, ranks: int, source: bench.Source, timeout: float) -> dict:
    """One launch; every rank's stamps, the first result and the end (seconds since launch)."""
    tag = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="dask-runners-phases-") as cwd:
        stamps = Path(cwd) / "stamps"  # apart from what the workload writes (a scheduler file)
        stamps.mkdir()
        launched = time.time()
        env = {
            **os.environ, **source.env, **impl.launcher.env, **impl.env, **bench.agreed_in_advance(impl),
            "PHASES_OUT": str(stamps), "PHASES_LAUNCHED": repr(launched),
            "PHASES_FAMILY": "ours" if impl.family == "ours-base" else impl.family,
            "PHASES_RUNNER": RUNNERS[impl.launcher.name], bench.TAG_VAR: tag,
        }
        env["PYTHONPATH"] = os.pathsep.join([str(bench.WORKLOADS), env.get("PYTHONPATH", "")])
        command = [*impl.launcher.argv(ranks), sys.executable, str(WRAPPER), str(bench.WORKLOADS / impl.script)]
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            bench.stop_after_timeout(proc, tag)
            raise RunFailed(f"{impl.key} at {ranks} ranks: no end within {timeout:.0f} s") from None
        finally:
            bench.reap_strays(tag, grace=5.0)
        end = time.time() - launched
        ranks_seen = [json.loads(p.read_text()) for p in stamps.glob("rank-*.json")]
    first = re.findall(r"first_result=([\d.]+)", stdout)
    if proc.returncode != 0 or not first or len(ranks_seen) != ranks:
        raise RunFailed(f"{impl.key} at {ranks} ranks: exit {proc.returncode}, {len(ranks_seen)} ranks stamped, "
                        f"{'a' if first else 'no'} result\n{stderr[-2000:]}")
    return {"first_result": float(first[0]) - launched, "end": end,
            "ranks": {r["rank"]: r["stamps"] for r in ranks_seen}}


def _ready(stamps: dict, launcher: str) -> float:
    """When the rank was ready: ``MPI_Init`` done, or (``srun``) its last import done."""
    if launcher == "mpirun":
        return stamps["MPI ready"][0]
    return stamps.get("runner imported", stamps["distributed imported"])[0]


def _workers(run: dict) -> list[dict]:
    """The stamps of ``run``'s worker ranks (rank 0 runs the scheduler, rank 1 the client)."""
    return [stamps for rank, stamps in run["ranks"].items() if rank >= 2]


def summarize(runs: list[dict], launcher: str) -> dict:
    """Per milestone: medians over runs of the median and the last worker rank's time, and the CPU per step."""
    marks, cpu = {}, {}
    for mark in WORKER_MARKS:
        medians, lasts, steps = [], [], []
        for run in runs:
            workers = [s for s in _workers(run) if mark in s]
            if not workers:
                continue
            walls = [s[mark][0] for s in workers]
            medians.append(statistics.median(walls))
            lasts.append(max(walls))
            steps.append(statistics.median(_step_cpu(s, mark) for s in workers))
        if medians:
            marks[mark] = (statistics.median(medians), statistics.median(lasts))
            cpu[mark] = statistics.median(steps)
    ready = [max(_ready(s, launcher) for s in run["ranks"].values()) for run in runs]  # the last rank's, per run
    return {
        "marks": marks,
        "cpu": cpu,
        "worker cpu": statistics.median(statistics.median(s["exit"][1] for s in _workers(run)) for run in runs),
        "job cpu": statistics.median(sum(s["exit"][1] for s in run["ranks"].values()) for run in runs),
        "serving CPU per second": statistics.median(
            statistics.median(_serving_rate(s) for s in _workers(run)) for run in runs
        ),
        "scheduler listening": statistics.median(run["ranks"][0]["scheduler listening"][0] for run in runs),
        "first result": statistics.median(run["first_result"] for run in runs),
        "ready": statistics.median(ready),
        "ready to first result": statistics.median(run["first_result"] - r for run, r in zip(runs, ready)),
        "end": statistics.median(run["end"] for run in runs),
    }


def _serving_rate(stamps: dict) -> float:
    """CPU seconds per second of a worker rank between its worker's start and its close."""
    (started, cpu_started), (closing, cpu_closing) = stamps["worker started"], stamps["worker closing"]
    return (cpu_closing - cpu_started) / (closing - started)


def _step_cpu(stamps: dict, mark: str) -> float:
    """CPU seconds from the previous milestone this rank reached to ``mark``."""
    previous = [m for m in WORKER_MARKS[: WORKER_MARKS.index(mark)] if m in stamps]
    return stamps[mark][1] - (stamps[previous[-1]][1] if previous else 0.0)


def report(results: dict, failures: list[str], repeat: int, started: datetime.datetime) -> str:
    ended = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f"# Where the start-up time goes ({started:%Y-%m-%d %H:%M}–{ended:%H:%M} UTC)",
        "",
        f"`python bench/phases.py {' '.join(sys.argv[1:])}` at {bench._git_describe()}; medians of {repeat} "
        "interleaved runs. Wall: seconds since launch, when the median worker rank / the last one reached the "
        "milestone. CPU: milliseconds a worker rank (median) spent since its previous milestone. Ready: the last "
        "rank's `MPI_Init` done under `mpirun`; under `srun`, where no rank waits for another, its imports done.",
        "",
    ]
    for (launcher, ranks), by_impl in results.items():
        names = list(by_impl)
        ready = READY[launcher]
        lines += [f"## {launcher}, {ranks} ranks", "",
                  "| milestone | " + " | ".join(f"{n}: wall median / last | {n}: CPU ms" for n in names) + " |",
                  "|---|" + "---:|---:|" * len(names)]
        for mark in WORKER_MARKS:
            if not any(mark in by_impl[name]["marks"] for name in names):
                continue
            cells = []
            for name in names:
                summary = by_impl[name]
                if mark in summary["marks"]:
                    median, last = summary["marks"][mark]
                    cells += [f"{median:.2f} / {last:.2f}", f"{1e3 * summary['cpu'][mark]:.1f}"]
                else:
                    cells += ["—", "—"]
            lines.append(f"| {mark} | " + " | ".join(cells) + " |")
        for key, label in (("scheduler listening", "scheduler listening"), ("first result", "first result"),
                           ("end", "end"), ("ready", f"{ready}, last rank"),
                           ("ready to first result", f"{ready} (last rank) to first result")):
            lines.append(f"| {label} | " + " | ".join(f"{by_impl[n][key]:.2f} | " for n in names) + " |")
        lines.append("| CPU per worker rank, s | " + " | ".join(f" | {by_impl[n]['worker cpu']:.3f}" for n in names)
                     + " |")
        lines.append("| CPU of all ranks, s | " + " | ".join(f" | {by_impl[n]['job cpu']:.3f}" for n in names) + " |")
        lines.append("| worker rank's CPU while its worker serves, ms per s | "
                     + " | ".join(f" | {1e3 * by_impl[n]['serving CPU per second']:.1f}" for n in names) + " |")
        lines.append("")
    if failures:
        lines += ["## Points that failed", "", *(f"- {failure}" for failure in failures), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launchers", nargs="+", choices=sorted(IMPLS), default=["mpirun"])
    parser.add_argument("--ranks", type=int, nargs="+", default=[16])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--out", type=Path, default=bench.BENCH_DIR / "results")
    parser.add_argument("--publish", action="store_true",
                        help="also copy the report to docs/data/phases-<UTC start>.md")
    parser.add_argument("--baseline", metavar="GIT_REF",
                        help="also run ours as the package was at GIT_REF (NAME_base), interleaved")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    snapshot = Path(tempfile.mkdtemp(prefix="dask-runners-phases-src-"))
    results, failures = {}, []
    try:
        source = bench.Source.snapshot(snapshot)
        impls = {launcher: dict(by_name) for launcher, by_name in IMPLS.items()}
        if args.baseline:
            (snapshot / "baseline").mkdir()
            baseline = bench.Source.baseline(args.baseline, snapshot / "baseline")
            for by_name in impls.values():
                by_name.update({i.name: i for i in baseline.as_baseline_of(list(by_name.values()))})
        for launcher in args.launchers:
            for ranks in args.ranks:
                runs = {name: [] for name in impls[launcher]}
                try:
                    for _ in range(args.repeat):
                        for name, impl in impls[launcher].items():
                            runs[name].append(run_once(impl, ranks, source, args.timeout))
                except RunFailed as e:  # the other points still run
                    failures.append(str(e).splitlines()[0])
                    print(e, file=sys.stderr)
                    continue
                results[launcher, ranks] = {name: summarize(r, launcher) for name, r in runs.items()}
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    text = report(results, failures, args.repeat, started)
    (args.out / "phases.md").write_text(text + "\n")
    if args.publish:
        shutil.copy(args.out / "phases.md", bench.DOCS_DIR / "data" / f"phases-{started:%Y-%m-%dT%H%M}Z.md")
    print(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
