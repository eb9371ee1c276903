"""The seed's model without ``with``: ``Client(runner)`` starts the runner, the end of the script closes it."""

import re
import subprocess

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, srun_task_ends, write_script

pytestmark = [pytest.mark.timeout(180)]

WITHOUT_WITH = """\
import sys, time
from dask.distributed import Client
from dask_runners import {runner}

runner = {runner}()
client = Client(runner)              # the first use: service ranks serve here and never return
print("PAST", runner.rank, flush=True)
client.wait_for_workers(runner.n_workers)
print("RESULT", client.submit(lambda x: x + 1, 41).result(), flush=True)
if sys.argv[1:] == ["fail"]:
    raise ValueError("boom at the end of the script")
if sys.argv[1:] == ["sleep"]:
    print("SLEEPING", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def scancel_job(line):
    """Cancel the job that printed ``line`` (``SLEEPING``): the newest job of ours."""
    jobs = subprocess.run(["squeue", "-h", "-o", "%i", "-n", "without-with"], capture_output=True, text=True)
    for job in jobs.stdout.split():
        subprocess.run(["scancel", job], check=True, timeout=10)


@pytest.mark.slurm
def test_client_of_a_runner_made_without_with_runs_and_the_script_end_closes_it(job_dir, slurm):
    script = write_script(job_dir, WITHOUT_WITH.format(runner="SLURMRunner"))
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir)
    result.assert_clean_success()
    assert "RESULT 42" in result.stdout
    assert re.findall(r"PAST (\d+)", result.stdout) == ["1"]  # no other rank gets past the first use
    assert list(job_dir.glob("scheduler-*.json")) == []


@pytest.mark.slurm
def test_an_exception_that_ends_the_script_fails_every_rank(job_dir, slurm):
    script = write_script(job_dir, WITHOUT_WITH.format(runner="SLURMRunner"))
    result = launch(["srun", "-n", "4", PYTHON, script, "fail"], job_dir)
    assert result.returncode == 1, result.report()
    assert result.tracebacks == 1 and "ValueError: boom at the end of the script" in result.stderr
    ended = srun_task_ends(result.stderr)
    assert {task: how for task, (node, how) in ended.items()} == dict.fromkeys(range(4), "Exited with exit code 1")
    assert result.leftovers == []


@pytest.mark.slurm
def test_scancel_of_a_script_without_with_ends_every_rank_with_143(job_dir, slurm):
    script = write_script(job_dir, WITHOUT_WITH.format(runner="SLURMRunner"))
    argv = ["srun", "-J", "without-with", "-n", "4", PYTHON, script, "sleep"]
    result = launch(argv, job_dir, when="SLEEPING", send=[scancel_job])
    assert result.returncode == 143, result.report()
    ended = srun_task_ends(result.stderr)
    assert {task: how for task, (node, how) in ended.items()} == dict.fromkeys(range(4), "Exited with exit code 143")
    assert result.tracebacks == 0, result.report()
    assert result.after_signal < 5, result.report()
    assert result.leftovers == []


@pytest.mark.mpi
@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_mpi_runner_without_with(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    script = write_script(job_dir, WITHOUT_WITH.format(runner="MPIRunner"))
    result = launch([*prefix, "3", PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert "RESULT 42" in result.stdout
    assert re.findall(r"PAST (\d+)", result.stdout) == ["1"]
