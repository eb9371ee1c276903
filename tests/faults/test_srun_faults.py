"""Faults under a real srun: each ends quickly, truthfully, and leaves nothing behind."""

import re
import signal
import subprocess
import time

import pytest

from ..launch import (
    PYTHON,
    launch,
    logged_at,
    need,
    noted_at,
    rank_log,
    rank_logs_env,
    slurm_is_up,
    task_ends,
    timing,
)
from . import scripts

EXIT_1 = "Exited with exit code 1"
#: ``send=[NOTHING]``: only start the clock (:attr:`Launch.after_signal`) at the ``when`` line, so
#: that a wait in Slurm's queue or a slow interpreter start is not counted against the runner.
NOTHING = lambda line: None  # noqa: E731
#: What a worker rank logs when its scheduler dies: the runner's control channel notices, or
#: distributed's worker first, and the rank then finds the scheduler silent too.
WORKER_LEFT = re.compile(
    r"worker rank \d: lost the connection to the scheduler at \S+ without being told to stop: the scheduler "
    r"rank exited or was killed; leaving with exit code 1"
)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def srun(script, cwd, n=4, env=None, **kwargs):
    return launch(["srun", "-n", str(n), PYTHON, script], cwd, env=env, **kwargs)


def assert_no_scheduler_file(job_dir):
    assert sorted(p.name for p in job_dir.glob("scheduler*.json")) == []


def test_client_rank_killed_ends_every_rank_with_a_message(job_dir):
    script = scripts.write(job_dir, scripts.CLIENT_KILLED, "SLURMRunner")
    result = srun(script, job_dir, env=rank_logs_env(job_dir), when="KILLING", send=[NOTHING])
    # srun's own status for a task killed by SIGKILL (128 + 9); the other tasks say 1
    assert result.returncode == 137, result.report()
    assert task_ends(result.stderr) == {0: EXIT_1, 1: "Killed", 2: EXIT_1, 3: EXIT_1}, result.report()
    killed = noted_at(result.stdout, "KILLING the client rank")
    noticed = logged_at(rank_log(job_dir, 0), "the client rank (rank 1) vanished without leaving the cluster")
    assert noticed is not None, result.report()
    # "at once": 3-10 ms in 5 runs (2026-12-02); the log's stamps have 1 ms steps
    assert timing("client killed: noticed", noticed - killed) < 0.1, (noticed - killed, result.report())
    # every rank gone: 0.07-0.22 s from the KILLING line to srun's return in 5 runs
    assert timing("client killed: srun returned", result.after_signal) < 0.5, result.report()
    assert result.leftovers == [], result.report()
    assert_no_scheduler_file(job_dir)


def test_scheduler_rank_killed_raises_in_the_client_code_within_seconds(job_dir):
    script = scripts.write(job_dir, scripts.SCHEDULER_KILLED, "SLURMRunner")
    result = srun(script, job_dir, env=rank_logs_env(job_dir), when="KILLING", send=[NOTHING])
    assert result.returncode == 137, result.report()
    assert task_ends(result.stderr) == {0: "Killed", 1: EXIT_1, 2: EXIT_1, 3: EXIT_1}, result.report()
    # the client code, blocked in future.result(), ends with the runner's error (about one run
    # in eight distributed's FutureCancelledError comes first and SchedulerLostError follows it)
    assert "dask_runners.exceptions.SchedulerLostError: lost the connection to the scheduler" in result.stderr, (
        result.report()
    )
    assert "future.result()  # blocked here" in result.stderr and "SHOULD NOT GET HERE" not in result.stdout
    killed = noted_at(result.stdout, "KILLING the scheduler rank")
    interrupted = logged_at(rank_log(job_dir, 1), "client rank 1: lost the connection to the scheduler")
    assert interrupted is not None, result.report()
    # "a fraction of a second": 5-13 ms in 5 runs (2026-12-02)
    assert timing("scheduler killed: client interrupted", interrupted - killed) < 0.2, (interrupted - killed, result.report())
    for rank in (2, 3):
        assert WORKER_LEFT.search(rank_log(job_dir, rank)), (rank, result.report())
    # every rank gone: 0.17-0.25 s from the KILLING line to srun's return in 5 runs (2026-12-02),
    # 0.13-0.41 s in 18 runs under distributed 2025.4.0 (2026-12-04); 0.72 s once in a CI run that
    # day, where the client rank's Client was still retrying its connection 0.33 s after the loss
    assert timing("scheduler killed: srun returned", result.after_signal) < 1.5, result.report()
    assert result.leftovers == [], result.report()
    assert_no_scheduler_file(job_dir)  # the client rank removed it: the scheduler rank could not


