"""distributed's version report, made early on every rank (dask_runners.version_report), under real srun and mpirun."""

import os
import subprocess
import sys

import pytest

from ..launch import OPEN_MPI_ENV, PYTHON, launch, mpi4py_importable, need, slurm_is_up, write_script

pytestmark = pytest.mark.timeout(180)

# Every call of distributed's version report, by the thread that makes it, one file per rank. The
# scheduler rank starts a second late, so that every other rank waits for its contact.
RECORDED = """
import os
import pathlib
import threading
import time

import distributed.versions
import distributed.worker

original = distributed.versions.get_versions
calls = pathlib.Path(__file__).with_name(f"calls-{{os.environ['{rank_variable}']}}")


def recording(*args, **kwargs):
    with calls.open("a") as file:
        file.write(threading.current_thread().name + "\\n")
    return original(*args, **kwargs)


distributed.versions.get_versions = distributed.worker.get_versions = recording

from dask.distributed import Client
from dask_runners import {runner}


class LateScheduler({runner}):
    async def before_scheduler_start(self):
        time.sleep(1)


with LateScheduler() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
"""


def first_calls(job_dir, ranks: int) -> dict[int, list[str]]:
    return {rank: (job_dir / f"calls-{rank}").read_text().splitlines() for rank in range(ranks)}


def assert_made_early_by(threads: str, calls: dict[int, list[str]]) -> None:
    """On every rank, ``threads`` made the report first, and distributed's own calls came after."""
    for rank, names in calls.items():
        assert names[0] == threads, (rank, names)
        assert len(names) >= 2 and threads not in names[1:], (rank, names)


@pytest.mark.slurm
def test_every_rank_makes_the_report_while_it_waits_under_srun(job_dir):
    """Client and worker ranks make it while they wait for the contact, the scheduler's once it has published."""
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    script = write_script(job_dir, RECORDED.format(runner="SLURMRunner", rank_variable="SLURM_PROCID"))
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir)
    result.assert_clean_success()
    assert_made_early_by("dask-runners-version-report", first_calls(job_dir, 4))


@pytest.mark.mpi
def test_every_rank_makes_the_report_while_mpi_initializes(job_dir):
    """Under MPIRunner the thread that runs beside MPI_Init makes it, on every rank."""
    need(mpi4py_importable(), "Open MPI with mpi4py")
    script = write_script(job_dir, RECORDED.format(runner="MPIRunner", rank_variable="OMPI_COMM_WORLD_RANK"))
    result = launch(["mpirun", "--oversubscribe", "-n", "4", PYTHON, script], job_dir, OPEN_MPI_ENV)
    result.assert_clean_success()
    assert_made_early_by("dask-runners-before-mpi", first_calls(job_dir, 4))


ONCE = """
import threading
import distributed.versions
from dask_runners import version_report

made = []
original = distributed.versions.get_versions
distributed.versions.get_versions = lambda: made.append(threading.current_thread().name) or original()
version_report.make_in_background()
version_report.make_in_background()
version_report.make()
for thread in threading.enumerate():
    if thread.name == version_report.THREAD_NAME:
        thread.join(30)
print(made)
"""


def test_a_process_makes_the_report_once():
    out = subprocess.run([sys.executable, "-c", ONCE], capture_output=True, text=True, timeout=60, env=os.environ)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['dask-runners-version-report']", out.stdout
