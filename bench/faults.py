#!/usr/bin/env python
"""Time what happens after a fault: ours against dask-jobqueue and dask-mpi.

    python bench/faults.py [--ranks 4] [--repeat 2] [--cap 30] [--out bench/results]

Every (scenario, implementation) runs ``workloads/fault.py`` under its real
launcher, interleaved round-robin as in run.py. The clock starts at the fault
(the client's ``BENCH fault=`` stamp; for a stale file or a taken port, at the launch) and
stops when the launcher has returned *and* no process of the run is left.
A run still going ``--cap`` seconds after the fault counts as a hang: it is
stopped as run.py stops a timed-out run, and reported as ``>30 s (hangs)``.

Writes ``faults.csv`` and ``faults.md`` to ``--out`` (and to docs/data/ with
``--publish``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the harness this one reuses)

SCENARIOS = ("client_killed", "scheduler_killed", "stale_file", "stale_file_late", "taken_port")
#: The scenarios whose fault is in place before the launch: their clock starts at the launch.
AT_LAUNCH = ("stale_file", "stale_file_late", "taken_port")
# (launcher, impl, scenarios it applies to): MPI broadcasts, so no file to go stale; dask-mpi's
# initialize takes no scheduler port.
CASES = [
    (bench.SRUN, "ours_slurm", SCENARIOS),
    (bench.SRUN, "jobqueue_slurm", SCENARIOS),
    (bench.MPIRUN, "ours_mpi", ("client_killed", "scheduler_killed", "taken_port")),
    (bench.MPIRUN, "daskmpi", ("client_killed", "scheduler_killed")),
]


@dataclasses.dataclass
class FaultRun:
    scenario: str
    launcher: str
    impl: str
    ranks: int
    repeat: int
    outcome: str = ""  # "ended", "hang" (still running at the cap) or "no fault" (never got there)
    after_fault: float | None = None  # s from the fault to: launcher returned and no process left
    launcher_after_fault: float | None = None  # s from the fault to the launcher's return
    exit_code: int | None = None  # the launcher's, if it returned by itself
    left_at_return: int = 0  # processes of the run alive when the launcher returned
    got_result: bool = False  # stale_file: the client had its result
    tracebacks: int = 0
    stderr_lines: int = 0
    log: str = ""


def dead_address() -> str:
    """A TCP address on this host where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def write_stale_file(directory: Path) -> None:
    """``scheduler.json`` as an earlier job (id 1, step 0) of ours would have left it."""
    stamp = {"launcher": "slurm", "job_id": "1", "step_id": "0", "restart_count": 0}
    payload = {"type": "Scheduler", "address": dead_address(), "id": "Scheduler-stale",
               "services": {}, "dask_runners": {"stamp": stamp, "host": socket.gethostname(),
                                                "pid": 1, "written": time.time() - 3600}}
    (directory / "scheduler.json").write_text(json.dumps(payload))


def _pump(stream, into: list[str]) -> None:
    for line in stream:
        into.append(line)


def run_fault(launcher, impl, scenario, ranks, repeat, cap, log_dir, source) -> FaultRun:
    result = FaultRun(scenario, launcher.name, impl, ranks, repeat,
                      log=f"fault-{scenario}-{launcher.name}-{impl}-n{ranks}-r{repeat}")
    tag = uuid.uuid4().hex
    env = {**os.environ, **source.env, **launcher.env, bench.TAG_VAR: tag}
    command = [*launcher.argv(ranks), sys.executable, str(bench.WORKLOADS / "fault.py"), impl, scenario]
    out: list[str] = []
    err: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dask-runners-fault-") as cwd, socket.socket() as taken:
        if scenario.startswith("stale_file"):
            write_stale_file(Path(cwd))
        if scenario == "taken_port":
            taken.bind(("", 0))
            taken.listen()
            env["BENCH_TAKEN_PORT"] = str(taken.getsockname()[1])
        start = time.time()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        pumps = [threading.Thread(target=_pump, args=(proc.stdout, out), daemon=True),
                 threading.Thread(target=_pump, args=(proc.stderr, err), daemon=True)]
        for pump in pumps:
            pump.start()
        fault = start if scenario in AT_LAUNCH else None
        returned = None
        while True:
            now = time.time()
            if fault is None:
                stamps = [r["fault"] for r in bench.parse_bench_lines("".join(out)) if "fault" in r]
                fault = float(stamps[0]) if stamps else None
            deadline = (fault + cap) if fault is not None else (start + 2 * cap)
            if returned is None and proc.poll() is not None:
                returned = now
                result.exit_code = proc.returncode
                result.left_at_return = len(bench._tagged(tag))
            if returned is not None and not bench._tagged(tag):
                ended = now
                break
            if now > deadline:
                ended = None
                bench.stop_after_timeout(proc, tag)
                break
            time.sleep(0.05)
        for pump in pumps:
            pump.join(timeout=10)
    stdout, stderr = "".join(out), "".join(err)
    (log_dir / f"{result.log}.out").write_text(stdout)
    (log_dir / f"{result.log}.err").write_text(stderr)
    result.tracebacks = bench.count_problems(stderr)[0]
    result.stderr_lines = len(stderr.splitlines())
    result.got_result = any("first_result" in r for r in bench.parse_bench_lines(stdout))
    if fault is None:
        result.outcome = "no fault"
    elif ended is None:
        result.outcome = "hang"
    else:
        result.outcome = "ended"
        result.after_fault = ended - fault
        result.launcher_after_fault = returned - fault
    return result