def test_killed_worker_does_not_stop_the_work(job_dir):
    """Without a nanny the rank dies with its worker: its tasks run again on the other two."""
    script = scripts.write(job_dir, scripts.WORKER_KILLED, "SLURMRunner")
    result = srun(script, job_dir, n=5, env=rank_logs_env(job_dir))
    victim = int(re.search(r"KILLED worker (\d)", result.stdout)[1])
    assert "RESULTS OK" in result.stdout and "WORKERS NOW 2" in result.stdout, result.report()
    # the work completed; srun reports the killed task, so the step's status is srun's 137
    assert result.returncode == 137, result.report()
    assert task_ends(result.stderr) == {victim: "Killed"}, result.report()  # every other task: 0
    assert (
        f"scheduler rank: worker rank {victim} vanished without leaving the cluster (killed, or out of memory?); "
        "carrying on with the remaining workers" in rank_log(job_dir, 0)
    ), result.report()
    # about 50 tasks of 0.1 s left for two one-thread workers, 2.5 s at best: 2.56 s in 3 of 3 runs
    # (2026-12-02); a scheduler that waited for distributed's own timeouts would take far longer
    finished = noted_at(result.stdout, "RESULTS OK") - noted_at(result.stdout, f"KILLED worker {victim}")
    assert timing("worker killed: work done", finished) < 3.5
    assert result.leftovers == [], result.report()
    assert_no_scheduler_file(job_dir)


def test_killed_worker_under_a_nanny_is_restarted_and_the_job_succeeds(job_dir):
    script = scripts.write(job_dir, scripts.WORKER_KILLED, "SLURMRunner", 'worker_class="distributed.Nanny"')
    result = srun(script, job_dir, n=4, env=rank_logs_env(job_dir))
    victim = int(re.search(r"KILLED worker (\d)", result.stdout)[1])
    assert "RESULTS OK" in result.stdout, result.report()
    assert "WORKERS NOW 2" in result.stdout, result.report()  # the new worker process joined
    assert result.returncode == 0 and task_ends(result.stderr) == {}, result.report()
    assert "distributed.nanny - WARNING - Restarting worker" in rank_log(job_dir, victim), result.report()
    assert "vanished" not in rank_log(job_dir, 0), result.report()  # the rank itself stayed
    # about 50 tasks of 0.1 s left for two one-thread workers, one of them restarting: 3.02-3.06 s
    # in 3 runs (2026-12-02)
    finished = noted_at(result.stdout, "RESULTS OK") - noted_at(result.stdout, f"KILLED worker {victim}")
    assert timing("nanny worker killed: work done", finished) < 4.5
    assert result.leftovers == [], result.report()  # the nannies' worker processes included
    assert_no_scheduler_file(job_dir)


