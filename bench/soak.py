#!/usr/bin/env python
"""Soak the shutdown of a busy cluster: count tracebacks and ERROR lines over many runs.

    python bench/soak.py [--repeat 5] [--ranks 8 16] [--launchers srun mpirun]
                         [--cases busy nanny early] [--tasks 20000] [--out bench/results/soak]

Every (launcher, ranks, case) runs ``workloads/soak.py`` ``--repeat`` times,
interleaved round-robin as in run.py: a busy body (``--tasks`` small tasks, an
all-to-all shuffle, data spilled to disk, more tasks in flight as it leaves),
the same with Nanny workers, and a body that leaves while half the workers
are still joining. A run counts as clean when the launcher exits 0, the client
rank checked every result (``SOAK ok=1``), stderr holds no traceback and no
ERROR line, and no process of the run is left. Prints a markdown table and
writes ``soak.json`` (every run) and ``soak.md`` to ``--out``; the exit status
is 0 only if every run was clean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the harness this one reuses)

LAUNCHERS = {"srun": (bench.SRUN, "slurm"), "mpirun": (bench.MPIRUN, "mpi")}
CASES = ("busy", "nanny", "early")


@dataclasses.dataclass
class SoakRun:
    launcher: str
    ranks: int
    case: str
    repeat: int
    exit_code: int | None = None
    timed_out: bool = False
    ok: bool = False  # the client rank checked every result
    tasks: int = 0
    tracebacks: int = 0
    errors: int = 0
    leftovers: int = 0
    seconds: float = 0.0  # launch -> launcher returned
    teardown: float | None = None  # the body's last line -> launcher returned
    log: str = ""

    @property
    def clean(self) -> bool:
        return self.exit_code == 0 and self.ok and not (self.tracebacks or self.errors or self.leftovers)


def soak_records(stdout: str) -> dict[str, str]:
    """Every ``SOAK key=value`` field the client rank printed, merged."""
    fields = {}
    for chunk in re.split(r"SOAK (?=\w+=)", stdout)[1:]:
        line = chunk.splitlines()[0] if chunk.strip() else ""
        fields.update(f.split("=", 1) for f in line.split() if "=" in f)
    return fields


def command(launcher: str, ranks: int, case: str, tasks: int) -> list[str]:
    prefix, runner = LAUNCHERS[launcher]
    script = bench.WORKLOADS / "soak.py"
    return [*prefix.argv(ranks), sys.executable, str(script), "--runner", runner, "--case", case, "--tasks", str(tasks)]


def run_once(run: SoakRun, tasks: int, timeout: float, log_dir: Path) -> SoakRun:
    """Launch one soak run in a fresh directory; fill ``run`` in from what it did."""
    tag = uuid.uuid4().hex
    env = {**os.environ, **LAUNCHERS[run.launcher][0].env, bench.TAG_VAR: tag, "PYTHONUNBUFFERED": "1"}
    argv = command(run.launcher, run.ranks, run.case, tasks)
    with tempfile.TemporaryDirectory(prefix="dask-runners-soak-") as cwd:
        start = time.time()
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            stdout, stderr, _ = bench.stop_after_timeout(proc, tag)
        end = time.time()
        run.leftovers, _ = bench.reap_strays(tag, grace=5.0)
    run.log = f"{run.launcher}-n{run.ranks}-{run.case}-r{run.repeat}"
    (log_dir / f"{run.log}.out").write_text(stdout)
    (log_dir / f"{run.log}.err").write_text(stderr)
    fill(run, proc.returncode, stdout, stderr, start, end)
    return run


def fill(run: SoakRun, exit_code: int, stdout: str, stderr: str, start: float, end: float) -> None:
    """What the run's output and exit status say."""
    fields = soak_records(stdout)
    run.exit_code = None if run.timed_out else exit_code
    run.ok = fields.get("ok") == "1" and fields.get("done") == "1"
    run.tasks = int(fields.get("tasks", 0))
    run.tracebacks, run.errors = bench.count_problems(stderr)
    run.seconds = end - start
    if "left" in fields:
        run.teardown = end - float(fields["left"])


def schedule(launchers, ranks, cases, repeats):
    """Every run, repeat by repeat, so that drift in the machine's load hits every kind alike."""
    for repeat in range(repeats):
        for launcher in launchers:
            for n in ranks:
                for case in cases:
                    yield SoakRun(launcher, n, case, repeat)


def summary(runs: list[SoakRun]) -> list[dict]:
    """One row per (launcher, ranks, case): counts, and median times."""
    rows = {}
    for run in runs:
        rows.setdefault((run.launcher, run.ranks, run.case), []).append(run)
    table = []
    for (launcher, ranks, case), group in rows.items():
        teardowns = [r.teardown for r in group if r.teardown is not None]
        table.append({
            "launcher": launcher, "ranks": ranks, "case": case, "runs": len(group),
            "clean": sum(r.clean for r in group), "tasks": sum(r.tasks for r in group),
            "tracebacks": sum(r.tracebacks for r in group), "errors": sum(r.errors for r in group),
            "failed": sum(r.exit_code != 0 for r in group), "leftovers": sum(r.leftovers for r in group),
            "median_s": bench._median([r.seconds for r in group]),
            "median_teardown_s": bench._median(teardowns),
            "max_teardown_s": max(teardowns, default=None),
        })
    return table


def markdown(table: list[dict]) -> str:
    columns = ["launcher", "ranks", "case", "runs", "clean", "tasks", "tracebacks", "errors", "failed",
               "leftovers", "median_s", "median_teardown_s", "max_teardown_s"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in table:
        cells = [bench._fmt(row[c]) if isinstance(row[c], float) or row[c] is None else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    total = {k: sum(r[k] for r in table) for k in ("runs", "clean", "tasks", "tracebacks", "errors", "failed")}
    lines.append("")
    lines.append(
        f"Total: {total['runs']} runs, {total['clean']} clean, {total['tasks']} tasks, "
        f"{total['tracebacks']} tracebacks, {total['errors']} ERROR lines, {total['failed']} non-zero exits."
    )
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--launchers", nargs="+", choices=sorted(LAUNCHERS), default=["srun", "mpirun"])
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before a run counts as hung")
    parser.add_argument("--out", type=Path, default=bench.BENCH_DIR / "results" / "soak")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    runs = []
    for run in schedule(args.launchers, args.ranks, args.cases, args.repeat):
        run_once(run, args.tasks, args.timeout, log_dir)
        runs.append(run)
        print(f"{run.log}: rc={run.exit_code} ok={run.ok} tasks={run.tasks} tracebacks={run.tracebacks} "
              f"errors={run.errors} leftovers={run.leftovers} {run.seconds:.1f} s", flush=True)
    table = summary(runs)
    text = f"Soak of {started}: `{' '.join(sys.argv)}`\n\n" + markdown(table)
    print(text)
    (args.out / "soak.md").write_text(text)
    record = {"started": started, "argv": sys.argv, "summary": table, "runs": [dataclasses.asdict(r) for r in runs]}
    (args.out / "soak.json").write_text(json.dumps(record, indent=1))
    return 0 if all(r.clean for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
