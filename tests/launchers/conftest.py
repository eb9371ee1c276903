"""Launch real srun / mpirun / mpiexec jobs and look at what they left.

Tests here skip when a launcher is missing, unless the environment variable
``DASK_RUNNERS_REQUIRE_LAUNCHERS=1`` is set (as CI does): then a missing
launcher is a failure, so that a broken setup cannot pass as "skipped".
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
import time
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


def processes_running(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{proc.pid}: {cmdline}")
    return found


def launch(argv, cwd: Path, env=None, timeout=LAUNCH_TIMEOUT) -> Launch:
    """Run a launcher to completion (or kill it at ``timeout``) and report.

    ``env`` adds to this process's environment; a value of None removes a
    variable.
    """
    environment = {**os.environ, **(env or {})}
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
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        stderr += f"\n[test harness: killed after {timeout} s]"
    seconds = time.perf_counter() - start
    leftovers = processes_running(str(cwd))
    deadline = time.monotonic() + 2
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)
        leftovers = processes_running(str(cwd))
    return Launch(list(map(str, argv)), proc.returncode, stdout, stderr, seconds, leftovers)


def need(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("DASK_RUNNERS_REQUIRE_LAUNCHERS") == "1":
        pytest.fail(f"{what} is required here (DASK_RUNNERS_REQUIRE_LAUNCHERS=1); run ci/setup.sh")
    pytest.skip(f"{what} is not available")


def slurm_is_up() -> bool:
    if not shutil.which("srun"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s.strip("*~#") in ("idle", "mix", "alloc") for s in out.stdout.split())


def mpi4py_importable(env=None) -> bool:
    out = subprocess.run([PYTHON, "-c", "import mpi4py"], capture_output=True, env={**os.environ, **(env or {})})
    return out.returncode == 0


@pytest.fixture(scope="session")
def mpich_env(tmp_path_factory) -> dict:
    """Environment under which mpi4py (an Open MPI build) loads MPICH instead."""
    candidates = sorted(Path("/usr/lib").glob("*/libmpich.so.12")) + sorted(Path("/usr/lib").glob("libmpich.so.12"))
    need(bool(candidates) and shutil.which("mpiexec.mpich") is not None, "MPICH")
    libdir = tmp_path_factory.mktemp("mpich-lib")
    (libdir / "libmpi.so.12").symlink_to(candidates[0])
    library_path = os.pathsep.join(filter(None, [str(libdir), os.environ.get("LD_LIBRARY_PATH")]))
    return {"MPI4PY_MPIABI": "mpich", "LD_LIBRARY_PATH": library_path}


OPEN_MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


@pytest.fixture
def job_dir(tmp_path) -> Path:
    """A working directory for one job, on the (shared) filesystem."""
    return tmp_path


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
