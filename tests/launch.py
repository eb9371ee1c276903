"""Helpers to launch real srun / mpirun / mpiexec jobs and look at what they left.

Tests here skip when a launcher is missing, unless the environment variable
``RUNNERS_REQUIRE_LAUNCHERS=1`` is set (as CI does): then a missing
launcher is a failure, so that a broken setup cannot pass as "skipped".
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

LAUNCH_TIMEOUT = 120
PYTHON = sys.executable


@dataclasses.dataclass
class Launch:
    """What one real launch did."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    leftovers: list[str]
    after_signal: float | None = None

    @property
    def tracebacks(self) -> int:
        return sum(line.startswith("Traceback") for line in self.stderr.splitlines())

    @property
    def error_lines(self) -> list[str]:
        return [
            line
            for line in self.stderr.splitlines()
            if " ERROR " in line or "ERROR:" in line or line.startswith("srun: error")
        ]

    def assert_clean_success(self) -> None:
        assert self.returncode == 0, self.report()
        assert self.tracebacks == 0, self.report()
        assert self.error_lines == [], self.report()
        assert self.leftovers == [], self.report()

    def report(self) -> str:
        return (
            f"{' '.join(self.argv)} -> rc={self.returncode} in {self.seconds:.2f} s; "
            f"leftovers={self.leftovers}\n--- stdout ---\n{self.stdout[-3000:]}"
            f"\n--- stderr ---\n{self.stderr[-6000:]}"
        )


#: Every process a launch starts inherits this variable, set to the launch's own id: the
#: launcher, each rank, and whatever the ranks start in turn (a Nanny's worker process, made by
#: multiprocessing's spawn or forkserver, whose command line names neither the script nor the
#: job directory). Slurm's daemons (slurmstepd) do not carry it: they are not the launch's.
LAUNCH_ID_VARIABLE = "RUNNERS_TEST_LAUNCH"  # not DASK_*: dask would read it as config


def processes_running(marker: str) -> list[str]:
    """Live processes of a launch: those whose environment has ``LAUNCH_ID_VARIABLE=marker``, or
    whose command line mentions ``marker`` (a job directory)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(proc.info["cmdline"] or [])
        try:
            ours = proc.environ().get(LAUNCH_ID_VARIABLE) == marker
        except (psutil.Error, OSError):  # gone, or a kernel thread
            ours = False
        if ours or marker in cmdline:
            found.append(f"{proc.pid}: {cmdline}")
    return found


def leftovers_of(marker: str, grace: float = 2.0) -> list[str]:
    """:func:`processes_running`, after waiting up to ``grace`` seconds for them to go."""
    leftovers = processes_running(marker)
    deadline = time.monotonic() + grace
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)
        leftovers = processes_running(marker)
    return leftovers


def launch(argv, cwd: Path, env=None, timeout=LAUNCH_TIMEOUT, when=None, send=()) -> Launch:
    """Run a launcher to completion (or kill it at ``timeout``) and report.

    ``env`` adds to this process's environment; a value of None removes a
    variable. When a line of stdout starts with ``when``, each item of
    ``send`` is done, 0.2 s apart: a signal number is sent to the launcher, a
    callable is called with the line. :attr:`Launch.after_signal` is the time
    from the first to the launcher's return. :attr:`Launch.leftovers` lists every
    process of the launch (see :data:`LAUNCH_ID_VARIABLE`) still alive 2 s after
    the launcher returned.
    """
    launch_id = f"launch-{uuid.uuid4().hex}"
    environment = {**os.environ, **(env or {}), LAUNCH_ID_VARIABLE: launch_id}
    srun = Path(str(argv[0])).name == "srun"
    if srun:  # the job srun creates is named after the launch, for the scancel below
        environment.setdefault("SLURM_JOB_NAME", launch_id)
    environment = {k: v for k, v in environment.items() if v is not None}
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stdout_lines, stderr_chunks, signalled = [], [], []

    def read_stdout():
        for line in proc.stdout:
            stdout_lines.append(line)
            if when is not None and line.startswith(when) and not signalled:
                for action in send:
                    signalled.append(time.perf_counter())
                    action(line) if callable(action) else proc.send_signal(action)
                    time.sleep(0.2)

    readers = [
        threading.Thread(target=read_stdout, daemon=True),
        threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        stderr_chunks.append(f"\n[test harness: killed after {timeout} s]")
    seconds = time.perf_counter() - start
    end = time.perf_counter()
    if srun and proc.returncode < 0:  # a killed srun leaves its job allocated until Slurm notices
        subprocess.run(["scancel", "--name", environment.get("SLURM_JOB_NAME", launch_id)], capture_output=True, timeout=30)
    for reader in readers:
        reader.join(timeout=10)
    stdout, stderr = "".join(stdout_lines), "".join(stderr_chunks)
    leftovers = sorted(set(leftovers_of(launch_id)) | set(leftovers_of(str(cwd), grace=0)))
    stray = []
    for line in leftovers:  # recorded for the test to fail on; not left to disturb the next test
        with contextlib.suppress(psutil.Error):
            stray.append(psutil.Process(int(line.split(":")[0])))
            stray[-1].kill()
    psutil.wait_procs(stray, timeout=5)
    after_signal = end - signalled[0] if signalled else None
    return Launch(list(map(str, argv)), proc.returncode, stdout, stderr, seconds, leftovers, after_signal)


def expand_tasks(text: str) -> list[int]:
    """srun's task lists: ``0,4`` or ``2-3``."""
    tasks = []
    for item in text.split(","):
        first, _, last = item.partition("-")
        tasks += range(int(first), int(last or first) + 1)
    return tasks


