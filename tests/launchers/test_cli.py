"""The dask-runner command: run unmodified client code, and info."""

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, write_script

pytestmark = [pytest.mark.timeout(120)]

PLAIN = """\
import sys
from dask.distributed import Client

def inc(x):
    return x + 1

if __name__ == "__main__":
    client = Client()                      # no address: the job's own scheduler
    client.wait_for_workers(2)
    print("RESULT", client.submit(inc, 41).result(), sys.argv, flush=True)
    client.close()
    if "--fail" in sys.argv:
        sys.exit(3)
"""


@pytest.fixture
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def test_run_unmodified_client_code_under_srun(job_dir, slurm):
    script = write_script(job_dir, PLAIN, name="plain.py")
    result = launch(["srun", "-n", "4", PYTHON, "-m", "dask_runners", "run", script, "--epochs", "3"], job_dir)
    result.assert_clean_success()
    assert f"RESULT 42 ['{script}', '--epochs', '3']" in result.stdout
    assert list(job_dir.glob("scheduler*.json")) == []


def test_the_scripts_exit_status_is_the_jobs(job_dir, slurm):
    script = write_script(job_dir, PLAIN, name="plain.py")
    result = launch(["srun", "-n", "4", PYTHON, "-m", "dask_runners", "run", script, "--fail"], job_dir)
    assert result.returncode == 3, result.report()
    assert result.tracebacks == 0, result.report()


def test_run_a_module_under_the_local_launcher(job_dir):
    write_script(job_dir, PLAIN, name="plainmod.py")
    command = [PYTHON, "-m", "dask_runners", "launch", "-n", "4", "-m", "dask_runners", "run", "-m", "plainmod", "x"]
    result = launch(command, job_dir, env={"PYTHONPATH": str(job_dir)})
    result.assert_clean_success()
    assert "RESULT 42" in result.stdout and "'x'" in result.stdout


def test_info_prints_one_line_per_rank(job_dir, slurm):
    result = launch(["srun", "-n", "3", PYTHON, "-m", "dask_runners", "info"], job_dir)
    assert result.returncode == 0, result.report()
    lines = sorted(line for line in result.stdout.splitlines() if "JobContext(slurm" in line)
    assert len(lines) == 3
    assert [line.split("rank=")[1].split()[0] for line in lines] == ["0/3", "1/3", "2/3"]
