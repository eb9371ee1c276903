"""Faults under real Open MPI and MPICH launchers."""

import signal

import pytest

from ..launch import PYTHON, launch
from . import scripts

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(180)]

LAUNCHERS = ["open_mpi", "mpich"]


def run(request, launcher, script, job_dir, n=4, **kwargs):
    prefix, env = request.getfixturevalue(launcher)
    return launch([*prefix, str(n), PYTHON, script], job_dir, env=env, **kwargs)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_rank_failing_before_the_cluster_is_up_aborts_the_world(job_dir, launcher, request):
    result = run(request, launcher, scripts.write(job_dir, scripts.WORKER_FAILS_TO_START, "MPIRunner"), job_dir)
    assert result.returncode != 0, result.report()
    assert "rank 3 cannot start its worker" in result.stderr, result.report()
    assert result.seconds < 20, result.report()
    assert result.leftovers == []


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_client_rank_killed_ends_the_job(job_dir, launcher, request):
    result = run(request, launcher, scripts.write(job_dir, scripts.CLIENT_KILLED, "MPIRunner"), job_dir)
    assert result.returncode != 0, result.report()
    assert result.seconds < 20, result.report()
    assert result.leftovers == []


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_scheduler_rank_killed_raises_in_the_client_code(job_dir, launcher, request):
    result = run(request, launcher, scripts.write(job_dir, scripts.SCHEDULER_KILLED, "MPIRunner"), job_dir)
    assert result.returncode != 0, result.report()
    assert result.seconds < 20, result.report()
    assert result.leftovers == []


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sigterm_to_the_launcher_ends_every_rank(job_dir, launcher, request):
    script = scripts.write(job_dir, scripts.WAITS_FOR_SIGNAL, "MPIRunner")
    result = run(request, launcher, script, job_dir, when="READY", send=[signal.SIGTERM])
    assert result.returncode != 0, result.report()
    assert result.after_signal < 5, result.report()
    assert result.leftovers == []


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_failing_body_with_nanny_workers_ends_quickly(job_dir, launcher, request):
    script = scripts.write(job_dir, scripts.STANDARD.replace('print("RESULT OK", flush=True)', 'raise ValueError("boom")'),
                           "MPIRunner", 'worker_class="distributed.Nanny"')
    result = run(request, launcher, script, job_dir)
    assert result.returncode != 0, result.report()
    assert result.tracebacks == 1, result.report()
    assert result.seconds < 20, result.report()
    assert result.leftovers == []
