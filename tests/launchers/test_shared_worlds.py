"""Shared and one-rank worlds under real launchers: dask-mpi's own cases, and every layout it accepts.

A rank that is both ``scheduler_rank`` and ``client_rank`` runs the scheduler
beside the client code; with ``exclusive_workers=False`` it runs a worker too,
so ``mpirun -n 1`` is a whole cluster.
"""

import itertools
import re
from pathlib import Path

import pytest

from ..launch import PYTHON, launch, need, need_module, slurm_is_up, srun_task_ends, timing, write_script

pytestmark = [pytest.mark.timeout(240)]

# -- dask-mpi's own test scripts, with the import swapped, as its suite runs them -----------------
DASK_MPI_CASES = [
    # script, ranks, arguments, dask-mpi's exit status (dask_mpi/tests/test_execute.py, test_initialize.py)
    ("execute_basic.py", 4, (1, 0, True), 0),  # the defaults
    ("execute_basic.py", 1, (1, 0, True), 1),  # too few ranks
    ("execute_basic.py", 4, (2, 3, True), 0),
    ("execute_basic.py", 5, (1, 3, True), 0),
    ("execute_basic.py", 3, (2, 2, True), 0),  # scheduler and client code share rank 2
    ("execute_basic.py", 2, (0, 0, False), 0),  # ... and run a worker beside them
    ("execute_basic.py", 1, (0, 0, False), 0),  # one rank: the whole cluster
    ("execute_basic.py", 1, (0, 0, True), 1),  # one rank, but workers of their own asked for
    ("execute_no_exit.py", 4, (), 0),
    ("initialize_basic.py", 4, (), 0),
    ("initialize_basic.py", 1, (), 1),  # too few ranks
    ("initialize_no_exit.py", 4, (), 0),
]


def dask_mpi_script(job_dir: Path, name: str) -> Path:
    """dask-mpi's installed test script ``name``, importing from dask_runners.mpi instead."""
    tests = Path(need_module("dask_mpi").__file__).parent / "tests"
    need((tests / name).exists(), f"dask-mpi's test script {name}")
    source = (tests / name).read_text()
    assert "from dask_mpi import" in source
    return write_script(job_dir, source.replace("from dask_mpi import", "from dask_runners.mpi import"), name)


@pytest.mark.mpi
@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
@pytest.mark.parametrize("script, ranks, arguments, status", DASK_MPI_CASES)
def test_dask_mpis_own_cases_give_its_exit_status(job_dir, launcher, request, script, ranks, arguments, status):
    prefix, env = request.getfixturevalue(launcher)
    path = dask_mpi_script(job_dir, script)
    args = [str(ranks), *map(str, arguments)] if arguments else []  # execute_basic.py takes the size first
    result = launch([*prefix, str(ranks), PYTHON, path, *args], job_dir, env)
    if status == 0:
        result.assert_clean_success()
    else:
        assert result.returncode == status, result.report()
        assert "WorldTooSmallError" in result.stderr and "are needed" in result.stderr, result.report()
        assert result.leftovers == []


# -- every layout dask-mpi's execute accepts, at 1, 2 and 3 ranks -----------------------------------
EVERY_LAYOUT = """\
import itertools, sys
from dask.distributed import Client
from mpi4py import MPI
from dask_runners.mpi import WorldTooSmallException, execute

def client_code(expected):
    with Client() as client:
        if expected:
            client.wait_for_workers(len(expected))
        names = sorted(client.run(lambda dask_worker: dask_worker.name).values())
        done = [client.submit(lambda x: x + 1, 10, workers=[name], pure=False).result() for name in names]
        print("RAN", CASE, names, done == [11] * len(names), flush=True)

size = MPI.COMM_WORLD.Get_size()
for CASE in itertools.product(range(size), range(size), (True, False)):
    client_rank, scheduler_rank, exclusive = CASE
    expected = sorted(set(range(size)) - ({client_rank, scheduler_rank} if exclusive else set()))
    try:
        execute(client_code, client_args=(expected,), client_rank=client_rank, scheduler_rank=scheduler_rank,
                exclusive_workers=exclusive, dashboard=False)
    except WorldTooSmallException:
        if MPI.COMM_WORLD.Get_rank() == 0:
            print("REFUSED", CASE, flush=True)
"""


def expected_lines(size: int) -> list[str]:
    """What the script prints for every (client_rank, scheduler_rank, exclusive_workers) of ``size`` ranks."""
    lines = []
    for client_rank, scheduler_rank, exclusive in itertools.product(range(size), range(size), (True, False)):
        case = (client_rank, scheduler_rank, exclusive)
        if size < 1 + max(client_rank, scheduler_rank, exclusive):  # dask-mpi's rule
            lines.append(f"REFUSED {case}")
            continue
        workers = sorted(set(range(size)) - ({client_rank, scheduler_rank} if exclusive else set()))
        lines.append(f"RAN {case} {workers} True")
    return lines


