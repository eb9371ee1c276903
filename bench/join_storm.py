"""Join storm: thousands of workers join one scheduler at once; what does the scheduler pay?

A job's worker ranks arrive together. This benchmark starts one scheduler in a
process of its own and N real ``distributed.Worker`` instances in a few worker
processes (many workers on each process's one event loop), holds them all at a
barrier, then lets every worker join at once, over real sockets. Three kinds
of scheduler take the same storm:

``bare-tcp``
    a plain ``distributed.Scheduler`` on TCP; plain ``Worker`` instances join.
``bare-tls``
    the same with a ``distributed.Security`` made from one job credential
    (:class:`dask_runners.security.JobCredentials`), on TLS.
``ours``
    the scheduler started by our scheduler rank's own service
    (:class:`dask_runners.services.scheduler.SchedulerService`, with the same
    credential), and workers that join as our worker ranks do
    (:func:`join_our_way`, which follows the package measured).

The scheduler process measures its own CPU (``getrusage``, every thread) from
the barrier's release until all N workers run (``len(scheduler.running) ==
N``), the time that takes, the heartbeats it answered meanwhile, and its open
files and sockets then and once the workers' first heartbeats have opened
their own connections. Its log tells how many TLS handshakes a worker gave up
on (distributed's ``connect`` retries a first try that takes over a fifth of
its timeout). The storm ends as each kind ends a cluster: ours by the
scheduler's shutdown sequence, which stops every worker rank over its
control channel; the bare kinds by closing the workers (once their heartbeat
in flight has landed), then the scheduler.

The worker processes run at a lower priority (``nice``), so that the scheduler
gets a core whenever it wants one, as it would on a node of its own. Workers
have one thread, no dashboard, and none of the periodic work (profiler,
system monitor, memory monitor) that every worker would do by itself, N times
over in one process (``bench/scaling.py`` explains why). Every process raises
its soft limit on open files to the hard limit.

The package is imported from a snapshot of a git ref (``HEAD`` by default,
``--ref``), and the storm's processes run a copy of these scripts, so that
edits made to the tree while the benchmark runs do not mix code versions;
``--live`` imports the package from the tree itself.

Writes ``join_storm.csv`` (one row per storm), ``join_storm.json`` (the run's
settings and profiles), ``join_storm.md`` (medians, ratios, a projection to
10 000 ranks, where the CPU goes) and every process's standard error
(``join_storm-logs/``) to ``--out``; with ``--plot`` also ``join_storm.png``.
``--publish`` copies the summary to ``docs/data/`` and the plot to
``docs/images/``; ``--replot`` reports again from the saved files.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR / "workloads"))

import join_storm_report as report  # noqa: E402

#: This script and its helpers, which the storm's processes run (from a copy, see :func:`snapshot_storm`).
STORM_FILES = ["join_storm.py", "workloads/join_storm_process.py", "workloads/join_storm_report.py",
               "workloads/join_storm_scheduler.py", "workloads/join_storm_workers.py"]

LOOPBACK = "127.0.0.1"
#: Every kind's scheduler: on loopback, no dashboard (its HTTP server still serves /health).
SCHEDULER_OPTIONS = {"host": LOOPBACK, "dashboard": False, "dashboard_address": f"{LOOPBACK}:0"}
#: Every kind's workers: one thread, no memory monitor, on loopback.
WORKER_OPTIONS = {"nthreads": 1, "memory_limit": 0, "host": LOOPBACK, "dashboard_address": f"{LOOPBACK}:0"}


@dataclasses.dataclass(frozen=True)
class Kind:
    """One way of starting the scheduler and joining the workers."""

    name: str
    tls: bool
    #: The scheduler starts as our scheduler rank starts it, and the workers
    #: join (and leave) as our worker ranks do.
    ours: bool


KINDS = (Kind("bare-tcp", False, False), Kind("bare-tls", True, False), Kind("ours", True, True))
KIND_BY_NAME = {kind.name: kind for kind in KINDS}


# -- the scheduler of each kind (run in the scheduler process) --------------------------------


@dataclasses.dataclass
class StartedScheduler:
    """A running scheduler of one kind, and how its kind closes it."""

    scheduler: object
    close: object  # a coroutine function
    #: Our control channel's scheduler side (``ours`` only).
    control: object = None


async def start_scheduler(kind: Kind, credentials, n_workers: int, timeouts) -> StartedScheduler:
    """Start the scheduler of ``kind`` for a storm of ``n_workers``."""
    if kind.ours:
        return await start_our_scheduler(credentials, n_workers, timeouts)
    return await start_bare_scheduler(credentials.security() if kind.tls else None)


async def start_bare_scheduler(security) -> StartedScheduler:
    """A plain ``distributed.Scheduler``, on TLS when given a ``security``."""
    from distributed import Scheduler

    tls = {"security": security, "protocol": "tls"} if security is not None else {}
    scheduler = await Scheduler(**SCHEDULER_OPTIONS, **tls)
    return StartedScheduler(scheduler, lambda: scheduler.close(reason="storm over"))


async def start_our_scheduler(credentials, n_workers: int, timeouts) -> StartedScheduler:
    """The scheduler as our scheduler rank starts and serves it: its own service, called as the runner calls it.

    The job has a scheduler rank and ``n_workers`` worker ranks, and no
    client rank (none joins a storm), so the control channel waits for no
    client. The credentials are the benchmark's, so that the crypto is the
    bare TLS kind's.
    """
    from dask_runners.roles import RankLayout, Role
    from dask_runners.services.scheduler import SchedulerService
    from dask_runners.state import RankState

    state = RankState(0)
    state.role = Role.scheduler
    service = SchedulerService(
        state,
        options=dict(SCHEDULER_OPTIONS),
        tls=shared_job_tls(credentials),
        transport=contact_to_driver(),
        hooks=NoSchedulerHooks(),
        notify=lambda event, **details: None,
        layout=RankLayout(client=False),
        world_size=n_workers + 1,
        timeouts=timeouts,
    )
    scheduler = await service.start()
    serving = asyncio.ensure_future(service.serve(scheduler, None))

    async def close() -> None:
        service.control.request_close(0, "storm over")
        exit_code = await serving
        if exit_code != 0:
            raise RuntimeError(f"our scheduler's shutdown ended with exit code {exit_code}")

    return StartedScheduler(scheduler, close, service.control)


def shared_job_tls(credentials):
    """Per-job TLS (:class:`~dask_runners.security.TLSChoice`) with the benchmark's credentials instead of new ones."""
    from dask_runners.security import TLSChoice

    class SharedJobTLS(TLSChoice):
        def for_scheduler(self):
            self.prepare_to_serve()  # what the scheduler rank does with credentials of its own
            return credentials.security(), credentials

    return SharedJobTLS(per_job=True)