def describe(runs: list[FaultRun], cap: float) -> str:
    """Median time after the fault, or the hang, with exit codes seen."""
    ended = [r.after_fault for r in runs if r.outcome == "ended"]
    hangs = sum(r.outcome == "hang" for r in runs)
    parts = []
    if ended:
        parts.append(f"{statistics.median(ended):.2f} s" + (f" ({min(ended):.2f}–{max(ended):.2f})" if len(ended) > 1 else ""))
    if hangs:
        parts.append(f">{cap:g} s (hangs) ×{hangs}")
    if any(r.outcome == "no fault" for r in runs):
        parts.append("never reached the fault")
    return "; ".join(parts)


def summary(runs: list[FaultRun], cap: float, ranks: int) -> str:
    lines = [
        f"# Fault timings, {ranks} ranks, cap {cap:g} s",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f} at the end",
        "- time: from the fault (for a stale file or a taken port: from the launch) until the launcher has "
        "returned and no process of the run is left; median (min–max)",
        "",
        "| scenario | launcher | implementation | time after the fault | exit codes | "
        "left when launcher returned | result | tracebacks (median) | stderr lines (median) |",
        "|---|---|---|---|---|---:|---|---:|---:|",
    ]
    keys = list(dict.fromkeys((r.scenario, r.launcher, r.impl) for r in runs))
    for scenario, launcher, impl in keys:
        group = [r for r in runs if (r.scenario, r.launcher, r.impl) == (scenario, launcher, impl)]
        codes = sorted({str(r.exit_code) for r in group if r.exit_code is not None}) or ["—"]
        result = ("yes" if all(r.got_result for r in group) else "no") if scenario.startswith("stale_file") else ""
        lines.append(
            f"| {scenario} | {launcher} | {impl} | {describe(group, cap)} | {', '.join(codes)} "
            f"| {max(r.left_at_return for r in group)} | {result} "
            f"| {statistics.median(r.tracebacks for r in group):.0f} "
            f"| {statistics.median(r.stderr_lines for r in group):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cap", type=float, default=30.0, help="seconds after the fault")
    parser.add_argument("--out", type=Path, default=bench.BENCH_DIR / "results")
    parser.add_argument("--only", nargs="+", metavar="SCENARIO/IMPL",
                        help="a subset, e.g. client_killed/ours_slurm")
    parser.add_argument("--publish", action="store_true", help="also copy to docs/data/")
    args = parser.parse_args(argv)
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = [(launcher, impl, scenario) for scenario in SCENARIOS
            for launcher, impl, scenarios in CASES if scenario in scenarios
            and (not args.only or f"{scenario}/{impl}" in args.only)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="dask-runners-bench-src-") as snapshot_dir:
        source = bench.Source.snapshot(Path(snapshot_dir))
        for repeat in range(args.repeat):
            for launcher, impl, scenario in plan:
                r = run_fault(launcher, impl, scenario, args.ranks, repeat, args.cap, log_dir, source)
                runs.append(r)
                print(f"{scenario:17s} {launcher.name:6s} {impl:15s} {r.outcome:8s} "
                      f"after={bench._fmt(r.after_fault)} exit={r.exit_code} "
                      f"left={r.left_at_return} tb={r.tracebacks} lines={r.stderr_lines}", flush=True)
    with (args.out / "faults.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[x.name for x in dataclasses.fields(FaultRun)])
        writer.writeheader()
        writer.writerows(dataclasses.asdict(r) for r in runs)
    text = summary(runs, args.cap, args.ranks)
    (args.out / "faults.md").write_text(text)
    print(text)
    if args.publish:
        data = bench.DOCS_DIR / "data"
        data.mkdir(exist_ok=True)
        shutil.copy(args.out / "faults.csv", data / "faults.csv")
        shutil.copy(args.out / "faults.md", data / "faults.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
