"""Rows of the failure table in docs/faults.rst that the other fault tests do not cover."""

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, standard_script, write_script

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def test_sys_exit_in_the_client_code_is_every_ranks_exit_status(job_dir):
    script = standard_script(job_dir, "SLURMRunner", extra="sys.exit(7)")
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir)
    assert result.returncode == 7, result.report()
    assert result.tracebacks == 0, result.report()
    assert result.leftovers == []
    assert list(job_dir.glob("scheduler-*.json")) == []


@pytest.mark.mpi
def test_mpich_under_srun_pmix_stops_every_process_in_a_world_of_one(job_dir, mpich_env):
    """A launcher that does not match the MPI library: each process alone."""
    script = standard_script(job_dir, "MPIRunner")
    result = launch(["srun", "--mpi=pmix", "-n", "3", PYTHON, script], job_dir, env=mpich_env)
    assert result.returncode == 1, result.report()
    assert result.stderr.count("the MPI world has 1 ranks but at least 3 are needed") == 3, result.report()
    assert result.seconds < 30, result.report()


LEFT_OPEN = """\
from dask.distributed import Client

client = Client()                          # never closed, as scripts for a long-lived cluster do
print("RESULT", client.submit(sum, [1, 2, 3]).result(), flush=True)
"""


def test_dask_runner_run_closes_a_client_the_script_left_open(job_dir):
    script = write_script(job_dir, LEFT_OPEN, name="left_open.py")
    result = launch(["srun", "-n", "4", PYTHON, "-m", "dask_runners", "run", script], job_dir)
    result.assert_clean_success()
    assert "RESULT 6" in result.stdout
