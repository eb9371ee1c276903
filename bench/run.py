#!/usr/bin/env python
"""Benchmark dask_runners against dask-jobqueue and dask-mpi under real launchers.

Every implementation runs the same workload (bench/workloads/): start, wait for
all workers, run one task, leave. Runs are interleaved round-robin within each
repeat so that drift on the machine hits every implementation alike.

    python bench/run.py                     # ranks 2 3 4 8 16 32, 3 repeats, 3 launchers
    python bench/run.py --ranks 4 16 --repeat 5 --launchers srun mpirun --plot

At 2 ranks only the floor runs: every other implementation needs a scheduler,
a client and at least one worker, so 3 is their smallest world.

See bench/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import atexit
import compileall
import csv
import dataclasses
import datetime
import functools
import hashlib
import os
import random
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = BENCH_DIR.parent / "dask_runners"
WORKLOADS = BENCH_DIR / "workloads"
TAG_VAR = "RUNNERS_BENCH_TAG"  # set in every launched process; finds stragglers
PACKAGES = ("dask", "distributed", "dask-runners", "dask-jobqueue", "dask-mpi", "mpi4py")
OPENMPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
MULTINODE_CONF = "/etc/slurm-multinode/slurm.conf"  # ci/start-multinode-slurm.sh
DOCS_DIR = BENCH_DIR.parent / "docs"


# --------------------------------------------------------------------------- what runs
@dataclasses.dataclass(frozen=True)
class Launcher:
    name: str
    argv: Callable[[int], list[str]]  # ranks -> command prefix
    env: dict = dataclasses.field(default_factory=dict)
    #: The most ranks one launch can start, or None for no limit: a step of more tasks than
    #: the Slurm cluster has CPUs never starts without --overcommit (srun waits for them).
    capacity: Callable[[], int | None] = lambda: None


def slurm_cpus() -> int | None:
    """The CPUs of the Slurm cluster that ``srun`` reaches (``sinfo``'s total), or None if it cannot say."""
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    totals = [int(line.split("/")[-1]) for line in out.stdout.split() if line.count("/") == 3]
    return max(totals) if out.returncode == 0 and totals else None


@dataclasses.dataclass(frozen=True)
class Impl:
    name: str
    launcher: Launcher
    script: str  # file name in bench/workloads/
    family: str  # "ours", "ours-plain", "ours-base", "jobqueue", "dask-mpi", "bare" or "floor": what ratios compare
    env: dict = dataclasses.field(default_factory=dict)
    min_ranks: int = 3  # a scheduler, a client and one worker; the floor runs on 1
    default: bool = True  # run unless --only picks otherwise

    @property
    def key(self) -> str:
        return f"{self.launcher.name}/{self.name}"

    def command(self, ranks: int) -> list[str]:
        return [*self.launcher.argv(ranks), sys.executable, str(WORKLOADS / self.script)]


SRUN = Launcher("srun", lambda n: ["srun", "-n", str(n)], capacity=slurm_cpus)
MPIRUN = Launcher(
    "mpirun", lambda n: ["mpirun", "--oversubscribe", "-n", str(n)], OPENMPI_ENV
)
# The emulated 4-node Slurm: tasks spread over min(4, n) nodes (each a network
# namespace on this machine, sharing its filesystem and its 2 cores).
# --overcommit, since its 4 x 4 CPUs hold only 16 tasks otherwise.
SRUN_4NODE = Launcher(
    "srun-4node",
    lambda n: ["srun", "-N", str(min(4, n)), "-n", str(n), "--overcommit"],
    {"SLURM_CONF": MULTINODE_CONF},
)
LAUNCHERS = {launcher.name: launcher for launcher in (SRUN, MPIRUN, SRUN_4NODE)}

# Ours with TLS turned off through dask config, to measure what TLS costs.
PLAIN_TCP = {"DASK_RUNNERS__SECURITY": "False"}

# bare_tls.py under mpirun: every rank also calls MPI_Init, as the runners that use MPI do.
BARE_MPI = {"BENCH_BARE_MPI": "1"}

# The floors again, with rank 1 ending as a script ends (no os._exit): the least a
# job whose client code's process exits as Python does takes to end.
CLIENT_EXITS = {"BENCH_CLIENT_EXITS": "1"}

# The TLS-off variants measure what TLS costs; they run only when named with
# --only, to keep the default sweep short.
IMPLS = [
    Impl("ours_slurm", SRUN, "ours_slurm.py", "ours"),
    Impl("ours_slurm_plain", SRUN, "ours_slurm.py", "ours-plain", PLAIN_TCP, default=False),
    Impl("jobqueue_slurm", SRUN, "jobqueue_slurm.py", "jobqueue"),
    Impl("bare_tls", SRUN, "bare_tls.py", "bare"),
    Impl("floor", SRUN, "floor.py", "floor", min_ranks=1),
    Impl("floor_exit", SRUN, "floor.py", "floor-exit", CLIENT_EXITS, min_ranks=2),
    Impl("ours_mpi", MPIRUN, "ours_mpi.py", "ours"),
    Impl("ours_mpi_plain", MPIRUN, "ours_mpi.py", "ours-plain", PLAIN_TCP, default=False),
    Impl("daskmpi", MPIRUN, "daskmpi.py", "dask-mpi"),
    Impl("bare_tls", MPIRUN, "bare_tls.py", "bare", BARE_MPI),
    Impl("floor", MPIRUN, "floor.py", "floor", min_ranks=1),
    Impl("floor_mpi", MPIRUN, "floor_mpi.py", "floor-mpi", min_ranks=1),
    Impl("floor_mpi_exit", MPIRUN, "floor_mpi.py", "floor-mpi-exit", CLIENT_EXITS, min_ranks=2),
    Impl("ours_slurm", SRUN_4NODE, "ours_slurm.py", "ours"),
    Impl("jobqueue_slurm", SRUN_4NODE, "jobqueue_slurm.py", "jobqueue"),
    Impl("floor", SRUN_4NODE, "floor.py", "floor", min_ranks=1),
]


@dataclasses.dataclass(frozen=True)
class Source:
    """Which dask_runners code the launched processes import."""

    package: Path  # the dask_runners directory they import
    env: dict  # extra environment for every launched process
    description: str

    @classmethod
    def snapshot(cls, into: Path) -> Source:
        """Copy the package as it is now, and put the copy first on PYTHONPATH.

        The source tree may be edited while the benchmark runs; the copy keeps
        every run on the same code. PYTHONPATH comes before the editable
        install's finder, so the copy is what gets imported.
        """
        shutil.copytree(PACKAGE_DIR, into / "dask_runners",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # Bytecode, as an installed wheel has it (the anchors' packages have
        # theirs); without it, PYTHONDONTWRITEBYTECODE=1 would make every rank
        # compile the package anew and charge that to us alone.
        compileall.compile_dir(into / "dask_runners", quiet=1)
        path = os.pathsep.join(filter(None, [str(into), os.environ.get("PYTHONPATH")]))
        description = f"snapshot of {_git_describe()} taken at start"
        return cls(into / "dask_runners", {"PYTHONPATH": path}, description)

    @classmethod
    def baseline(cls, ref: str, into: Path) -> Source:
        """The package as git ``ref`` has it, byte-compiled like the snapshot."""
        archive = subprocess.run(["git", "-C", str(PACKAGE_DIR.parent), "archive", ref, PACKAGE_DIR.name],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        compileall.compile_dir(into / "dask_runners", quiet=1)
        path = os.pathsep.join(filter(None, [str(into), os.environ.get("PYTHONPATH")]))
        return cls(into / "dask_runners", {"PYTHONPATH": path}, f"git {ref}")

    def as_baseline_of(self, impls: list[Impl]) -> list[Impl]:
        """Each of ``impls`` that is ours, again on this source, as the family ``ours-base``."""
        return [dataclasses.replace(i, name=f"{i.name}_base", family="ours-base", env={**i.env, **self.env})
                for i in impls if i.family == "ours"]

    @classmethod
    def live(cls) -> Source:
        return cls(PACKAGE_DIR, {}, f"live tree at {PACKAGE_DIR} ({_git_describe()} at start)")

    def fingerprint(self) -> str:
        """Short hash of the package's Python files as they are now."""
        digest = hashlib.sha256()
        for path in sorted(self.package.rglob("*.py")):
            digest.update(str(path.relative_to(self.package)).encode() + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()[:10]


# --------------------------------------------------------------------------- one run
@dataclasses.dataclass
class Run:
    impl: str
    launcher: str
    ranks: int
    repeat: int
    status: str = ""  # ok, failed (exit code != 0 or no result), timeout
    exit_code: int | None = None
    wall: float | None = None  # launch -> launcher returned
    first_result: float | None = None  # launch -> client had the task's result
    ready: float | None = None  # floors: launch -> the last rank had imported (floor_mpi: and initialized MPI)
    teardown: float | None = None  # client body ended -> launcher returned
    spawn: float | None = None  # launch -> last rank's process started
    # CPU seconds (user + system) of the launcher and every process it reaped:
    # under mpirun that is every rank; under srun only srun (slurmstepd reaps the tasks).
    cpu: float | None = None
    ranks_seen: int = 0  # ranks that printed their start line
    tracebacks: int = 0  # stderr lines starting with "Traceback"
    errors: int = 0  # stderr lines containing " ERROR " or "ERROR:"
    strays: int = 0  # launched processes still alive when the launcher returned
    strays_killed: int = 0  # of those, still alive after the grace period
    load1: float | None = None  # 1-min load average just before the launch
    other_jobs: int | None = None  # Slurm jobs of anyone else running at launch
    src: str = ""  # hash of the dask_runners code the run imported
    log: str = ""  # stem of the saved stdout/stderr files


def parse_bench_lines(stdout: str) -> list[dict[str, str]]:
    """Every ``BENCH key=value ...`` record of ``stdout`` as a dict.

    Records are split on the ``BENCH`` marker rather than on newlines, since
    launchers may run two ranks' lines together.
    """
    records = []
    for chunk in re.split(r"BENCH (?=\w+=)", stdout)[1:]:
        fields = chunk.splitlines()[0].split() if chunk.strip() else []
        records.append(dict(f.split("=", 1) for f in fields if "=" in f))
    return records


def count_problems(stderr: str) -> tuple[int, int]:
    lines = stderr.splitlines()
    tracebacks = sum(line.startswith("Traceback") for line in lines)
    errors = sum(" ERROR " in line or "ERROR:" in line for line in lines)
    return tracebacks, errors


def _tagged(tag: str) -> dict[int, dict[str, str]]:
    """Live processes whose environment carries ``TAG_VAR=tag``: pid -> environment.

    Every process a run starts inherits the tag (srun and mpirun pass the
    environment on), so this finds exactly what that run launched, wherever
    it was reparented, and nothing else.
    """
    needle = f"{TAG_VAR}={tag}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if needle in environ and not _is_zombie(entry):
                pairs = (item.decode(errors="replace").split("=", 1) for item in environ)
                found[int(entry.name)] = dict(p for p in pairs if len(p) == 2)
        except OSError:
            continue  # gone meanwhile
    return found


def _is_zombie(proc_dir: Path) -> bool:
    return (proc_dir / "stat").read_text().rsplit(") ", 1)[-1].startswith("Z")


def _kill(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def reap_strays(tag: str, grace: float) -> tuple[int, int]:
    """Wait up to ``grace`` s for the run's processes to go; kill the rest.

    Returns (how many were alive when called, how many had to be killed).
    """
    alive = _tagged(tag)
    remaining = alive
    deadline = time.monotonic() + grace
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = _tagged(tag)
    _kill(remaining)
    return len(alive), len(remaining)


def running_slurm_jobs() -> int | None:
    """How many Slurm jobs are running now (none of ours is, between runs)."""
    try:
        out = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return len(out.split())


def stop_after_timeout(proc: subprocess.Popen, tag: str) -> tuple[str, str, int]:
    """End a timed-out run; return its output and how many leftovers were killed.

    SIGTERM to the launcher's process group first (srun and mpirun pass it to
    their tasks), then SIGKILL, then cancel the Slurm job and kill every
    process still carrying the run's tag.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=5)
            break
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
    leftovers = _tagged(tag)
    for job_id in {env["SLURM_JOB_ID"] for env in leftovers.values() if "SLURM_JOB_ID" in env}:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
    _kill(leftovers)
    try:
        return (*proc.communicate(timeout=10), len(leftovers))
    except subprocess.TimeoutExpired:  # something still holds the pipes
        return "", "(bench: output lost, the pipes did not close)\n", len(leftovers)


def run_once(
    impl: Impl, ranks: int, repeat: int, timeout: float, log_dir: Path, source: Source
) -> Run:
    """Launch one implementation once in a fresh directory and measure it."""
    run = Run(impl.name, impl.launcher.name, ranks, repeat, src=source.fingerprint())
    which = f"r{repeat}" if repeat >= 0 else "warmup"
    run.log = f"{impl.launcher.name}-{impl.name}-n{ranks}-{which}"
    tag = uuid.uuid4().hex
    env = {**os.environ, **source.env, **impl.launcher.env, **impl.env, **agreed_in_advance(impl), TAG_VAR: tag}
    timed_out, killed = False, 0
    with tempfile.TemporaryDirectory(prefix="dask-runners-bench-") as cwd:
        run.load1 = os.getloadavg()[0]
        run.other_jobs = running_slurm_jobs()
        cpu_before = _children_cpu()
        start = time.time()
        proc = subprocess.Popen(
            impl.command(ranks),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, to stop it on timeout
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            end = time.time()
        except subprocess.TimeoutExpired:
            end = time.time()
            timed_out = True
            stdout, stderr, killed = stop_after_timeout(proc, tag)
        except BaseException:  # Ctrl-C: the launcher has its own session, stop it too
            stop_after_timeout(proc, tag)
            raise
        run.cpu = _children_cpu() - cpu_before
        strays, strays_killed = reap_strays(tag, grace=5.0)
        run.strays, run.strays_killed = strays + killed, strays_killed + killed
    (log_dir / f"{run.log}.out").write_text(stdout)
    (log_dir / f"{run.log}.err").write_text(stderr)
    fill_measurements(run, start, end, proc.returncode, timed_out, stdout, stderr)
    return run


def agreed_in_advance(impl: Impl) -> dict:
    """What bare_tls.py is given before its job starts: the scheduler's address and the TLS credentials."""
    if impl.family != "bare":
        return {}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return {"BENCH_BARE_ADDRESS": f"tls://127.0.0.1:{port}", "BENCH_BARE_TLS": str(bare_credentials())}


@functools.lru_cache(maxsize=1)
def bare_credentials() -> Path:
    """A private directory with one self-signed certificate (``ca.pem``, ``cert.pem``, ``key.pem``), made once."""
    from distributed.security import Security

    temporary = Security.temporary()
    directory = Path(tempfile.mkdtemp(prefix="dask-runners-bench-tls-"))  # mode 0700
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    pems = {"ca.pem": temporary.tls_ca_file, "cert.pem": temporary.tls_scheduler_cert,
            "key.pem": temporary.tls_scheduler_key}
    for name, pem in pems.items():
        fd = os.open(directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(pem)
    return directory


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fill_measurements(run, start, end, exit_code, timed_out, stdout, stderr) -> None:
    records = parse_bench_lines(stdout)
    stamps = {k: float(v) for r in records for k, v in r.items() if k in ("first_result", "body_exit")}
    starts = [float(r["rank_start"]) for r in records if "rank_start" in r]
    run.exit_code = None if timed_out else exit_code
    run.wall = end - start
    run.ranks_seen = len(starts)
    run.spawn = max(starts) - start if starts else None
    if "first_result" in stamps:
        run.first_result = stamps["first_result"] - start
    readies = [float(r["ready"]) for r in records if "ready" in r]
    if len(readies) == run.ranks:
        run.ready = max(readies) - start
    if "body_exit" in stamps and not timed_out:
        run.teardown = end - stamps["body_exit"]
    elif run.ready is not None and not timed_out:  # a floor: it could end once its last rank was ready
        run.teardown = end - start - run.ready
    run.tracebacks, run.errors = count_problems(stderr)
    expects_result = not run.impl.startswith("floor")
    if timed_out:
        run.status = "timeout"
    elif exit_code != 0 or (expects_result and run.first_result is None):
        run.status = "failed"
    else:
        run.status = "ok"


# --------------------------------------------------------------------------- the suite
def schedule(impls: list[Impl], ranks: list[int], repeats: int, capacity: dict | None = None):
    """Round-robin: each repeat runs every (ranks, impl) once.

    Within a repeat the implementations at each rank count come in an order
    of their own, shuffled with the repeat's number as the seed (the same
    plan every time): a job can leave the machine slower for the next one
    (its processes' memory freed, MPI's session files removed), and in a
    fixed order one implementation would always follow the same one. An
    implementation is left out at rank counts below its ``min_ranks``, and
    above its launcher's ``capacity`` (a launcher name's most ranks, in
    ``capacity``).
    """
    capacity = capacity or {}
    for repeat in range(repeats):
        order = random.Random(repeat)
        for n in ranks:
            for impl in order.sample(impls, len(impls)):
                if impl.min_ranks <= n <= (capacity.get(impl.launcher.name) or n):
                    yield repeat, n, impl


def run_suite(impls, ranks, repeats, timeout, log_dir, source: Source) -> list[Run]:
    runs = []
    capacity = {name: launcher.capacity() for name, launcher in {i.launcher.name: i.launcher for i in impls}.items()}
    for name, most in sorted(capacity.items()):
        if most is not None and max(ranks) > most:
            print(f"{name}: no launch of more than {most} ranks (its Slurm has {most} CPUs); "
                  f"{[n for n in ranks if n > most]} left out", flush=True)
    plan = list(schedule(impls, ranks, repeats, capacity))
    for i, (repeat, n, impl) in enumerate(plan, 1):
        run = run_once(impl, n, repeat, timeout, log_dir, source)
        runs.append(run)
        print(
            f"[{i:3d}/{len(plan)}] {impl.launcher.name:10s} {impl.name:15s} n={n:<3d} "
            f"{run.status:7s} wall={_fmt(run.wall)} first={_fmt(run.first_result)} "
            f"teardown={_fmt(run.teardown)} tb={run.tracebacks} err={run.errors}"
            + (f" strays={run.strays}/{run.strays_killed}" if run.strays else ""),
            flush=True,
        )
    return runs


def warm_up(impls, ranks: int, timeout: float, log_dir: Path, source: Source) -> bool:
    """Run every implementation once, unrecorded; say whether all succeeded.

    This fills the file cache, and catches a broken setup (or a package caught
    mid-edit) in one short round rather than a timeout per run.
    """
    ok = True
    for impl in impls:
        run = run_once(impl, max(ranks, impl.min_ranks), -1, timeout, log_dir, source)
        print(f"warm-up {impl.launcher.name:10s} {impl.name:15s} n={run.ranks:<3d} {run.status}",
              flush=True)
        if run.status != "ok":
            ok = False
            err = (log_dir / f"{run.log}.err").read_text().splitlines()
            print("\n".join(["    " + line for line in err[-15:]]), flush=True)
    return ok


def write_csv(runs: list[Run], path: Path) -> None:
    fields = [f.name for f in dataclasses.fields(Run)]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            writer.writerow(dataclasses.asdict(run))


def read_csv(path: Path) -> list[Run]:
    """The runs of a ``runs.csv`` written by :func:`write_csv`."""
    types = {f.name: f.type for f in dataclasses.fields(Run)}
    runs = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            values = {}
            for name, text in row.items():
                kind = types[name]
                if text == "":
                    values[name] = None if "None" in kind else text
                elif kind.startswith("int"):
                    values[name] = int(text)
                elif kind.startswith("float"):
                    values[name] = float(text)
                else:
                    values[name] = text
            runs.append(Run(**values))
    return runs


# --------------------------------------------------------------------------- import cost
IMPORT_SNIPPET = (
    "import time; t=time.perf_counter(); import distributed; t1=time.perf_counter(); "
    "{statement}; t2=time.perf_counter(); print(t1-t, t2-t1)"
)

#: What the workloads import besides distributed: a runner class, not just
#: its package (``dask_runners`` loads its runners when they are first named).
IMPORTS = (
    "from dask_runners import SLURMRunner",
    "from dask_runners import MPIRunner",
    "from dask_jobqueue.slurm import SLURMRunner",
    "from dask_mpi import initialize",
)


def measure_import(
    statement: str, source: Source, n: int = 10, cached: bool = False
) -> tuple[float, float]:
    """Median seconds of (import distributed, then run the import ``statement`` on top).

    ``cached=True`` lets Python keep bytecode, in a throw-away
    PYTHONPYCACHEPREFIX so no ``__pycache__`` lands in the source tree; by
    default the environment is left as it is (it may set
    PYTHONDONTWRITEBYTECODE, and then the editable dask_runners is compiled
    from source in every process).
    """
    code = IMPORT_SNIPPET.format(statement=statement)
    with tempfile.TemporaryDirectory(prefix="dask-runners-bench-pyc-") as prefix:
        env = {**os.environ, **source.env}
        if cached:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = prefix
        samples = []
        for i in range(n + 1):
            out = subprocess.run(
                [sys.executable, "-c", code],
                capture_output=True, text=True, timeout=60, check=True, env=env,
                cwd=tempfile.gettempdir(),  # not the repository, whose package would win
            ).stdout
            if i:  # the first run warms the file and bytecode caches
                samples.append(tuple(map(float, out.split())))
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def measure_imports(source: Source, statements=IMPORTS) -> dict:
    """{(statement, cached): (distributed s, added s)} for every import statement, both ways."""
    return {
        (statement, cached): measure_import(statement, source, cached=cached)
        for statement in statements
        for cached in (False, True)
    }


# --------------------------------------------------------------------------- summary
def _fmt(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}×"


def _diff(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a - b:+.2f}"


def group_stats(runs: list[Run]) -> dict:
    """Median timings per (launcher, ranks, impl), over the successful runs."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.launcher, run.ranks, run.impl), []).append(run)
    stats = {}
    for key, group in groups.items():
        ok = [r for r in group if r.status == "ok"]
        stats[key] = {
            "n": len(group),
            "ok": len(ok),
            "wall": _median(r.wall for r in ok),
            "wall_max": max((r.wall for r in ok), default=None),
            "first_result": _median(r.first_result for r in ok),
            "ready": _median(r.ready for r in ok),
            "teardown": _median(r.teardown for r in ok),
            "spawn": _median(r.spawn for r in ok),
            "cpu_per_rank": _median(r.cpu / r.ranks for r in ok if r.cpu is not None)
            if key[0] == MPIRUN.name else None,
            "tracebacks": _median(r.tracebacks for r in group),
            "tracebacks_max": max(r.tracebacks for r in group),
            "errors": _median(r.errors for r in group),
            "strays": sum(r.strays for r in group),
        }
    return stats


def header_lines(import_costs: dict, runs: list[Run], source: Source, args) -> list[str]:
    versions = ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
    lines = [
        "# dask_runners benchmark",
        "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- host: {socket.gethostname()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"- packages: {versions}",
        f"- launchers: {_first_line(['srun', '--version'])}; "
        f"{_first_line(['mpirun', '--version'])}",
        f"- dask_runners source: {source.description}; {_source_states(runs)}",
        f"- ranks {args.ranks}, {args.repeat} repeats, timeout {args.timeout:g} s per run",
        f"- 1-min load average: {_fmt(args.load_before)} before, {_fmt(os.getloadavg()[0])} after; "
        f"{sum(bool(r.other_jobs) for r in runs)}/{len(runs)} runs started while another "
        "Slurm job was running",
        "",
        "## Import cost on top of `import distributed` (median of 10, ms)",
        "",
    ]
    lines += [
        "| import | added, as configured | added, bytecode cached | `import distributed` itself |",
        "|---|---:|---:|---:|",
    ]
    for statement in dict.fromkeys(m for m, _ in import_costs):
        base, added = import_costs[statement, False]
        _, added_cached = import_costs[statement, True]
        lines.append(f"| `{statement}` | +{added * 1000:.1f} | +{added_cached * 1000:.1f} "
                     f"| {base * 1000:.0f} |")
    lines += [
        "",
        f"As configured: PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}. "
        "Bytecode cached: in a temporary PYTHONPYCACHEPREFIX.",
    ]
    return lines


def _source_states(runs: list[Run]) -> str:
    states = list(dict.fromkeys(r.src for r in runs))
    if len(states) <= 1:
        return f"code hash {states[0] if states else '?'} for every run"
    return (f"WARNING: the code changed during the benchmark, {len(states)} states "
            f"({', '.join(states)}); see the src column of runs.csv")


def results_table(stats: dict) -> list[str]:
    lines = [
        "## Medians per implementation (seconds; timings over successful runs)",
        "",
        "A floor's first result is when its last rank was ready: `import distributed` done "
        "(floor_mpi: and `MPI_Init`). No implementation's first result can come sooner.",
        "",
        "| launcher | ranks | impl | ok/n | wall | wall max | over floor | first result "
        "| teardown | spawn | CPU s per rank | tracebacks (max) | ERROR lines | strays |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (launcher, ranks, impl), s in sorted(stats.items()):
        floor = stats.get((launcher, ranks, "floor"), {}).get("wall")
        over = None if s["wall"] is None or floor is None or impl == "floor" else s["wall"] - floor
        first = s["ready"] if impl.startswith("floor") else s["first_result"]
        lines.append(
            f"| {launcher} | {ranks} | {impl} | {s['ok']}/{s['n']} | {_fmt(s['wall'])} "
            f"| {_fmt(s['wall_max'])} | {_fmt(over)} | {_fmt(first)} "
            f"| {_fmt(s['teardown'])} | {_fmt(s['spawn'])} | {_fmt(s['cpu_per_rank'], 3)} "
            f"| {_fmt(s['tracebacks'], 0)} ({s['tracebacks_max']}) | {_fmt(s['errors'], 0)} "
            f"| {s['strays']} |"
        )
    return lines


def first_result_floor(stats: dict, launcher: str, ranks: int) -> float | None:
    """The soonest any implementation's first result can come: the last rank ready, MPI's floor where measured."""
    for impl in ("floor_mpi", "floor"):
        ready = stats.get((launcher, ranks, impl), {}).get("ready")
        if ready is not None:
            return ready
    return None


def points(stats: dict, impls: list[Impl]):
    """``(launcher, ranks, {family: stats})`` for every point measured, in order."""
    for launcher, ranks in sorted({(k[0], k[1]) for k in stats}):
        names = {i.family: i.name for i in impls if i.launcher.name == launcher}
        yield launcher, ranks, {family: stats[key] for family, name in names.items()
                                if (key := (launcher, ranks, name)) in stats}


def ratio_table(stats: dict, impls: list[Impl]) -> list[str]:
    lines = [
        "## Ours against the anchors (ratio of medians, < 1 means ours is faster; Δ = ours − anchor)",
        "",
        "The first-result floor is the `ready` of floor_mpi under mpirun, of floor otherwise; "
        "`0.9 × anchor` is the anchor's first result × 0.9.",
        "",
        "| launcher | ranks | comparison | wall | wall Δ (s) | first result | first result: ours / anchor / "
        "0.9 × anchor / floor (s) | teardown | teardown Δ (s) | floor wall |",
        "|---|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for launcher, ranks, at in points(stats, impls):
        ours = at.get("ours")
        floor = stats.get((launcher, ranks, "floor"), {}).get("wall")
        first_floor = first_result_floor(stats, launcher, ranks)
        for family in ("ours-plain", "ours-base", "jobqueue", "dask-mpi", "bare"):
            other = at.get(family)
            if not ours or not other:
                continue
            lines.append(
                f"| {launcher} | {ranks} | ours / {FAMILY_NAMES.get(family, family)} "
                f"| {_ratio(ours['wall'], other['wall'])} "
                f"| {_diff(ours['wall'], other['wall'])} "
                f"| {_ratio(ours['first_result'], other['first_result'])} "
                f"| {_fmt(ours['first_result'])} / {_fmt(other['first_result'])} / "
                f"{_fmt(_times(0.9, other['first_result']))} / "
                f"{_fmt(first_floor)} "
                f"| {_ratio(ours['teardown'], other['teardown'])} "
                f"| {_diff(ours['teardown'], other['teardown'])} | {_fmt(floor)} |"
            )
    return lines


FAMILY_NAMES = {"ours-plain": "ours without TLS", "ours-base": "ours at --baseline",
                "bare": "bare distributed over TLS"}
ANCHORS = ("jobqueue", "dask-mpi")


def bare_table(stats: dict, impls: list[Impl]) -> list[str]:
    """bare_tls against the anchor: what a runner's targets ask, beside what distributed alone needs."""
    lines = [
        "## The least distributed needs: bare_tls against the anchor",
        "",
        "bare_tls runs no runner: its address and TLS credentials are agreed before the job, so what "
        "it takes is distributed's own bring-up of a TLS cluster, its one task and its teardown. "
        "A target below its first result asks a runner to be faster than distributed alone. "
        "The least whole run is bare_tls's first result and the floor's teardown (floor_mpi's "
        "under mpirun): the least a job takes to end once every rank could (see the floors). "
        "The next column takes the teardown of the floor whose rank 1 ends as a script ends "
        "(floor_exit, floor_mpi_exit): the client code's process belongs to the script, so "
        "every runner's job ends with that exit.",
        "",
        "| launcher | ranks | first result: bare / anchor | 0.9 × anchor | first result: ours / bare "
        "| whole run: bare / anchor | least whole run | least, rank 1 exiting as a script "
        "| 0.85 × anchor | whole run: ours |",
        "|---|---:|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for launcher, ranks, at in points(stats, impls):
        bare, ours = at.get("bare"), at.get("ours", {})
        anchor = next((at[family] for family in ANCHORS if family in at), None)
        if not bare or not anchor:
            continue
        floor = at.get("floor-mpi" if launcher == "mpirun" else "floor", {})
        exiting = at.get("floor-mpi-exit" if launcher == "mpirun" else "floor-exit", {})
        least = _sum(bare["first_result"], floor.get("teardown"))
        least_exiting = _sum(bare["first_result"], exiting.get("teardown"))
        lines.append(
            f"| {launcher} | {ranks} "
            f"| {_fmt(bare['first_result'])} / {_fmt(anchor['first_result'])} "
            f"({_ratio(bare['first_result'], anchor['first_result'])}) "
            f"| {_fmt(_times(0.9, anchor['first_result']))} "
            f"| {_fmt(ours.get('first_result'))} / {_fmt(bare['first_result'])} "
            f"({_ratio(ours.get('first_result'), bare['first_result'])}) "
            f"| {_fmt(bare['wall'])} / {_fmt(anchor['wall'])} ({_ratio(bare['wall'], anchor['wall'])}) "
            f"| {_fmt(least)} | {_fmt(least_exiting)} | {_fmt(_times(0.85, anchor['wall']))} "
            f"| {_fmt(ours.get('wall'))} |"
        )
    return lines


def _times(factor: float, value: float | None) -> float | None:
    return None if value is None else factor * value


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def problems_list(runs: list[Run]) -> list[str]:
    bad = [r for r in runs if r.status != "ok" or r.strays or r.ranks_seen != r.ranks]
    if not bad:
        return ["## Problems", "", "None: every run exited 0, got its result, and left no processes."]
    lines = ["## Problems", ""]
    for r in bad:
        lines.append(
            f"- {r.launcher} {r.impl} n={r.ranks} repeat {r.repeat}: {r.status}, "
            f"exit {r.exit_code}, {r.ranks_seen}/{r.ranks} ranks started, "
            f"strays {r.strays} (killed {r.strays_killed}); "
            f"logs `logs/{r.log}.out|.err`"
        )
    return lines


def summary_markdown(runs, impls, import_costs, source, args) -> str:
    stats = group_stats(runs)
    sections = [
        header_lines(import_costs, runs, source, args),
        results_table(stats),
        ratio_table(stats, impls),
        bare_table(stats, impls),
        problems_list(runs),
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return f"{argv[0]} unavailable"
    return out.strip().splitlines()[0] if out.strip() else argv[0]


def _git_describe() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH_DIR.parent), "describe", "--always", "--dirty"],
            capture_output=True, text=True, timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    return out or "unknown"


# --------------------------------------------------------------------------- plots
METRICS = (
    ("first_result", "start-up: launch → first result"),
    ("teardown", "teardown: body left → launcher returned"),
    ("wall", "whole run: launch → launcher returned"),
)
LABELS = {"ours": "dask_runners", "ours-plain": "dask_runners, TLS off", "ours-base": "dask_runners at --baseline",
          "jobqueue": "dask-jobqueue 0.9", "dask-mpi": "dask-mpi", "floor": "floor (import distributed)",
          "floor-mpi": "MPI floor (and MPI_Init)", "bare": "bare distributed, TLS, agreed in advance",
          "floor-exit": "floor, rank 1 exits as a script", "floor-mpi-exit": "MPI floor, rank 1 exits as a script"}
STYLES = {"ours": ("C0", "o", "-"), "ours-plain": ("C0", "o", ":"), "ours-base": ("C2", "o", "--"),
          "jobqueue": ("C1", "s", "-"),
          "dask-mpi": ("C3", "s", "-"), "bare": ("C4", "D", "-."), "floor": ("0.4", "^", "--"),
          "floor-mpi": ("0.6", "v", ":"), "floor-exit": ("0.4", "^", "-."), "floor-mpi-exit": ("0.6", "v", "-.")}


def plot(runs: list[Run], impls: list[Impl], out: Path, when: str) -> list[Path]:
    """One PNG per launcher: median of each metric against ranks, a line per implementation.

    The bars span the fastest and slowest successful run of each point.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not installed (pip install -e .[bench]); skipping plots")
        return []
    family = {(i.launcher.name, i.name): i.family for i in impls}
    written = []
    for launcher in sorted({r.launcher for r in runs}):
        fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
        names = sorted({r.impl for r in runs if r.launcher == launcher},
                       key=lambda n: list(STYLES).index(family.get((launcher, n), "floor")))
        for ax, (metric, title) in zip(axes, METRICS):
            for name in names:
                fam = family.get((launcher, name), "floor")
                field = metric
                if fam.startswith("floor"):
                    if metric == "teardown":
                        continue  # a floor has no body
                    if metric == "first_result":
                        field = "ready"  # the soonest a first result can come
                xs, mid, low, high = [], [], [], []
                for n in sorted({r.ranks for r in runs if r.launcher == launcher and r.impl == name}):
                    values = [getattr(r, field) for r in runs if r.launcher == launcher
                              and r.impl == name and r.ranks == n and r.status == "ok"]
                    values = [v for v in values if v is not None]
                    if values:
                        xs.append(n)
                        mid.append(statistics.median(values))
                        low.append(mid[-1] - min(values))
                        high.append(max(values) - mid[-1])
                color, marker, line = STYLES[fam]
                ax.errorbar(xs, mid, yerr=[low, high], color=color, marker=marker, linestyle=line,
                            capsize=3, label=LABELS[fam])
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r.ranks for r in runs}), [str(n) for n in sorted({r.ranks for r in runs})])
            ax.set_xlabel("ranks")
            ax.set_ylabel("seconds (median; bars: min–max)")
            ax.set_title(title, fontsize=10)
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
        axes[-1].legend(fontsize=8)
        fig.suptitle(f"{launcher}, {when}", fontsize=10)
        fig.tight_layout()
        path = out / f"bench-{launcher}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
        print(f"wrote {path}")
    return written


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[2, 3, 4, 8, 16, 32])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--launchers", nargs="+", choices=sorted(LAUNCHERS), default=sorted(LAUNCHERS),
                        help="which launchers to run (default: all three)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--only", nargs="+", metavar="LAUNCHER/IMPL",
                        help="run a subset, e.g. srun/ours_slurm mpirun/floor")
    parser.add_argument("--plot", action="store_true",
                        help="PNG line plots in --out (needs matplotlib: pip install -e .[bench])")
    parser.add_argument("--publish", action="store_true",
                        help="also write the plots to docs/images/ and runs.csv and summary.md "
                             "to docs/data/ (implies --plot)")
    parser.add_argument("--replot", type=Path, metavar="RUNS_CSV",
                        help="only draw the plots of an earlier runs.csv into --out")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the unrecorded round that first runs every implementation once")
    parser.add_argument("--baseline", metavar="GIT_REF",
                        help="also run ours as the package was at GIT_REF, interleaved with the rest "
                             "(implementations NAME_base), for a before/after comparison in one run")
    parser.add_argument("--live", action="store_true",
                        help="import dask_runners from the source tree as it changes, "
                             "instead of a snapshot taken at start")
    return parser.parse_args(argv)


def select_impls(only: list[str] | None, launchers: list[str]) -> list[Impl]:
    if not only:
        return [i for i in IMPLS if i.default and i.launcher.name in launchers]
    unknown = set(only) - {i.key for i in IMPLS}
    if unknown:
        sys.exit(f"unknown implementation(s) {sorted(unknown)}; known: {[i.key for i in IMPLS]}")
    return [i for i in IMPLS if i.key in only]


def main(argv=None) -> int:
    args = parse_args(argv)
    impls = select_impls(args.only, args.launchers)
    if args.replot:
        args.out.mkdir(parents=True, exist_ok=True)
        plot(read_csv(args.replot), IMPLS, args.out, f"from {args.replot}")
        return 0
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    args.load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dask-runners-bench-src-") as snapshot_dir:
        source = Source.live() if args.live else Source.snapshot(Path(snapshot_dir))
        print(f"dask_runners: {source.description}", flush=True)
        if args.baseline:
            baseline_dir = Path(snapshot_dir) / "baseline"
            baseline_dir.mkdir()
            baseline = Source.baseline(args.baseline, baseline_dir)
            impls = [each for impl in impls for each in [impl, *baseline.as_baseline_of([impl])]]
            print(f"baseline: {baseline.description}", flush=True)
        if not args.no_warmup and not warm_up(
            impls, min(args.ranks), min(args.timeout, 60.0), log_dir, source
        ):
            print("warm-up failed; not benchmarking (logs in {}; --no-warmup to skip)".format(log_dir))
            return 2
        import_costs = measure_imports(source)
        runs = run_suite(impls, args.ranks, args.repeat, args.timeout, log_dir, source)

    write_csv(runs, args.out / "runs.csv")
    summary = summary_markdown(runs, impls, import_costs, source, args)
    (args.out / "summary.md").write_text(summary)
    print()
    print(summary)
    print(f"wrote {args.out / 'runs.csv'} and {args.out / 'summary.md'}")
    when = (f"{datetime.date.today().isoformat()}, {os.cpu_count()} cores, "
            f"{args.repeat} repeats, load {args.load_before:.1f} at start")
    if args.plot or args.publish:
        plot(runs, impls, args.out, when)
    if args.publish:
        plot(runs, impls, DOCS_DIR / "images", when)
        data = DOCS_DIR / "data"
        data.mkdir(exist_ok=True)
        shutil.copy(args.out / "runs.csv", data / "bench-runs.csv")
        shutil.copy(args.out / "summary.md", data / "bench-summary.md")
        print(f"published to {DOCS_DIR / 'images'} and {data}")
    return 0 if all(r.status == "ok" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