def contact_to_driver():
    """A transport that publishes nowhere: the scheduler process tells the driver the address itself."""
    from dask_runners.transport import Transport

    class ContactToDriver(Transport):
        async def publish(self, contact, scheduler) -> None:
            pass

        async def discover(self):
            raise RuntimeError("in a join storm only the scheduler process has a transport")

    return ContactToDriver()


class NoSchedulerHooks:
    """A runner's scheduler hooks, doing what the base runner's do: nothing."""

    async def before_scheduler_start(self) -> None:
        pass

    async def set_scheduler_address(self, scheduler) -> None:
        pass

    async def on_scheduler_start(self, scheduler) -> None:
        pass

    async def on_scheduler_close(self) -> None:
        pass


# -- one worker of each kind (run in the worker processes) ------------------------------------


@dataclasses.dataclass
class JoinedWorker:
    """One worker of the storm, running, and what it has to close when it leaves."""

    rank: int
    worker: object
    #: Our control channel's rank side (``ours`` only).
    channel: object = None
    #: Its heartbeat in flight (the bare kinds only; ours await theirs by themselves).
    heartbeat: HeartbeatInFlight | None = None


class HeartbeatInFlight:
    """The heartbeat a bare worker has in flight, so that its close can wait for it to land.

    A heartbeat cut by the worker's close makes distributed log an error with
    a traceback (our worker ranks await theirs: ``services/quiesce.py``).
    That noise has nothing to do with joining, so the bare kinds are spared
    it too. Installed once the worker runs, so the join is as bare as it gets.
    """

    def __init__(self, worker):
        self.worker = worker
        self.beat: asyncio.Future | None = None
        heartbeat = worker.periodic_callbacks["heartbeat"]
        send = heartbeat.callback

        def tracked():
            self.beat = asyncio.ensure_future(send())
            return self.beat

        heartbeat.callback = tracked

    async def stop(self, deadline: float) -> None:
        """Send no more heartbeats; wait up to ``deadline`` seconds for the one in flight."""
        self.worker.periodic_callbacks["heartbeat"].stop()
        if self.beat is not None and not self.beat.done():
            await asyncio.wait([self.beat], timeout=deadline)


