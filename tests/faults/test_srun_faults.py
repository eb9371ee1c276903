"""Faults under a real srun: each ends quickly, truthfully, and leaves nothing behind."""

import signal
import subprocess
import time

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up
from . import scripts

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def srun(script, cwd, n=4, env=None, **kwargs):
    return launch(["srun", "-n", str(n), PYTHON, script], cwd, env=env, **kwargs)


def assert_no_scheduler_file(job_dir):
    assert sorted(p.name for p in job_dir.glob("scheduler*.json")) == []


def test_client_rank_killed_ends_every_rank_with_a_message(job_dir):
    result = srun(scripts.write(job_dir, scripts.CLIENT_KILLED, "SLURMRunner"), job_dir)
    assert result.returncode != 0, result.report()
    assert "the client rank (rank 1) vanished" in result.stderr, result.report()
    assert result.seconds < 20, result.report()
    assert result.leftovers == []
    assert_no_scheduler_file(job_dir)


def test_scheduler_rank_killed_raises_in_the_client_code_within_seconds(job_dir):
    result = srun(scripts.write(job_dir, scripts.SCHEDULER_KILLED, "SLURMRunner"), job_dir)
    assert result.returncode != 0, result.report()
    assert "SchedulerLostError" in result.stderr, result.report()
    if "LOST after " in result.stdout:
        lost_after = float(result.stdout.split("LOST after ")[1].split()[0])
        assert lost_after < 5, result.report()
    else:
        # About one run in eight, distributed's client cancels the future before the
        # runner interrupts the body (both see the same connection close); the runner's
        # SchedulerLostError then follows as the block is left (docs/faults.rst).
        assert "cancelled for reason: scheduler-connection-lost" in result.stderr, result.report()
    assert "worker rank 2: lost the connection to the scheduler" in result.stderr
    assert result.seconds < 20, result.report()
    assert result.leftovers == []


def test_killed_worker_does_not_stop_the_work(job_dir):
    result = srun(scripts.write(job_dir, scripts.WORKER_KILLED, "SLURMRunner"), job_dir, n=5)
    assert "RESULTS OK" in result.stdout, result.report()
    # srun itself reports the killed task, so the step's status is not 0
    assert result.returncode != 0
    assert "Killed" in result.stderr
    assert result.leftovers == []


def test_killed_worker_under_a_nanny_is_restarted_and_the_job_succeeds(job_dir):
    script = scripts.write(job_dir, scripts.WORKER_KILLED, "SLURMRunner", 'worker_class="distributed.Nanny"')
    result = srun(script, job_dir, n=4)
    assert "RESULTS OK" in result.stdout, result.report()
    assert "WORKERS BACK 2" in result.stdout, result.report()
    assert result.returncode == 0, result.report()
    assert result.leftovers == []
    assert_no_scheduler_file(job_dir)


def test_stale_file_from_a_killed_earlier_step_is_ignored(job_dir):
    """Two steps in one allocation share a job id and a file name; the first dies."""
    options = 'scheduler_file="scheduler-{job_id}.json"'
    first = scripts.write(job_dir, scripts.SCHEDULER_KILLED, "SLURMRunner", options, name="first.py")
    second = scripts.write(job_dir, scripts.STANDARD, "SLURMRunner", options, name="second.py")
    steps = (
        f"srun -n 4 {PYTHON} {first}; echo FIRST_STEP_RC=$?; ls scheduler-*.json; "
        f"srun -n 4 {PYTHON} {second}; echo SECOND_STEP_RC=$?"
    )
    result = launch(["salloc", "-n", "4", "bash", "-c", steps], job_dir)
    assert "FIRST_STEP_RC=0" not in result.stdout, result.report()
    assert "scheduler-" in result.stdout.split("FIRST_STEP_RC")[1], "the first step left no stale file"
    assert "RESULT OK" in result.stdout, result.report()
    assert "SECOND_STEP_RC=0" in result.stdout, result.report()
    assert result.seconds < 60
    assert_no_scheduler_file(job_dir)


