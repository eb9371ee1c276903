"""MPIRunner under real Open MPI and MPICH launchers."""

import json
import os

import pytest

from ..launch import PYTHON, launch, mpi4py_importable, need, slurm_is_up, standard_script, write_script

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
    # rank 0's traceback, rank 1's one line; mpirun ends the job at the first rank to fail, so one
    # of the two may be cut off (srun, which waits for both, is exact)
    one_line = "rank 1: dask_runners.exceptions.WorldTooSmallError: the MPI world has 2 ranks"
    assert result.tracebacks <= 1, result.report()
    assert result.tracebacks == 1 or one_line in result.stderr, result.report()


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_runner_detects_mpi_and_uses_the_broadcast(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    script = standard_script(job_dir, "Runner", extra='print("JOB", type(runner).__name__, runner.job.describe(), flush=True)')
    result = launch([*prefix, "4", PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert "JOB MPIRunner" in result.stdout
    assert "rank=1/4" in result.stdout


BROADCASTS = """
import asyncio
import sys

from mpi4py import MPI

from dask_runners.transport.broadcast import FRAME, BroadcastTransport

transport = BroadcastTransport(MPI.COMM_WORLD, root=2)
root = MPI.COMM_WORLD.Get_rank() == 2
for size in (0, 10, FRAME - 8, FRAME - 7, 100_000):
    sent = bytes(i % 251 for i in range(size))
    got = asyncio.run(transport._broadcast(sent if root else b""))
    sys.stdout.write(f"BROADCAST {size} {got == sent}\\n")  # one write: lines of ranks do not interleave
    sys.stdout.flush()
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_the_broadcast_carries_payloads_within_and_beyond_one_frame(job_dir, launcher, request):
    """A contact fits in one broadcast; a longer payload follows in a second one, on every rank alike."""
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "4", PYTHON, write_script(job_dir, BROADCASTS)], job_dir, env)
    result.assert_clean_success()
    for size in (0, 10, 4088, 4089, 100_000):
        assert result.stdout.count(f"BROADCAST {size} True") == 4, result.report()


# -- the host exchange: runner.job and torch_distributed_env() under every MPI launcher ----------

#: Every rank prints where it is and its torch environment, before the cluster starts
#: (service ranks do not come back from entering the runner), then runs the cluster.
TORCH_ENV = """\
import json, os, socket, sys
from dask.distributed import Client
from dask_runners import MPIRunner, current_job

runner = MPIRunner()
report = {
    "rank": runner.rank,
    "host": socket.gethostname(),
    "launcher_local_rank": os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", os.environ.get("MPI_LOCALRANKID")),
    "hosts": list(runner.job.hosts),
    "torch": runner.job.torch_distributed_env(environ={}),
    "current_job": current_job().torch_distributed_env(environ={}),
}
sys.stdout.write("TORCH " + json.dumps(report) + "\\n")  # one write: no other rank's line inside
sys.stdout.flush()
with runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        print("RESULT ok", flush=True)
"""


def torch_reports(result) -> list[dict]:
    """The TORCH line of every rank, in rank order."""
    lines = [line[len("TORCH "):] for line in result.stdout.splitlines() if line.startswith("TORCH ")]
    reports = sorted((json.loads(line) for line in lines), key=lambda report: report["rank"])
    assert [report["rank"] for report in reports] == list(range(len(reports))), result.report()
    return reports


def check_torch_env(reports: list[dict]) -> None:
    """The same rendezvous everywhere, at rank 0's host; ranks numbered as their hosts say."""
    world_size = len(reports)
    hosts = [report["host"] for report in reports]
    nodes = list(dict.fromkeys(hosts))  # in order of their lowest rank
    for rank, report in enumerate(reports):
        env = report["torch"]
        local = hosts[:rank].count(hosts[rank])
        assert env == {
            "MASTER_ADDR": reports[0]["host"],
            "MASTER_PORT": reports[0]["torch"]["MASTER_PORT"],
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_RANK": str(local),
            "LOCAL_WORLD_SIZE": str(hosts.count(hosts[rank])),
            "NODE_RANK": str(nodes.index(hosts[rank])),
        }, report
        assert report["hosts"] == nodes, report
        assert report["launcher_local_rank"] in (None, str(local)), report  # the launcher agrees
        assert report["current_job"] == env, report  # current_job() reuses the runner's exchange


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich", "srun_pmix", "srun_pmi2_mpich"])
def test_torch_env_agrees_on_every_rank(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "4", PYTHON, write_script(job_dir, TORCH_ENV)], job_dir, env)
    result.assert_clean_success()
    assert "RESULT ok" in result.stdout, result.report()
    reports = torch_reports(result)
    assert len(reports) == 4
    check_torch_env(reports)
    assert {report["host"] for report in reports} == {os.uname().nodename}


#: A communicator of the same ranks in reverse order: its rank 0 is the world's last rank.
REVERSED = """\
import json, sys
from mpi4py import MPI
from dask_runners import MPIRunner, current_job

world = MPI.COMM_WORLD
comm = world.Split(0, world.Get_size() - world.Get_rank())
runner = MPIRunner(comm=comm)
report = {"world_rank": world.Get_rank(), "rank": runner.rank, "launcher": runner.job.launcher,
          "torch": runner.job.torch_distributed_env(environ={}), "current_hosts": list(current_job().hosts)}
sys.stdout.write("TORCH " + json.dumps(report) + "\\n")  # one write: no other rank's line inside
sys.stdout.flush()
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_a_sub_communicator_numbers_torch_as_it_does(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "4", PYTHON, write_script(job_dir, REVERSED)], job_dir, env)
    assert result.returncode == 0 and result.tracebacks == 0, result.report()
    reports = torch_reports(result)
    ports = {report["torch"]["MASTER_PORT"] for report in reports}
    assert len(ports) == 1, reports
    for report in reports:
        assert report["rank"] == 3 - report["world_rank"] and report["launcher"] == "mpi", report
        assert report["torch"]["RANK"] == str(report["rank"]) and report["torch"]["LOCAL_RANK"] == str(report["rank"])
        assert report["torch"]["MASTER_ADDR"] == os.uname().nodename
        # current_job() describes the launch, not the sub-communicator: the environment alone
        assert report["current_hosts"] == [], report


MISSING_RANK = """\
import time
from mpi4py import MPI
from dask_runners import MPIRunner

if MPI.COMM_WORLD.Get_rank() == 3:
    time.sleep(60)  # never makes its MPIRunner
else:
    MPIRunner(timeouts={"discovery": 2})
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_a_rank_that_never_makes_its_runner_ends_the_job_at_the_deadline(job_dir, launcher, request):
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "4", PYTHON, write_script(job_dir, MISSING_RANK)], job_dir, env, timeout=50)
    assert result.returncode != 0, result.report()
    assert "timed out after 2 s waiting for every rank of the communicator (4 ranks)" in result.stderr, result.report()
    assert result.seconds < 20, result.report()
    assert result.leftovers == [], result.report()