async def join(kind: Kind, address: str, rank: int, credentials, timeouts) -> JoinedWorker:
    """Let worker rank ``rank`` join the scheduler at ``address`` as ``kind`` does."""
    security = credentials.security() if kind.tls else None
    if kind.ours:
        return await join_our_way(address, rank, security, timeouts)
    from distributed import Worker

    worker = await Worker(address, name=rank, security=security, **WORKER_OPTIONS)
    return JoinedWorker(rank, worker, heartbeat=HeartbeatInFlight(worker))


async def join_our_way(address: str, rank: int, security, timeouts) -> JoinedWorker:
    """How one worker rank of ours joins a cluster: the one place to change when that changes.

    It follows the package being measured (``--ref``). Since 1f3a821 the
    control channel rides on the worker's own stream: the rank's channel
    (:meth:`ControlChannel.through_worker <dask_runners.channel.ControlChannel.through_worker>`)
    goes to the worker made by its
    :class:`~dask_runners.services.worker.WorkerSpec` as a plugin, and the
    worker's registration is the rank's join. Before, a worker rank first
    opened a control connection of its own (``ControlChannel.open``), then
    started its worker.
    """
    from dask_runners.security import connection_args
    from dask_runners.services.worker import WorkerSpec

    try:
        from dask_runners.channel import ControlChannel  # since 1f3a821
    except ImportError:
        from dask_runners.control import ControlChannel

    spec = WorkerSpec(options=WORKER_OPTIONS, quiet_deadline=timeouts.shutdown / 2)
    args = connection_args(security, "worker")
    if hasattr(ControlChannel, "through_worker"):
        channel = ControlChannel.through_worker(address, rank, args, timeouts.lease)
        worker = spec.make(address, rank, security, [channel.plugin])
    else:
        channel = await ControlChannel.open(
            address, rank, "worker", args, timeout=timeouts.discovery, lease=timeouts.lease, worker=spec.name_for(rank)
        )
        worker = spec.make(address, rank, security)
    await worker
    return JoinedWorker(rank, worker, channel)


async def leave(kind: Kind, joined: JoinedWorker, timeouts) -> None:
    """Close ``joined`` as ``kind`` does at the end of a job."""
    if kind.ours:
        await leave_our_way(joined, timeouts)
    else:
        await joined.heartbeat.stop(timeouts.shutdown)
        await joined.worker.close(reason="storm over", executor_wait=False)


async def leave_our_way(joined: JoinedWorker, timeouts) -> None:
    """How a worker rank of ours leaves: at the scheduler's stop order it closes its worker, then its channel."""
    from dask_runners.services.worker import close_worker

    await asyncio.wait_for(asyncio.shield(joined.channel.stopped), 2 * timeouts.shutdown)
    await close_worker(joined.worker, f"worker rank {joined.rank}", timeouts.shutdown)
    await joined.channel.close()


# -- the driver --------------------------------------------------------------------------------


class StormError(RuntimeError):
    """A process of a storm failed, or did not answer in time."""


