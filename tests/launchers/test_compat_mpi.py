"""dask-mpi scripts, with only the import changed, under real mpirun (Open MPI) and mpiexec (MPICH)."""

import re

import pytest

from ..launch import PYTHON, launch, write_script

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(180)]

INITIALIZE = """\
from dask_runners.mpi import initialize
from dask.distributed import Client

initialize(dashboard=False, nthreads=1)
client = Client()                       # the job's scheduler, with the job's credentials
client.wait_for_workers(2)
print("RESULT", client.submit(lambda x: x + 1, 41).result(), flush=True)
{extra}
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_initialize_then_plain_client_code(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    script = write_script(job_dir, INITIALIZE.format(extra='print("AFTER", flush=True)'))
    result = launch([*prefix, "4", PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert "RESULT 42" in result.stdout
    assert result.stdout.count("AFTER") == 1  # only the client rank goes on with the script


def test_an_error_after_initialize_ends_every_rank_quickly(job_dir, open_mpi):
    prefix, env = open_mpi
    script = write_script(job_dir, INITIALIZE.format(extra='print("RAISING", flush=True)\nraise ValueError("boom after initialize")'))
    result = launch([*prefix, "4", PYTHON, script], job_dir, env, when="RAISING", send=[lambda line: None])
    assert result.returncode != 0, result.report()
    assert result.tracebacks == 1, result.report()
    assert "ValueError: boom after initialize" in result.stderr
    assert result.after_signal < 3, result.report()
    assert result.leftovers == []


EXECUTE = """\
import sys
from dask.distributed import Client
from dask_runners.mpi import execute

def client_code(n_workers, fail=False):
    with Client() as client:
        client.wait_for_workers(n_workers)
        names = sorted(map(str, client.run(lambda dask_worker: dask_worker.name).values()))
        print("RESULT", client.submit(lambda x: x + 1, 41).result(), "WORKERS", " ".join(names), flush=True)
        if fail:
            print("RAISING", flush=True)
            raise ValueError("boom in the client function")

execute(client_code, client_args=({workers},), client_kwargs={{"fail": {fail}}}, dashboard=False, {options})
print("AFTER", flush=True)
"""

LAYOUTS = [
    # ranks, options, workers' names
    (3, "", "2"),
    (4, "scheduler_rank=1, client_rank=0", "2 3"),
    (5, "scheduler_rank=4, client_rank=2, worker_name='w'", "w-0 w-1 w-3"),
    (3, "scheduler_rank=1, client_rank=0, exclusive_workers=False", "0 1 2"),
]


@pytest.mark.parametrize("ranks, options, names", LAYOUTS)
def test_execute_with_rank_layouts_and_sizes(job_dir, open_mpi, ranks, options, names):
    prefix, env = open_mpi
    script = write_script(job_dir, EXECUTE.format(workers=len(names.split()), fail=False, options=options))
    result = launch([*prefix, str(ranks), PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert f"RESULT 42 WORKERS {names}\n" in result.stdout
    assert result.stdout.count("AFTER") == ranks  # as in dask-mpi, every rank returns from execute


def test_execute_under_mpich(job_dir, mpich):
    prefix, env = mpich
    script = write_script(job_dir, EXECUTE.format(workers=2, fail=False, options="scheduler_rank=1, client_rank=0"))
    result = launch([*prefix, "4", PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert "RESULT 42 WORKERS 2 3\n" in result.stdout


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_a_failing_client_function_fails_the_job_quickly(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    script = write_script(job_dir, EXECUTE.format(workers=2, fail=True, options=""))
    result = launch([*prefix, "4", PYTHON, script], job_dir, env, when="RAISING", send=[lambda line: None])
    assert result.returncode != 0, result.report()
    assert result.tracebacks == 1, result.report()
    assert "ValueError: boom in the client function" in result.stderr
    assert "AFTER" not in result.stdout
    # Open MPI's mpirun may wait its own kill timeout (1 s) for ranks already leaving.
    assert result.after_signal < 3, result.report()
    assert result.leftovers == []


SPLIT = """\
from mpi4py import MPI
from dask.distributed import Client
from dask_runners.mpi import initialize, send_close_signal

world = MPI.COMM_WORLD
dask_ranks = 4
color = 0 if world.rank < dask_ranks else 1
comm = world.Split(color, world.rank)

if color == 0:
    if initialize(comm=comm, exit=False, dashboard=False):
        with Client() as client:
            client.wait_for_workers(2)
            print("RESULT", client.submit(sum, range(10)).result(), flush=True)
        send_close_signal()
else:
    # MPI work of their own while the others run Dask
    print(f"OTHER {comm.allreduce(world.rank)}", flush=True)

total = world.allreduce(1)
print(f"DONE {world.rank} {total}", flush=True)  # one write: ranks' output interleaves
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_exit_false_inside_a_wider_mpi_program_on_a_split_communicator(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    script = write_script(job_dir, SPLIT)
    result = launch([*prefix, "6", PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert "RESULT 45" in result.stdout
    assert "OTHER 9" in result.stdout  # ranks 4 + 5
    # ranks' lines may interleave (MPICH forwards output in chunks): find them anywhere
    assert sorted(re.findall(r"DONE (\d+) 6", result.stdout)) == [str(rank) for rank in range(6)]


FORGETS_TO_CLOSE = """\
from dask.distributed import Client
from dask_runners.mpi import initialize

is_client = initialize(exit=False, dashboard=False)
if is_client:
    with Client() as client:
        print("RESULT", client.submit(sum, [1, 2]).result(), flush=True)
print("END", is_client, flush=True)   # no send_close_signal(): the cluster closes at exit
"""


def test_exit_false_without_send_close_signal_closes_at_exit_instead_of_hanging(job_dir, open_mpi):
    prefix, env = open_mpi
    result = launch([*prefix, "3", PYTHON, write_script(job_dir, FORGETS_TO_CLOSE)], job_dir, env, timeout=60)
    result.assert_clean_success()
    assert sorted(re.findall(r"END (\w+)", result.stdout)) == ["False", "False", "True"]