def srun_task_ends(stderr: str) -> dict[int, tuple[str, str]]:
    """The tasks srun says ended badly: ``{task: (node, "Exited with exit code 1")}``."""
    ended = {}
    for match in re.finditer(r"^srun: error: ([\w.-]+): tasks? ([\d,\-]+): (.*)$", stderr, re.M):
        for task in expand_tasks(match[2]):
            ended[task] = (match[1], match[3])
    return ended


def task_ends(stderr: str) -> dict[int, str]:
    """:func:`srun_task_ends` without the nodes: ``{task: "Exited with exit code 1"}``."""
    return {task: how for task, (node, how) in srun_task_ends(stderr).items()}


#: The environment that makes every rank also write its full log to ``<dir>/rank-<N>.log``: a
#: rank's line there survives a launcher that drops the rank's output when it ends the job.
def rank_logs_env(job_dir: Path) -> dict:
    return {"DASK_RUNNERS__LOGGING__DIRECTORY": str(job_dir / "logs")}


def rank_log(job_dir: Path, rank: int) -> str:
    path = job_dir / "logs" / f"rank-{rank}.log"
    return path.read_text() if path.exists() else ""


def logged_at(log: str, text: str) -> float | None:
    """The time (``time.time()``) of the first log line holding ``text``, or None."""
    for line in log.splitlines():
        if text in line:
            stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()
    return None


def noted_at(text: str, label: str) -> float:
    """The ``time.time()`` a script noted as ``<label> at <seconds>``."""
    match = re.search(rf"{re.escape(label)} at (\d+\.\d+)", text)
    assert match, f"no '{label} at' in {text!r}"
    return float(match[1])


def timing(name: str, seconds: float) -> float:
    """``seconds``, printed as ``TIMING name`` so that ``pytest -s`` shows the spread behind a bound."""
    print(f"TIMING {name} {seconds:.3f}")
    return seconds


def need_module(name: str):
    """Import ``name``: a test dependency (setup.cfg's test extra) that CI installs, so that its
    absence fails under RUNNERS_REQUIRE_LAUNCHERS=1 and skips elsewhere."""
    try:
        return importlib.import_module(name)
    except ImportError:
        need(False, f"the Python package {name} (pip install -e .[test])")


def need(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("RUNNERS_REQUIRE_LAUNCHERS") == "1":
        pytest.fail(f"{what} is required here (RUNNERS_REQUIRE_LAUNCHERS=1); run ci/setup.sh")
    # The one skip of the launcher tests: on a developer's machine without Slurm or MPI. CI sets
    # RUNNERS_REQUIRE_LAUNCHERS=1 (ci/test.sh), so there it fails above instead.
    pytest.skip(f"{what} is not available")


def slurm_is_up() -> bool:
    if not shutil.which("srun"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    usable = ("idle", "mix", "alloc", "plnd", "comp")  # "plnd": reserved for a pending job, yet up
    return out.returncode == 0 and any(s.strip("*~#-+$@^").startswith(usable) for s in out.stdout.split())


def mpi4py_importable(env=None) -> bool:
    out = subprocess.run([PYTHON, "-c", "import mpi4py"], capture_output=True, env={**os.environ, **(env or {})})
    return out.returncode == 0


OPEN_MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def write_script(directory: Path, body: str, name="job.py") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


STANDARD = """\
import sys
from dask.distributed import Client
from dask_runners import {runner}

with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        print("RESULT workers", len(client.scheduler_info(n_workers=-1)["workers"]), flush=True)
        {extra}
print("AFTER rank", runner.rank, flush=True)
"""


def standard_script(directory: Path, runner: str, options: str = "", extra: str = "pass") -> Path:
    return write_script(directory, STANDARD.format(runner=runner, options=options, extra=extra))
