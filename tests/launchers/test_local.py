"""Our own launcher: `dask-runner launch -n N script.py` on this machine."""

import os
import re
import signal

import pytest

from ..faults import scripts
from ..launch import PYTHON, launch, standard_script, write_script

pytestmark = [pytest.mark.timeout(120)]

LAUNCH = [PYTHON, "-m", "dask_runners", "launch"]


def test_the_same_script_runs_locally_with_runner(job_dir):
    script = standard_script(job_dir, "Runner", extra='print("JOB", type(runner).__name__, runner.job.describe(), flush=True)')
    result = launch([*LAUNCH, "-n", "4", script], job_dir)
    result.assert_clean_success()
    assert "RESULT workers 2" in result.stdout
    assert "JOB SchedulerFileRunner JobContext(local" in result.stdout
    assert result.stdout.count("AFTER rank") == 1
    assert list(job_dir.glob("scheduler*.json")) == []  # the run's file lived in a private directory


def test_arguments_and_sys_argv_reach_the_script(job_dir):
    script = write_script(job_dir, """\
import sys
from dask.distributed import Client
from dask_runners import Runner
with Runner() as runner:
    with Client(runner) as client:
        print("ARGV", sys.argv[1:], flush=True)
""")
    result = launch([*LAUNCH, "-n", "3", script, "--epochs", "3"], job_dir)
    result.assert_clean_success()
    assert "ARGV ['--epochs', '3']" in result.stdout


def test_no_variable_the_launcher_sets_lands_in_the_ranks_dask_config(job_dir):
    """dask takes every DASK_* variable into its config; ours start with RUNNERS_. The
    launcher still names itself over a ``runners.launcher`` the user set."""
    script = write_script(job_dir, """\
import os
import dask
import dask_runners
leaked = sorted(key for key in dask.config.config if key.startswith("runners_"))
line = f"RANK {os.environ['RUNNERS_RANK']} LEAKED {leaked} {dask_runners.current_job().launcher}\\n"
os.write(1, line.encode())  # one write: the ranks' lines must not interleave
""")
    # Variables of the old scheme in this environment (CI's, a developer's) would leak by themselves.
    old_scheme = {name: None for name in os.environ if re.match(r"DASK_RUNNERS_[A-Z]", name)}
    result = launch([*LAUNCH, "-n", "3", script], job_dir, env={**old_scheme, "DASK_RUNNERS__LAUNCHER": "slurm"})
    result.assert_clean_success()
    lines = sorted(line for line in result.stdout.splitlines() if line.startswith("RANK"))
    assert lines == [f"RANK {rank} LEAKED [] local" for rank in range(3)], result.report()


def test_a_failing_body_gives_the_launcher_its_status_quickly(job_dir):
    script = standard_script(job_dir, "Runner", extra='print("RAISING", flush=True); raise ValueError("boom in the body")')
    result = launch([*LAUNCH, "-n", "4", script], job_dir, when="RAISING", send=[lambda line: None])
    assert result.returncode == 1, result.report()
    assert result.tracebacks == 1, result.report()
    assert result.after_signal < 1.0, result.report()
    assert result.leftovers == []


def test_a_killed_client_rank_ends_every_rank(job_dir):
    script = scripts.write(job_dir, scripts.CLIENT_KILLED, "Runner")
    result = launch([*LAUNCH, "-n", "4", script], job_dir, when="KILLING", send=[lambda line: None])
    assert result.returncode == 128 + signal.SIGKILL, result.report()
    assert result.after_signal < 8, result.report()
    assert result.leftovers == []


def test_sigterm_to_the_launcher_reaches_every_rank(job_dir):
    script = scripts.write(job_dir, scripts.WAITS_FOR_SIGNAL, "Runner")
    result = launch([*LAUNCH, "-n", "4", script], job_dir, when="READY", send=[signal.SIGTERM])
    assert result.returncode == 143, result.report()
    assert "BODY LEFT" in result.stdout
    assert result.after_signal < 5, result.report()
    assert result.leftovers == []


def test_help_says_how(job_dir):
    result = launch([*LAUNCH, "--help"], job_dir)
    assert result.returncode == 0
    assert "dask-runner launch -n 4" in result.stdout
