"""MPIRunner under real Open MPI and MPICH launchers."""


import pytest

from ..launch import PYTHON, launch, mpi4py_importable, need, slurm_is_up, standard_script

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(180)]



@pytest.fixture
def srun_pmix():
    need(slurm_is_up() and mpi4py_importable(), "Slurm with mpi4py")
    return ["srun", "--mpi=pmix", "-n"], {}


@pytest.fixture
def srun_pmi2_mpich(mpich_env):
    need(slurm_is_up() and mpi4py_importable(mpich_env), "Slurm with mpi4py")
    return ["srun", "--mpi=pmi2", "-n"], mpich_env


LAUNCHERS = ["open_mpi", "mpich", "srun_pmix", "srun_pmi2_mpich"]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_standard_workload_runs_clean(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "4", PYTHON, standard_script(job_dir, "MPIRunner")], job_dir, env)
    result.assert_clean_success()
    assert "RESULT workers 2" in result.stdout
    assert result.stdout.count("AFTER rank") == 1


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_sixteen_ranks_run_clean(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "16", PYTHON, standard_script(job_dir, "MPIRunner")], job_dir, env)
    result.assert_clean_success()
    assert "RESULT workers 14" in result.stdout


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_failing_body_fails_the_job_quickly(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    script = standard_script(
        job_dir, "MPIRunner", extra='print("RAISING", flush=True); raise ValueError("boom in the body")'
    )
    result = launch([*prefix, "4", PYTHON, script], job_dir, env, when="RAISING", send=[lambda line: None])
    assert result.returncode != 0, result.report()
    assert result.tracebacks == 1, result.report()
    assert "ValueError: boom in the body" in result.stderr
    # Once a rank exits non-zero, Open MPI's mpirun signals the others and may
    # wait its own odls_base_sigkill_timeout (1 s) for ranks already leaving.
    allowed = 1.0 + (1.0 if launcher == "open_mpi" else 0.0)
    assert result.after_signal < allowed, result.report()
    assert result.leftovers == []


def test_too_small_a_world_fails_with_the_fix(job_dir, open_mpi):
    prefix, env = open_mpi
    result = launch([*prefix, "2", PYTHON, standard_script(job_dir, "MPIRunner")], job_dir, env)
    assert result.returncode != 0
    assert "the MPI world has 2 ranks but at least 3 are needed" in result.stderr
    assert "mpirun -n 3" in result.stderr


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_runner_detects_mpi_and_uses_the_broadcast(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    script = standard_script(job_dir, "Runner", extra='print("JOB", type(runner).__name__, runner.job.describe(), flush=True)')
    result = launch([*prefix, "4", PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert "JOB MPIRunner" in result.stdout
    assert "rank=1/4" in result.stdout