EXIT_WITHOUT_COLLECTIONS = """
import atexit
import gc
import sys

from distributed import Client

from dask_runners import MPIRunner

# Registered first, so it runs last of the atexit handlers.
atexit.register(lambda: print("FROZEN AT EXIT", gc.get_freeze_count() > 0, flush=True))
unclosed = open(sys.argv[1], "w")

with MPIRunner() as runner:
    with Client(runner) as client:
        assert client.submit(lambda x: x + 1, 1).result() == 2
        unclosed.write("written by the client rank, never closed")
"""


EXIT_WITHOUT_COLLECTIONS_NOR_WITH = """
import atexit
import gc

from distributed import Client

from dask_runners import MPIRunner

# Registered first, so it runs last of the atexit handlers, after the runner's close.
atexit.register(lambda: print("FROZEN AT EXIT", gc.get_freeze_count() > 0, flush=True))
client = Client(MPIRunner())  # no with block: the cluster closes at exit
assert client.submit(lambda x: x + 1, 1).result() == 2
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_a_cluster_closed_at_exit_also_skips_the_collections(job_dir, launcher, request):
    """The hook is in place before the exit begins: one registered while atexit handlers run would not run."""
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "3", PYTHON, write_script(job_dir, EXIT_WITHOUT_COLLECTIONS_NOR_WITH)], job_dir, env)
    result.assert_clean_success()
    assert result.stdout.count("FROZEN AT EXIT True") == 1, result.report()


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_the_client_rank_exits_without_collecting_garbage_yet_flushes_its_files(job_dir, launcher, request):
    """The client rank's exit, which the whole job waits for, skips the last garbage collections."""
    prefix, env = request.getfixturevalue(launcher)
    script = write_script(job_dir, EXIT_WITHOUT_COLLECTIONS)
    written = job_dir / "unclosed.txt"
    result = launch([*prefix, "3", PYTHON, script, str(written)], job_dir, env)
    result.assert_clean_success()
    assert result.stdout.count("FROZEN AT EXIT True") == 1, result.report()
    assert written.read_text() == "written by the client rank, never closed"
