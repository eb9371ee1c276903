"""MPI initialized with the GIL released (dask_runners.mpi_init), under real Open MPI and MPICH."""

import pytest

from ..launch import PYTHON, launch, standard_script, write_script

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(180)]

OVERLAPPED = """
import sys
import threading
import time

from dask_runners.mpi_init import initialize_while


def work():
    MPI = sys.modules["mpi4py.MPI"]  # imported, not yet initialized
    deadline = time.monotonic() + 60
    while not MPI.Is_initialized():  # returns only if MPI_Init runs and ends meanwhile
        if time.monotonic() > deadline:
            raise TimeoutError("MPI_Init did not end while the work ran")
        time.sleep(0.001)
    return threading.current_thread() is not threading.main_thread()


on_its_own_thread = initialize_while(work)
from mpi4py import MPI

world = MPI.COMM_WORLD
facts = (
    on_its_own_thread,
    MPI.Query_thread() == MPI.THREAD_MULTIPLE,
    world.Get_errhandler() == MPI.ERRORS_RETURN,
    MPI.COMM_SELF.Get_errhandler() == MPI.ERRORS_RETURN,
    world.allreduce(1) == world.Get_size(),
)
try:
    world.Send(b"x", dest=world.Get_size())  # no such rank: mpi4py raises, as after its own MPI_Init
except MPI.Exception:
    facts += ("raised",)
sys.stdout.write(f"INITIALIZED {facts}\\n")  # one write: lines of ranks do not interleave
sys.stdout.flush()
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_mpi_initializes_while_the_work_runs_and_ends_as_mpi4py_would(job_dir, launcher, request):
    """The work sees MPI_Init end while it runs; MPI is then as mpi4py's own import leaves it, and mpi4py finalizes it."""
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "3", PYTHON, write_script(job_dir, OVERLAPPED)], job_dir, env)
    result.assert_clean_success()  # a rank that ended without MPI_Finalize would fail the job
    assert result.stdout.count("INITIALIZED (True, True, True, True, True, 'raised')") == 3, result.report()
    assert result.leftovers == []


CONFIGURED = """
import sys
import threading

import mpi4py

mpi4py.rc.thread_level = "funneled"

from dask_runners.mpi_init import initialize_while

before = initialize_while(lambda: ("mpi4py.MPI" not in sys.modules, threading.current_thread() is threading.main_thread()))
from mpi4py import MPI

sys.stdout.write(f"CONFIGURED {before} {MPI.Query_thread() == MPI.THREAD_FUNNELED}\\n")
sys.stdout.flush()
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_mpi4py_configured_by_the_user_initializes_its_own_way(job_dir, launcher, request):
    """With mpi4py.rc changed, the work runs first and mpi4py's import initializes MPI as configured."""
    prefix, env = request.getfixturevalue(launcher)
    result = launch([*prefix, "2", PYTHON, write_script(job_dir, CONFIGURED)], job_dir, env)
    result.assert_clean_success()
    assert result.stdout.count("CONFIGURED (True, True) True") == 2, result.report()


CREDENTIALS_WHILE_MPI_INITIALIZES = """
import threading

from distributed import Client

from dask_runners import MPIRunner
from dask_runners.security import JobCredentials

made_on = []
generate = JobCredentials.generate.__func__


def recording_generate(cls, *args, **kwargs):
    made_on.append(threading.current_thread().name)
    return generate(cls, *args, **kwargs)


JobCredentials.generate = classmethod(recording_generate)


class Reporting(MPIRunner):
    async def on_scheduler_start(self, scheduler):
        print("CREDENTIALS MADE ON", made_on, flush=True)


with Reporting() as runner:
    with Client(runner) as client:
        assert client.submit(lambda x: x + 1, 1).result() == 2
"""


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_the_scheduler_rank_makes_the_credentials_while_mpi_initializes(job_dir, launcher, request):
    """Once, on the scheduler rank, on the thread that runs beside MPI_Init."""
    prefix, env = request.getfixturevalue(launcher)
    script = write_script(job_dir, CREDENTIALS_WHILE_MPI_INITIALIZES)
    result = launch([*prefix, "3", PYTHON, script], job_dir, env)
    result.assert_clean_success()
    assert result.stdout.count("CREDENTIALS MADE ON ['dask-runners-before-mpi']") == 1, result.report()


@pytest.mark.parametrize("launcher", ["open_mpi", "mpich"])
def test_work_that_fails_beside_mpi_init_aborts_the_job_at_once(job_dir, launcher, request):
    """The other ranks wait in the host exchange for the failed one: the job ends by MPI_Abort, not at a deadline."""
    prefix, env = request.getfixturevalue(launcher)
    script = standard_script(job_dir, "MPIRunner")
    failing = job_dir / "failing.py"
    failing.write_text(
        "from dask_runners.security import JobCredentials\n"
        "def no_key(cls, *args, **kwargs):\n"
        "    raise OSError('no entropy for the key')\n"
        "JobCredentials.generate = classmethod(no_key)\n"
        f"exec(open({str(script)!r}).read())\n"
    )
    env = {**env, "DASK_RUNNERS__TIMEOUTS__DISCOVERY": "120"}
    result = launch([*prefix, "4", PYTHON, str(failing)], job_dir, env)
    assert result.returncode != 0, result.report()
    assert "OSError: no entropy for the key" in result.stderr, result.report()
    assert result.seconds < 30, result.report()  # far inside the 120 s the waiting ranks would give it
    assert result.leftovers == []


def test_a_scheduler_that_cannot_start_aborts_the_job_with_the_reason(job_dir, open_mpi, taken_port):
    """Its port is taken: the scheduler rank says which port and the fix, and MPI_Abort ends every rank at once."""
    prefix, env = open_mpi
    port = taken_port
    script = standard_script(job_dir, "MPIRunner", f"scheduler_options={{'port': {port}}}")
    env = {**env, "DASK_RUNNERS__TIMEOUTS__DISCOVERY": "120"}
    result = launch([*prefix, "4", PYTHON, script], job_dir, env)
    assert result.returncode != 0, result.report()
    said = f"the scheduler cannot listen on port {port} (Address already in use); another process on "
    assert said in result.stderr and "choose a free port in scheduler_options" in result.stderr, result.report()
    assert result.seconds < 30, result.report()  # far inside the 120 s the waiting ranks would give it
    assert result.leftovers == []