class Child:
    """One process of a storm, spoken to in lines (see ``workloads/join_storm_process.py``)."""

    def __init__(self, name: str, process, log: Path):
        self.name = name
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, name: str, script: Path, arguments: list[str], env: dict, log: Path) -> Child:
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, str(script), *arguments,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
            )
        return cls(name, process, log)

    def say(self, word: str) -> None:
        self.process.stdin.write(f"{word}\n".encode())

    async def expect(self, event: str, timeout: float) -> dict:
        """The next message of this process, which must be ``event``, within ``timeout`` seconds."""
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError as e:
            raise StormError(f"{self.name} did not say {event!r} within {timeout:.0f} s; see {self.log}") from e
        if not line:
            code = await self.process.wait()
            raise StormError(f"{self.name} exited with {code} before saying {event!r}; see {self.log}")
        message = json.loads(line)
        if message.get("event") != event:
            raise StormError(f"{self.name} said {message} while {event!r} was expected; see {self.log}")
        return message

    async def exit_code(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError as e:
            raise StormError(f"{self.name} did not exit within {timeout:.0f} s; see {self.log}") from e

    async def kill_if_running(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every storm of one benchmark shares."""

    processes: int
    deadline: float
    nice: int
    shutdown: float
    credentials: Path
    env: dict
    logs: Path
    #: Where the copies of the storm's process scripts are.
    scripts: Path


START_DEADLINE = 120.0  # a process importing distributed on a busy machine


def rank_chunks(n: int, processes: int) -> list[tuple[int, int]]:
    """Worker ranks 1..n in ``processes`` nearly equal runs: (first rank, count) pairs.

    >>> rank_chunks(10, 3)
    [(1, 4), (5, 3), (8, 3)]
    """
    base, extra = divmod(n, processes)
    chunks, first = [], 1
    for index in range(processes):
        count = base + (index < extra)
        if count:
            chunks.append((first, count))
        first += count
    return chunks


async def one_storm(kind: Kind, n: int, repeat, settings: Settings, profile: Path | None = None) -> dict:
    """Run one storm of ``n`` workers against a scheduler of ``kind``; return its row.

    With ``profile``, the scheduler runs the storm under cProfile and writes
    the profile there.
    """
    stem = f"{kind.name}-n{n}-r{repeat}"
    common = ["--kind", kind.name, "--shutdown", str(settings.shutdown)]
    profiling = ["--profile", str(profile)] if profile is not None else []
    if kind.tls:
        common += ["--credentials", str(settings.credentials)]
    children: list[Child] = []
    try:
        scheduler = await Child.start(
            "the scheduler process", settings.scripts / "join_storm_scheduler.py",
            [*common, "--workers", str(n), "--deadline", str(settings.deadline), *profiling],
            settings.env, settings.logs / f"{stem}-scheduler.err",
        )
        children.append(scheduler)
        ready = await scheduler.expect("ready", START_DEADLINE)
        for index, (first, count) in enumerate(rank_chunks(n, settings.processes)):
            children.append(await Child.start(
                f"worker process {index}", settings.scripts / "join_storm_workers.py",
                [*common, "--address", ready["address"], "--first-rank", str(first), "--count", str(count),
                 "--nice", str(settings.nice)],
                settings.env, settings.logs / f"{stem}-workers{index}.err",
            ))
        workers = children[1:]
        await asyncio.gather(*(w.expect("ready", START_DEADLINE) for w in workers))
        scheduler.say("go")
        await scheduler.expect("started", 10)  # its clock and CPU count from here
        for w in workers:
            w.say("go")
        storm = await scheduler.expect("all_running", settings.deadline + 30)
        joined = await asyncio.gather(*(w.expect("joined", settings.deadline + 30) for w in workers))
        closing = time.perf_counter()
        close_deadline = 4 * settings.shutdown + 60
        if kind.ours:  # the scheduler's shutdown stops every worker rank
            scheduler.say("close")
            closed = await scheduler.expect("closed", close_deadline)
            await asyncio.gather(*(w.expect("left", close_deadline) for w in workers))
        else:
            for w in workers:
                w.say("close")
            await asyncio.gather(*(w.expect("left", close_deadline) for w in workers))
            scheduler.say("close")
            closed = await scheduler.expect("closed", close_deadline)
        codes = await asyncio.gather(*(c.exit_code(close_deadline) for c in children))
        close_seconds = time.perf_counter() - closing
    finally:
        for child in children:
            await child.kill_if_running()
    tracebacks, errors, warnings = count_problems(c.log for c in children)
    abandoned = scheduler.log.read_text(errors="replace").count("TLS handshake failed")
    return {
        "kind": kind.name, "n": n, "repeat": repeat, "processes": len(workers),
        "complete": storm["running"] == n,
        "registered_s": storm["registered_s"], "running_s": storm["running_s"],
        "scheduler_cpu_s": storm["cpu_s"], "scheduler_cpu_registered_s": storm["cpu_registered_s"],
        "cpu_ms_per_worker": 1e3 * storm["cpu_s"] / n,
        "workers": storm["workers"], "running": storm["running"],
        "fds_before": storm["fds_before"], "fds_after": storm["fds_after"],
        "sockets_before": storm["sockets_before"], "sockets_after": storm["sockets_after"],
        "stream_comms": storm["stream_comms"], "control_members": storm["control_members"],
        "fds_settled": storm["fds_settled"], "sockets_settled": storm["sockets_settled"],
        "fds_per_worker": (storm["fds_after"] - storm["fds_before"]) / n,
        "sockets_per_worker": (storm["sockets_after"] - storm["sockets_before"]) / n,
        "settled_fds_per_worker": (storm["fds_settled"] - storm["fds_before"]) / n,
        "workers_joined_s": max(j["seconds"] for j in joined),
        "worker_cpu_ms_per_worker": 1e3 * sum(j["cpu_s"] for j in joined) / n,
        "heartbeats_per_worker": storm["heartbeats"] / n,
        "heartbeat_handler_ms_per_worker": 1e3 * storm["heartbeat_cpu_s"] / n,
        "scheduler_memory_mb": storm["memory_mb"],
        "worker_memory_mb_per_worker": sum(j["memory_mb"] for j in joined) / n,
        "failed_joins": sum(j["failed"] for j in joined),
        "abandoned_handshakes_per_worker": abandoned / n,
        "close_s": close_seconds, "scheduler_close_s": closed["seconds"],
        "exit_codes": " ".join(str(c) for c in codes),
        "tracebacks": tracebacks, "errors": errors, "warnings": warnings,
        "package": ready["package"],
    }


def count_problems(logs) -> tuple[int, int, int]:
    """Tracebacks, ERROR or CRITICAL lines, and WARNING lines in the standard errors at ``logs``."""
    tracebacks = errors = warnings = 0
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            tracebacks += line.startswith("Traceback")
            errors += " - ERROR - " in line or " - CRITICAL - " in line
            warnings += " - WARNING - " in line
    return tracebacks, errors, warnings


def snapshot_package(ref: str, into: Path) -> str:
    """Extract ``dask_runners`` as of git ``ref`` into ``into``, byte-compiled; return the commit."""
    commit = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "dask_runners"], cwd=REPO, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    # Bytecode, as an install has it: PYTHONDONTWRITEBYTECODE=1 would make
    # every process compile the package anew.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(into / "dask_runners")], check=True)
    return commit


def snapshot_storm(into: Path) -> Path:
    """Copy the storm's own scripts into ``into``; return the copy of ``bench/``.

    The processes of every storm run the copy, so that edits to these
    scripts during a run do not mix versions between storms.
    """
    for name in STORM_FILES:
        target = into / "bench" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(BENCH_DIR / name, target)
    return into / "bench"


def write_credentials(into: Path) -> Path:
    """One job credential for every TLS storm of this benchmark, in a file only we can read."""
    from dask_runners.security import JobCredentials

    path = into / "credentials.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps(JobCredentials.generate().to_dict()))
    return path


def kinds_in_turn(kinds: list[Kind], repeat: int) -> list[Kind]:
    """``kinds``, rotated by ``repeat``: each kind goes first in some repeat, so no kind always follows another."""
    shift = repeat % len(kinds)
    return kinds[shift:] + kinds[:shift]


async def run_storms(args, settings: Settings, kinds: list[Kind]) -> list[dict]:
    rows = []
    for repeat in range(args.repeat):
        for n in args.sizes:
            for kind in kinds_in_turn(kinds, repeat):
                row = await one_storm(kind, n, repeat, settings)
                rows.append(row)
                print(
                    f"n={n:<5d} {kind.name:8s} r{repeat} cpu={row['scheduler_cpu_s']:.2f}s "
                    f"({row['cpu_ms_per_worker']:.2f} ms/worker) running={row['running_s']:.1f}s "
                    f"fds/worker={row['fds_per_worker']:.2f}, settled {row['settled_fds_per_worker']:.2f} close={row['close_s']:.1f}s "
                    f"failed={row['failed_joins']} tracebacks={row['tracebacks']} errors={row['errors']}",
                    flush=True,
                )
    return rows


async def profile_storms(kinds: list[Kind], n: int, settings: Settings, into: Path) -> dict:
    """One more storm of ``n`` per kind, its scheduler under cProfile: where its CPU goes."""
    shares = {}
    for kind in kinds:
        path = into / f"join_storm-{kind.name}-n{n}.prof"
        row = await one_storm(kind, n, "profile", settings, profile=path)
        shares[kind.name] = report.where_the_cpu_goes(path, n)
        print(f"profiled n={n} {kind.name}: {row['cpu_ms_per_worker']:.2f} ms/worker under cProfile", flush=True)
    return shares


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=[k.name for k in KINDS], choices=[k.name for k in KINDS])
    parser.add_argument("--processes", type=int, default=4, help="worker processes per storm")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the worker processes")
    parser.add_argument("--deadline", type=float, default=600, help="s a storm may take until all workers run")
    parser.add_argument("--shutdown", type=float, default=120,
                        help="our shutdown deadline (runners.timeouts.shutdown) in s. The package's 30 s is for one "
                             "rank per process; here hundreds share one process, and their closes wait their turn")
    parser.add_argument("--profile-size", type=int, default=1000,
                        help="after the sweep, one storm of this size per kind with the scheduler under cProfile; "
                             "0 for none")
    parser.add_argument("--ref", default="HEAD", help="git ref of the dask_runners to benchmark")
    parser.add_argument("--live", action="store_true", help="import dask_runners from the tree as it is")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--plot", action="store_true", help="write join_storm.png to --out (needs matplotlib)")
    parser.add_argument("--publish", action="store_true",
                        help="copy join_storm.md to docs/data/ and the plot to docs/images/")
    parser.add_argument("--replot", action="store_true",
                        help="no storms: report again from the CSV and profile summary in --out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.replot:
        rows, meta = report.read_results(args.out)
    else:
        rows, meta = run_benchmark(args)
        meta["command"] = "python bench/join_storm.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        report.write_results(args.out, rows, meta)
    text = report.summary(rows, meta)
    (args.out / "join_storm.md").write_text(text)
    print(text)
    plotted = (args.plot or args.publish) and report.plot(rows, args.out / "join_storm.png")
    if args.publish:
        shutil.copy(args.out / "join_storm.md", REPO / "docs" / "data" / "join_storm.md")
        if plotted:
            shutil.copy(args.out / "join_storm.png", REPO / "docs" / "images" / "join_storm.png")
    failed = [r for r in rows if not r["complete"] or r["failed_joins"] or r["tracebacks"] or r["errors"]]
    return 1 if failed else 0


def run_benchmark(args) -> tuple[list[dict], dict]:
    """Every storm of the sweep, then the profiled ones; return the rows and what the report needs to know."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # as every process of a storm does
    logs = args.out / "join_storm-logs"
    logs.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="join-storm-") as tmp:
        tmp = Path(tmp)
        if args.live:
            source, commit = REPO, "the working tree"
        else:
            source, commit = tmp, snapshot_package(args.ref, tmp)
        bench = snapshot_storm(tmp)
        pythonpath = [str(source), str(bench), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))}
        sys.path.insert(0, str(source))
        settings = Settings(args.processes, args.deadline, args.nice, args.shutdown, write_credentials(tmp), env,
                            logs, bench / "workloads")
        kinds = [KIND_BY_NAME[name] for name in args.kinds]
        rows = asyncio.run(run_storms(args, settings, kinds))
        profiles = asyncio.run(profile_storms(kinds, args.profile_size, settings, args.out)) if args.profile_size else {}
    from importlib.metadata import version

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "load": os.getloadavg()[0], "python": sys.version.split()[0],
        "distributed": version("distributed"), "package": commit, "processes": args.processes, "nice": args.nice,
        "shutdown": args.shutdown, "profile_size": args.profile_size, "profiles": profiles,
    }
    return rows, meta


if __name__ == "__main__":
    sys.exit(main())