def srun_pmix():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    return ["srun", "--mpi=pmix", "-n"], {}


@pytest.mark.mpi
@pytest.mark.parametrize("launcher", ["open_mpi", "mpich", "srun_pmix"])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_every_layout_dask_mpi_accepts_runs_one_after_another_in_one_job(job_dir, launcher, size, request):
    prefix, env = srun_pmix() if launcher == "srun_pmix" else request.getfixturevalue(launcher)
    script = write_script(job_dir, EVERY_LAYOUT)
    result = launch([*prefix, str(size), PYTHON, script], job_dir, env, timeout=200)
    result.assert_clean_success()
    seen = [line for line in result.stdout.splitlines() if line.startswith(("RAN", "REFUSED"))]
    # one case after another, but the launcher forwards each rank's output on its own
    assert sorted(seen) == sorted(expected_lines(size)), result.report()


# -- SLURMRunner's shared worlds -----------------------------------------------------------------
SHARED = """\
import sys
from dask.distributed import Client
from dask_runners import SLURMRunner

with SLURMRunner(scheduler_rank={rank}, client_rank={rank}, exclusive_workers={exclusive}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        names = sorted(client.run(lambda dask_worker: dask_worker.name).values())
        print("RESULT", client.submit(lambda x: x + 1, 41).result(), "WORKERS", names, flush=True)
        {extra}
print("AFTER", runner.rank, flush=True)
"""


@pytest.mark.slurm
@pytest.mark.parametrize(
    "ranks, rank, exclusive, workers",
    [(1, 0, False, [0]), (2, 0, True, [1]), (3, 2, True, [0, 1]), (3, 1, False, [0, 1, 2])],
)
def test_slurm_runner_runs_the_scheduler_beside_the_client_code(job_dir, ranks, rank, exclusive, workers):
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    script = write_script(job_dir, SHARED.format(rank=rank, exclusive=exclusive, extra="pass"))
    result = launch(["srun", "-n", str(ranks), PYTHON, script], job_dir)
    result.assert_clean_success()
    assert f"RESULT 42 WORKERS {workers}" in result.stdout
    assert re.findall(r"AFTER (\d+)", result.stdout) == [str(rank)]  # only the shared rank goes on
    assert list(job_dir.glob("scheduler-*.json")) == []


@pytest.mark.slurm
def test_a_failing_body_on_a_shared_rank_fails_every_rank_at_once(job_dir):
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    extra = 'print("RAISING", flush=True); raise ValueError("boom beside the scheduler")'
    script = write_script(job_dir, SHARED.format(rank=0, exclusive=True, extra=extra))
    result = launch(["srun", "-n", "3", PYTHON, script], job_dir, when="RAISING", send=[lambda line: None])
    assert result.returncode == 1, result.report()
    assert result.tracebacks == 1 and "ValueError: boom beside the scheduler" in result.stderr, result.report()
    ended = srun_task_ends(result.stderr)
    assert {task: how for task, (node, how) in ended.items()} == dict.fromkeys(range(3), "Exited with exit code 1")
    # 0.20-0.55 s from the raise to srun's return in 3 runs (2026-12-02)
    assert timing("shared rank raises: srun returned", result.after_signal) < 1.5, result.report()
    assert result.leftovers == [], result.report()


@pytest.mark.slurm
def test_a_killed_shared_rank_ends_its_workers_with_a_failure(job_dir):
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    extra = 'import os, signal; print("DYING", flush=True); os.kill(os.getpid(), signal.SIGKILL)'
    script = write_script(job_dir, SHARED.format(rank=0, exclusive=True, extra=extra))
    result = launch(["srun", "-n", "3", PYTHON, script], job_dir, when="DYING", send=[lambda line: None])
    assert result.returncode == 137, result.report()  # srun's status for the killed task
    ended = {task: how for task, (node, how) in srun_task_ends(result.stderr).items()}
    assert ended == {0: "Killed", 1: "Exited with exit code 1", 2: "Exited with exit code 1"}, result.report()
    for rank in (1, 2):
        assert f"worker rank {rank}: lost the connection to the scheduler" in result.stderr, result.report()
    # "within a second or two": 0.13-0.37 s from the kill to srun's return in 31 runs (2026-12-03),
    # and 1.59 s once in a full CI run, where one worker rank took 1.5 s to conclude
    assert timing("shared rank killed: srun returned", result.after_signal) < 2.0, result.report()
    assert result.leftovers == [], result.report()