def test_stale_file_from_a_killed_earlier_step_is_ignored(job_dir):
    """Two steps in one allocation share a job id and a file name; every task of the first is killed."""
    options = 'scheduler_file="scheduler-{job_id}.json"'
    first = scripts.write(job_dir, scripts.STEP_KILLED, "SLURMRunner", options, name="first.py")
    second = scripts.write(job_dir, scripts.STANDARD, "SLURMRunner", options, name="second.py")
    steps = (
        f"srun -n 4 {PYTHON} {first}; echo FIRST_STEP_RC=$?; stat -c 'LEFT %n %a' scheduler-*.json; "
        f"srun -n 4 {PYTHON} {second}; echo SECOND_STEP_RC=$?"
    )
    result = launch(["salloc", "-n", "4", "bash", "-c", steps], job_dir)
    assert "FIRST_STEP_RC=137" in result.stdout, result.report()
    # with every rank killed at once nobody can remove the file: it stays, with the key in it, readable
    # by its owner alone (security.rst); a killed scheduler rank alone has its file removed by the client
    assert re.search(r"^LEFT scheduler-\d+\.json 600$", result.stdout, re.M), result.report()
    assert "RESULT OK" in result.stdout, result.report()
    assert "SECOND_STEP_RC=0" in result.stdout, result.report()
    # No time claim: the bound only says the second step never hangs on the stale address, as
    # dask-jobqueue's runner does. Two allocations' worth of steps: 2.5-8.2 s in 4 runs (2026-12-02).
    assert timing("stale file: both steps", result.seconds) < 30, result.report()
    assert result.leftovers == [], result.report()
    assert_no_scheduler_file(job_dir)  # the second step's scheduler replaced it, then removed it


def plant_then_run(job_dir, content: str, script, env=None):
    """Write ``content`` at the path of the first step's scheduler file, then run ``script`` there."""
    (job_dir / "plant.py").write_text(PLANT)
    steps = f"{PYTHON} plant.py \"$SLURM_JOB_ID\" && srun -n 4 {PYTHON} {script.name}; echo STEP_RC=$?"
    (job_dir / "content.txt").write_text(content)
    return launch(["salloc", "-n", "4", "bash", "-c", steps], job_dir, env=env)


#: Writes content.txt, with ``{stamp}`` filled in, where the job's first step will look, as the
#: user, mode 0600: a file of this run (for a reader) in everything but its contents.
PLANT = """\
import json, os, sys
stamp = json.dumps({"launcher": "slurm", "job_id": sys.argv[1], "step_id": "0", "restart_count": 0})
fd = os.open(f"scheduler-{sys.argv[1]}.0.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, open("content.txt").read().replace("{stamp}", stamp).encode())
os.close(fd)
print("PLANTED", flush=True)
"""

#: A scheduler rank that takes 2 s before it writes its file, so that the readers find the planted one.
SLOW_SCHEDULER = scripts.HEADER + """
class Slow({runner}):
    async def before_scheduler_start(self):
        await asyncio.sleep(2)

with Slow() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(inc, 10).result() == 11
        print("RESULT OK", flush=True)
"""


def test_a_half_written_scheduler_file_is_waited_past(job_dir):
    script = scripts.write(job_dir, SLOW_SCHEDULER, "SLURMRunner")
    result = plant_then_run(job_dir, '{"type": "Scheduler", "address": "tls://127.0', script)
    assert "PLANTED" in result.stdout and "RESULT OK" in result.stdout, result.report()
    assert "STEP_RC=0" in result.stdout and result.tracebacks == 0, result.report()
    assert result.leftovers == [], result.report()
    assert_no_scheduler_file(job_dir)


def test_bad_contents_fail_every_reader_at_once(job_dir):
    script = scripts.write(job_dir, SLOW_SCHEDULER, "SLURMRunner")
    bad = '{"type": "Scheduler", "address": 123, "dask_runners": {"stamp": {stamp}}}'
    # The scheduler rank then waits for a client for the discovery deadline (3 s here), and not
    # for the ranks that failed before joining: the default 30 s shutdown deadline stays.
    env = {"DASK_RUNNERS__TIMEOUTS__DISCOVERY": "3"}
    result = plant_then_run(job_dir, bad, script, env=env)
    assert result.seconds < 8, result.report()
    assert "PLANTED" in result.stdout and "STEP_RC=1" in result.stdout, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), EXIT_1), result.report()
    # every reader, at once (not a DiscoveryTimeoutError at the deadline), naming the file and the fault
    message = (
        f"SchedulerFileError: the scheduler file of this run holds bad contents: {job_dir}/"
        r"scheduler-\d+\.0\.json: the address is 123, not a string"
    )
    assert len(re.findall(message, result.stderr)) == 3, result.report()
    assert "DiscoveryTimeoutError" not in result.stderr, result.report()
    assert result.leftovers == [], result.report()


