"""Every start is bounded: a failure while the ranks start ends the whole job at once, saying why."""

import re

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, task_ends, timing
from . import scripts
from .test_srun_faults import EXIT_1, NOTHING

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]

#: A worker whose start never ends until the rank gives up on it, and a
#: scheduler rank that dies once the workers are starting.
SCHEDULER_DIES_WHILE_WORKERS_START = scripts.HEADER + """
from distributed import Worker

class NeverReady(Worker):
    async def start_unsafe(self):
        await asyncio.sleep(3600)

class DiesEarly({runner}):
    async def on_scheduler_start(self, scheduler):
        await asyncio.sleep(2)
        print("SCHEDULER DIES", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

with DiesEarly(worker_class=NeverReady) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
"""


@pytest.fixture(autouse=True)
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def srun(script, cwd, n=4, env=None):
    """Run the script; :attr:`Launch.after_signal` counts from the ranks' start (STARTED)."""
    return launch(["srun", "-n", str(n), PYTHON, script], cwd, env=env, when="STARTED", send=[NOTHING])


@pytest.mark.parametrize(
    "options, error",
    [
        ('worker_class="no_such_module.Worker"', "ModuleNotFoundError: No module named 'no_such_module'"),
        ('worker_options={"no_such_option": 1}', "TypeError"),
    ],
    ids=["worker class", "worker option"],
)
def test_a_worker_that_cannot_be_made_ends_the_job_at_once(job_dir, options, error):
    result = srun(scripts.write(job_dir, scripts.STANDARD, "SLURMRunner", options), job_dir)
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), EXIT_1), result.report()
    assert re.search(rf"worker rank [23] could not start its worker: {re.escape(error)}", result.stderr), result.report()
    # the client rank hears it whether it had joined yet or not
    assert re.search(r"client rank 1: the cluster was stopped .*: worker rank [23] could not start", result.stderr), (
        result.report()
    )
    # "within seconds", not the 300 s workers deadline: 0.5-1.1 s from the first rank's start in
    # 4 runs (2026-12-02), the other ranks' imports on 2 cores included
    assert timing("worker cannot start", result.after_signal) < 4, result.report()
    assert result.leftovers == []


def test_a_missing_scheduler_file_directory_fails_every_rank_at_once(job_dir):
    options = 'scheduler_file="no/such/dir/scheduler.json"'
    result = srun(scripts.write(job_dir, scripts.STANDARD, "SLURMRunner", options), job_dir)
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), EXIT_1), result.report()
    assert result.stderr.count(f"SchedulerFileError: the directory {job_dir}/no/such/dir does not exist") == 4, (
        result.report()
    )
    # "at once", before anyone waits (not the 300 s discovery deadline): 1.0-1.7 s from the first
    # rank's start in 2 runs (2026-12-02), the other ranks' imports on 2 cores included
    assert timing("missing directory", result.after_signal) < 4, result.report()
    assert result.leftovers == [], result.report()


def test_workers_that_are_starting_leave_when_the_scheduler_dies(job_dir):
    # A worker rank that has not registered yet asks the scheduler once a lease: every 4 s here.
    result = srun(scripts.write(job_dir, SCHEDULER_DIES_WHILE_WORKERS_START, "SLURMRunner"), job_dir,
                  env={"DASK_RUNNERS__TIMEOUTS__LEASE": "4"})
    assert "SCHEDULER DIES" in result.stdout, result.report()
    # 1 on the client and worker ranks; the scheduler rank's own status is the signal's
    assert result.returncode == 137, result.report()
    assert task_ends(result.stderr) == {0: "Killed", 1: EXIT_1, 2: EXIT_1, 3: EXIT_1}, result.report()
    for rank in (2, 3):
        assert re.search(rf"worker rank {rank}: lost the connection to the scheduler", result.stderr), result.report()
    # the scheduler dies 2 s in; every worker gives up at its next question (within a lease, 4 s),
    # not "Waiting to connect" for ever: 5.2-5.3 s from the first rank's start in 3 runs (2026-12-03)
    assert timing("scheduler dies while workers start", result.after_signal) < 8, result.report()
    assert result.leftovers == [], result.report()


@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan"])
def test_a_bad_deadline_ends_the_job_within_seconds_naming_the_key(job_dir, value):
    result = srun(scripts.write(job_dir, scripts.STANDARD, "SLURMRunner"), job_dir,
                  env={"DASK_RUNNERS__TIMEOUTS__LEASE": value})
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), EXIT_1), result.report()
    message = "ConfigurationError: the dask config key runners.timeouts.lease (DASK_RUNNERS__TIMEOUTS__LEASE) is"
    assert result.stderr.count(message) == 4, result.report()
    # "when the runner is made", before any wait: 0.4-2.8 s from the first rank's start in 8 runs
    # (2026-12-02), the other ranks' imports on 2 cores included
    assert timing(f"bad deadline {value}", result.after_signal) < 4, result.report()
    assert result.leftovers == [], result.report()
