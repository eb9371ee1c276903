"""Rows of the failure table in docs/faults.rst that the other fault tests do not cover."""

import shutil

import pytest

from ..launch import OPEN_MPI_ENV, PYTHON, launch, need, slurm_is_up, standard_script, task_ends, write_script

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


@pytest.mark.parametrize("argument, status", [("7", 7), ('"a message"', 1)], ids=["n", "message"])
def test_sys_exit_in_the_client_code_is_every_ranks_exit_status(job_dir, argument, status):
    script = standard_script(job_dir, "SLURMRunner", extra=f"sys.exit({argument})")
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir)
    assert result.returncode == status, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), f"Exited with exit code {status}"), result.report()
    # nothing beyond what the code prints (sys.exit("a message") prints the message, as Python does)
    said = [line for line in result.stderr.splitlines() if not line.startswith("srun: error") and " - INFO - " not in line]
    assert said == (["a message"] if status == 1 else []), result.report()
    assert result.leftovers == [], result.report()
    assert list(job_dir.glob("scheduler-*.json")) == []


@pytest.mark.mpi
def test_mpich_under_srun_pmix_stops_every_process_in_a_world_of_one(job_dir, mpich_env):
    """A launcher that does not match the MPI library: each process alone."""
    script = standard_script(job_dir, "MPIRunner")
    result = launch(["srun", "--mpi=pmix", "-n", "3", PYTHON, script], job_dir, env=mpich_env)
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(3), "Exited with exit code 1"), result.report()
    assert result.stderr.count("the MPI world has 1 ranks but at least 3 are needed") == 3, result.report()
    assert result.seconds < 15, result.report()  # 2-3 s in 3 runs (2026-12-02), start-up included
    assert result.leftovers == [], result.report()


@pytest.mark.mpi
def test_open_mpi_mpi4py_under_mpiexec_mpich_stops_every_process_in_a_world_of_one(job_dir):
    """The other mismatch of the row: mpi4py on Open MPI (no MPICH environment) under Hydra."""
    need(shutil.which("mpiexec.mpich") is not None, "MPICH")
    script = standard_script(job_dir, "MPIRunner")
    result = launch(["mpiexec.mpich", "-n", "3", PYTHON, script], job_dir, env=OPEN_MPI_ENV)
    assert result.returncode == 1, result.report()
    assert result.stderr.count("the MPI world has 1 ranks but at least 3 are needed") == 3, result.report()
    assert result.seconds < 15, result.report()
    assert result.leftovers == [], result.report()


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