CLIENT_FAILS_FIRST = scripts.HEADER + """
if os.environ["SLURM_PROCID"] == "1":
    sys.exit(3)  # the client rank fails before it makes its runner
with {runner}() as runner:
    with Client(runner) as client:
        print("SHOULD NOT GET HERE", flush=True)
"""


def test_a_client_rank_that_never_joins_ends_the_job_at_the_discovery_deadline(job_dir):
    script = scripts.write(job_dir, CLIENT_FAILS_FIRST, "SLURMRunner")
    result = srun(script, job_dir, env={"DASK_RUNNERS__TIMEOUTS__DISCOVERY": "3"}, when="STARTED", send=[NOTHING])
    assert result.returncode == 3, result.report()
    assert task_ends(result.stderr) == {0: EXIT_1, 1: "Exited with exit code 3", 2: EXIT_1, 3: EXIT_1}
    assert "scheduler rank: no client rank joined within 3 s (runners.timeouts.discovery)" in result.stderr
    # the 3 s deadline plus the scheduler's start: 3.26-3.33 s in 3 runs (2026-12-02)
    assert timing("client never joins: from the start", result.after_signal) < 5, result.report()
    assert result.leftovers == [], result.report()
    assert_no_scheduler_file(job_dir)


def test_stuck_scheduler_rank_makes_every_rank_fail_at_the_deadline(job_dir):
    script = scripts.write(job_dir, scripts.SCHEDULER_STUCK, "Stuck")
    script.write_text(script.read_text().replace("class Stuck(Stuck)", "class Stuck(SLURMRunner)").replace(
        "import Stuck,", "import SLURMRunner,"))
    result = srun(script, job_dir, env={"DASK_RUNNERS__TIMEOUTS__DISCOVERY": "3"}, when="STARTED", send=[NOTHING])
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), EXIT_1), result.report()
    assert "SHOULD NOT GET HERE" not in result.stdout
    assert "timed out after 3 s starting the scheduler" in result.stderr, result.report()
    # Each waiting rank fails at its own deadline, or at once when the
    # scheduler rank's failure lands in the file first (a reader on the
    # same node is woken by it): either way it names a 3 s deadline.
    waiting_failures = result.stderr.count("timed out after 3 s waiting for the scheduler file") + result.stderr.count(
        "SchedulerStartError: the scheduler rank could not start: DiscoveryTimeoutError"
    )
    assert waiting_failures == 3, result.report()
    # the 3 s deadline, from the ranks' start: 3.31-3.70 s in 3 runs (2026-12-02)
    assert timing("stuck scheduler: from the start", result.after_signal) < 5, result.report()
    assert result.leftovers == [], result.report()


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
    ends = dict.fromkeys(range(4), f"Exited with exit code {exit_code}")
    if exit_code == 130:
        # The client rank's uncaught KeyboardInterrupt: Python ends by SIGINT itself ("Interrupt").
        # When the scheduler rank's SIGINT stops the cluster first, the client code is interrupted
        # by that stop and exits with 130 (2 runs of about 10 in CI, 2026-12-02): 130 either way.
        client_end = task_ends(result.stderr).get(1)
        assert client_end in ("Interrupt", "Exited with exit code 130"), result.report()
        ends[1] = client_end
    assert task_ends(result.stderr) == ends, result.report()
    assert "BODY LEFT" in result.stdout, result.report()
    # "within seconds, well inside KillWait (30 s)": 0.12-0.37 s from the READY line to srun's
    # return in 12 runs (2026-12-02), scancel's own round trip included
    assert timing(f"signal {exit_code}: srun returned", result.after_signal) < 1, result.report()
    assert result.leftovers == [], result.report()
    assert_no_scheduler_file(job_dir)


def test_preemption_callback_lets_the_job_carry_on(job_dir):
    script = scripts.write(job_dir, scripts.PREEMPTION_CALLBACK, "SLURMRunner")
    result = srun(script, job_dir, when="READY", send=[signal.SIGUSR2])
    assert "CHECKPOINTED ['preempted']" in result.stdout, result.report()
    result.assert_clean_success()