def test_stuck_scheduler_rank_makes_every_rank_fail_at_the_deadline(job_dir):
    script = scripts.write(job_dir, scripts.SCHEDULER_STUCK, "Stuck")
    script.write_text(script.read_text().replace("class Stuck(Stuck)", "class Stuck(SLURMRunner)").replace(
        "import Stuck,", "import SLURMRunner,"))
    result = srun(script, job_dir, env={"DASK_RUNNERS__TIMEOUTS__DISCOVERY": "3"})
    assert result.returncode != 0, result.report()
    assert "SHOULD NOT GET HERE" not in result.stdout
    assert "timed out after 3 s starting the scheduler" in result.stderr, result.report()
    # Each waiting rank fails at its own deadline, or at once when the
    # scheduler rank's failure lands in the file first (a reader on the
    # same node is woken by it): either way it names a 3 s deadline.
    waiting_failures = result.stderr.count("timed out after 3 s waiting for the scheduler file") + result.stderr.count(
        "SchedulerStartError: the scheduler rank could not start: DiscoveryTimeoutError"
    )
    assert waiting_failures == 3, result.report()
    assert result.seconds < 20, result.report()
    assert result.leftovers == []


def scancel(*options):
    """Cancel the job whose id the READY line names, as a user or the time limit would."""

    def cancel(line):
        subprocess.run(["scancel", *options, line.split()[1]], check=True, timeout=10)

    return cancel


@pytest.mark.parametrize(
    "signals, exit_code",
    [
        ([scancel()], 143),
        ([scancel("--signal=USR2")], 75),
        ([scancel("--signal=INT")], 130),
    ],
    ids=["scancel", "preemption warning", "SIGINT"],
)
def test_signal_to_the_step_closes_the_cluster_gracefully(job_dir, signals, exit_code):
    script = scripts.write(job_dir, scripts.WAITS_FOR_SIGNAL, "SLURMRunner")
    result = srun(script, job_dir, when="READY", send=signals)
    assert result.returncode == exit_code, result.report()
    assert "BODY LEFT" in result.stdout, result.report()
    assert result.after_signal < 5, result.report()
    assert result.leftovers == []
    assert_no_scheduler_file(job_dir)


def test_preemption_callback_lets_the_job_carry_on(job_dir):
    script = scripts.write(job_dir, scripts.PREEMPTION_CALLBACK, "SLURMRunner")
    result = srun(script, job_dir, when="READY", send=[signal.SIGUSR2])
    assert "CHECKPOINTED ['preempted']" in result.stdout, result.report()
    result.assert_clean_success()


def test_ctrl_c_twice_at_srun_ends_the_step_at_once(job_dir):
    """srun forwards the second Ctrl-C, then kills the step itself (its own exit code)."""
    script = scripts.write(job_dir, scripts.WAITS_FOR_SIGNAL, "SLURMRunner")
    result = srun(script, job_dir, when="READY", send=[signal.SIGINT, signal.SIGINT])
    assert result.returncode != 0, result.report()
    assert "received SIGINT" in result.stderr, result.report()
    assert result.after_signal < 5, result.report()
    assert result.leftovers == []


def test_scancel_while_the_ranks_are_still_starting_ends_them_all(job_dir):
    script = scripts.write(job_dir, scripts.SCHEDULER_STUCK, "SLURMRunner")
    script.write_text(script.read_text().replace("class Stuck(Stuck)", "class Stuck(SLURMRunner)").replace(
        "import Stuck,", "import SLURMRunner,"))
    cancel = scancel()
    result = srun(script, job_dir, when="STARTING", send=[lambda line: time.sleep(2) or cancel(line)])
    assert result.returncode == 143, result.report()
    assert result.stderr.count("received SIGTERM") == 4, result.report()
    assert result.after_signal < 8, result.report()
    assert result.leftovers == []


def test_scheduler_that_cannot_start_fails_every_rank_at_once(job_dir):
    script = scripts.write(job_dir, scripts.STANDARD, "SLURMRunner", 'scheduler_options={"no_such_option": 1}')
    result = srun(script, job_dir)
    assert result.returncode != 0, result.report()
    assert result.stderr.count("the scheduler rank could not start: TypeError") == 3, result.report()
    assert result.seconds < 15, result.report()
    assert result.leftovers == []
