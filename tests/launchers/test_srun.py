"""SLURMRunner under a real srun."""

import json
import os

import pytest

from ..launch import (
    PYTHON, launch, need, rank_log, rank_logs_env, slurm_is_up, standard_script, task_ends, timing, write_script,
)

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def srun(n, script, cwd, *extra):
    return launch(["srun", *extra, "-n", str(n), PYTHON, script], cwd)


@pytest.mark.parametrize("n", [3, 4, 16])
def test_standard_workload_runs_clean(job_dir, n):
    result = srun(n, standard_script(job_dir, "SLURMRunner"), job_dir)
    result.assert_clean_success()
    assert f"RESULT workers {n - 2}" in result.stdout
    assert result.stdout.count("AFTER rank") == 1  # only the client continues past the block
    assert list(job_dir.glob("scheduler-*.json")) == []


def test_nanny_workers_run_clean(job_dir):
    script = standard_script(job_dir, "SLURMRunner", options='worker_class="distributed.Nanny"')
    result = srun(4, script, job_dir)
    result.assert_clean_success()
    assert "RESULT workers 2" in result.stdout


SLOW_WORKER_START = """\
import os
import pathlib
import time

def dask_setup(worker):
    pathlib.Path({job_dir!r}, f"starting-{{os.getpid()}}").touch()
    time.sleep(60)
"""

ENDS_WHILE_THE_WORKERS_START = """\
import pathlib
import time
from dask.distributed import Client
from dask_runners import SLURMRunner

with SLURMRunner(worker_class="distributed.Nanny") as runner:
    with Client(runner):
        deadline = time.monotonic() + 60
        while len(list(pathlib.Path(__file__).parent.glob("starting-*"))) < 2:
            assert time.monotonic() < deadline, "the worker processes did not start"
            time.sleep(0.05)
"""


def test_a_job_that_ends_while_its_nannies_start_them_ends_clean_and_quickly(job_dir):
    # Each nanny's worker process takes a minute to start (a preload sleeps), and the
    # client code ends once both are in it; cancelled there, a nanny could not close.
    preload = write_script(job_dir, SLOW_WORKER_START.format(job_dir=str(job_dir)), name="slow_start.py")
    env = {**rank_logs_env(job_dir), "DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(preload)])}
    script = write_script(job_dir, ENDS_WHILE_THE_WORKERS_START)
    result = launch(["srun", "-n", "4", PYTHON, str(script)], job_dir, env=env)
    result.assert_clean_success()
    assert timing("nanny start ended", result.seconds) < 15, result.report()
    for rank in (2, 3):
        assert "the job stopped while the nanny started" in rank_log(job_dir, rank), result.report()


def test_failing_body_prints_one_traceback_and_fails_the_step_quickly(job_dir):
    script = standard_script(
        job_dir, "SLURMRunner", extra='print("RAISING", flush=True); raise ValueError("boom in the body")'
    )
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir, when="RAISING", send=[lambda line: None])
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == dict.fromkeys(range(4), "Exited with exit code 1"), result.report()
    assert result.tracebacks == 1, result.report()  # once, from the client rank
    assert "ValueError: boom in the body" in result.stderr
    # "every other rank leaves within a second": 0.16-0.24 s from the raise to srun's return in 5 runs
    # (2026-12-02)
    assert timing("failing body: srun returned", result.after_signal) < 1.0, result.report()
    assert result.leftovers == [], result.report()
    assert list(job_dir.glob("scheduler-*.json")) == []


def test_too_small_a_step_fails_on_every_rank_with_the_fix(job_dir):
    result = srun(2, standard_script(job_dir, "SLURMRunner"), job_dir)
    assert result.returncode == 1, result.report()
    assert task_ends(result.stderr) == {0: "Exited with exit code 1", 1: "Exited with exit code 1"}
    assert result.stderr.count("WorldTooSmallError: SLURM_NTASKS=2 but at least 3") == 2
    assert "srun -n 3" in result.stderr
    # the traceback once, from the scheduler rank; the other rank says it in one line
    assert result.tracebacks == 1, result.report()
    said = "rank 1: dask_runners.exceptions.WorldTooSmallError: SLURM_NTASKS=2 but"
    assert [line.startswith(said) for line in result.stderr.splitlines()].count(True) == 1, result.report()
    assert result.seconds < 15


def test_stale_scheduler_file_from_another_job_is_ignored(job_dir):
    stale = {
        "type": "Scheduler",
        "address": "tcp://127.0.0.1:9",  # nothing listens there
        "dask_runners": {"stamp": {"job_id": "1", "step_id": "0", "restart_count": 0}},
    }
    (job_dir / "scheduler.json").write_text(json.dumps(stale))
    script = standard_script(job_dir, "SLURMRunner", options='scheduler_file="scheduler.json"')
    result = srun(4, script, job_dir)
    result.assert_clean_success()
    assert not (job_dir / "scheduler.json").exists()


def test_outside_srun_the_error_says_how_to_launch(job_dir):
    script = write_script(job_dir, "from dask_runners import SLURMRunner\nSLURMRunner()\n")
    no_slurm = {name: None for name in os.environ if name.startswith("SLURM_")}
    result = launch([PYTHON, script], job_dir, env=no_slurm)
    assert result.returncode == 1
    assert "srun -n 4 python script.py" in result.stderr


def test_runner_detects_srun_and_every_rank_has_its_job_context(job_dir):
    script = standard_script(
        job_dir, "Runner", extra='print("JOB", type(runner).__name__, runner.job.describe(), flush=True)'
    )
    result = srun(4, script, job_dir)
    result.assert_clean_success()
    assert "JOB SLURMRunner JobContext(slurm job=" in result.stdout
    assert "rank=1/4" in result.stdout