def test_ctrl_c_twice_at_srun_ends_the_step_at_once(job_dir):
    """The second Ctrl-C, 0.2 s after the first, ends the step at once, whichever end comes first.

    srun forwards the first Ctrl-C and every rank starts to close. The second makes srun kill the
    step, with srun's own status 137. When the ranks have closed before srun's kill reaches them
    (1 run of about 40 in CI, 2026-12-05), srun reports their own 130 instead.
    """
    script = scripts.write(job_dir, scripts.WAITS_FOR_SIGNAL, "SLURMRunner")
    result = srun(script, job_dir, when="READY", send=[signal.SIGINT, signal.SIGINT])
    assert result.returncode in (130, 137), result.report()
    if result.returncode == 130:
        # every task that srun reports ended by the first Ctrl-C, as the runner closes on SIGINT
        assert set(task_ends(result.stderr).values()) <= {"Exited with exit code 130", "Interrupt"}, result.report()
    assert "received SIGINT" in result.stderr, result.report()
    # the second Ctrl-C is sent 0.2 s after the first: 0.37-0.38 s in 2 runs (2026-12-02)
    assert timing("ctrl-c twice: srun returned", result.after_signal) < 1.5, result.report()
    assert result.leftovers == [], result.report()


def test_scancel_while_the_ranks_are_still_starting_ends_them_all(job_dir):
    script = scripts.write(job_dir, scripts.SCHEDULER_STUCK, "SLURMRunner")
    script.write_text(script.read_text().replace("class Stuck(Stuck)", "class Stuck(SLURMRunner)").replace(
        "import Stuck,", "import SLURMRunner,"))
    cancel = scancel()
    result = srun(script, job_dir, when="STARTING", send=[lambda line: time.sleep(2) or cancel(line)])
    assert result.returncode == 143, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), "Exited with exit code 143"), result.report()
    assert result.stderr.count("received SIGTERM") == 4, result.report()
    # 2 s of waiting before the scancel, then 0.12-0.16 s in 5 runs (2026-12-02)
    assert timing("scancel while starting: srun returned", result.after_signal - 2) < 1, result.report()
    assert result.leftovers == [], result.report()


def test_scheduler_that_cannot_start_fails_every_rank_at_once(job_dir):
    script = scripts.write(job_dir, scripts.STANDARD, "SLURMRunner", 'scheduler_options={"no_such_option": 1}')
    result = srun(script, job_dir, when="STARTED", send=[NOTHING])
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), EXIT_1), result.report()
    assert result.stderr.count("the scheduler rank could not start: TypeError") == 3, result.report()
    # "at once" (not a deadline): the scheduler's start and its failure, 0.41-0.72 s in 3 runs,
    # 2.9 s once with the machine loaded (2026-12-02)
    assert timing("scheduler cannot start: from the start", result.after_signal) < 4, result.report()
    assert result.leftovers == [], result.report()


def test_a_taken_scheduler_port_fails_every_rank_at_once_with_the_port_and_the_fix(job_dir, taken_port):
    port = taken_port
    script = scripts.write(job_dir, scripts.STANDARD, "SLURMRunner", f"scheduler_options={{'port': {port}}}")
    result = srun(script, job_dir, env={"DASK_RUNNERS__TIMEOUTS__DISCOVERY": "120"})
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), EXIT_1), result.report()
    said = f"the scheduler cannot listen on port {port} (Address already in use); another process on "
    assert result.stderr.count(said) == 4, result.report()  # the scheduler rank, and the three it told
    assert result.tracebacks == 2, result.report()  # the scheduler rank's: the OSError, and the error from it
    told = [line for line in result.stderr.splitlines() if line.startswith(("rank 1: ", "rank 2: ", "rank 3: "))]
    assert len(told) == 3 and all(said in line for line in told), result.report()
    assert "choose a free port in scheduler_options" in result.stderr
    assert result.seconds < 30, result.report()  # far inside the 120 s the waiting ranks would give it
    assert result.leftovers == [], result.report()
