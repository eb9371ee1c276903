"""A failed start that nothing catches: its traceback on the scheduler rank, one line on every other.

Each case runs a script in a Python process of its own, as one rank of a step
described by its Slurm variables, since what is tested is what that process
prints when it ends. The same under real ``srun`` and ``mpirun``, and at 64
ranks over four nodes, is in ``tests/launchers`` and ``tests/multinode``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

STEP_OF_TWO = {
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_ID": "3",
    "SLURM_NTASKS": "2",
    "SLURM_STEP_NUM_TASKS": "2",
    "SLURM_NODELIST": "vm",
}
TOO_SMALL = "dask_runners.exceptions.WorldTooSmallError: SLURM_NTASKS=2 but at least 3 are needed"


def run_as_rank(rank: int, script: str, tmp_path, n_tasks: int = 2) -> subprocess.CompletedProcess:
    environ = {**STEP_OF_TWO, "SLURM_NTASKS": str(n_tasks), "SLURM_STEP_NUM_TASKS": str(n_tasks),
               "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}
    path = tmp_path / "job.py"
    path.write_text(f"ENVIRON = {environ!r}\n" + textwrap.dedent(script))
    return subprocess.run([sys.executable, path], cwd=tmp_path, capture_output=True, text=True, timeout=60)


ENTERED = """\
from dask_runners import SLURMRunner
with SLURMRunner(environ=ENVIRON, scheduler_file="scheduler.json"):
    print("BODY")
"""


def test_another_rank_prints_one_line_with_its_rank_the_error_and_the_fix(tmp_path):
    ended = run_as_rank(1, ENTERED, tmp_path)
    assert ended.returncode == 1, ended.stderr
    lines = ended.stderr.splitlines()
    assert len(lines) == 1, ended.stderr
    assert lines[0].startswith(f"rank 1: {TOO_SMALL}"), ended.stderr
    assert "try `srun -n 3" in lines[0], ended.stderr
    assert ended.stdout == ""


def test_the_scheduler_rank_prints_the_traceback(tmp_path):
    ended = run_as_rank(0, ENTERED, tmp_path)
    assert ended.returncode == 1, ended.stderr
    assert ended.stderr.startswith("Traceback (most recent call last):"), ended.stderr
    assert 'with SLURMRunner(environ=ENVIRON, scheduler_file="scheduler.json"):' in ended.stderr
    assert ended.stderr.splitlines()[-1].startswith(TOO_SMALL), ended.stderr


def test_a_job_too_small_for_its_scheduler_rank_has_the_traceback_on_rank_0(tmp_path):
    script = ENTERED.replace('scheduler_file="scheduler.json"', 'scheduler_file="scheduler.json", scheduler_rank=5')
    first, second = (run_as_rank(rank, script, tmp_path) for rank in (0, 1))
    assert (first.returncode, second.returncode) == (1, 1)
    assert first.stderr.count("Traceback") == 1, first.stderr
    assert second.stderr.startswith("rank 1: dask_runners.exceptions.WorldTooSmallError: SLURM_NTASKS=2 but at least 6")
    assert "Traceback" not in second.stderr


#: The start's error caught by the script, which then does ``HANDLE``.
CATCHES = """\
from dask_runners import SLURMRunner, WorldTooSmallException
try:
    with SLURMRunner(environ=ENVIRON, scheduler_file="scheduler.json"):
        pass
except WorldTooSmallException as e:
    HANDLE
"""


def test_a_caught_error_prints_nothing(tmp_path):
    script = CATCHES.replace("HANDLE", 'print("CAUGHT", type(e).__name__)')
    ended = run_as_rank(1, script, tmp_path)
    assert (ended.returncode, ended.stdout, ended.stderr) == (0, "CAUGHT WorldTooSmallError\n", "")


def test_an_error_the_script_raises_from_it_keeps_its_traceback(tmp_path):
    """Only the start's own error is shortened: one the script raises from it is the script's."""
    script = CATCHES.replace("HANDLE", 'raise RuntimeError("the script\'s own") from e')
    ended = run_as_rank(1, script, tmp_path)
    assert ended.returncode == 1
    assert ended.stderr.count("Traceback") == 2, ended.stderr  # the start's error, as the cause, and the script's
    assert ended.stderr.splitlines()[-1] == "RuntimeError: the script's own", ended.stderr


#: A start that fails in ``get_role``, after the checks, with ``ERROR``; synchronous and asynchronous.
FAILS_IN_THE_START = {
    "with": """\
        from dask_runners import SLURMRunner, SchedulerStartError
        class Failing(SLURMRunner):
            async def get_role(self):
                raise ERROR
        with Failing(environ=ENVIRON, scheduler_file="scheduler.json"):
            pass
        """,
    "async with": """\
        import asyncio
        from dask_runners import SLURMRunner, SchedulerStartError
        class Failing(SLURMRunner):
            async def get_role(self):
                raise ERROR
        async def main():
            async with Failing(environ=ENVIRON, scheduler_file="scheduler.json", asynchronous=True):
                pass
        asyncio.run(main())
        """,
}


def test_a_runner_error_in_the_start_is_one_line_on_another_rank(tmp_path):
    script = FAILS_IN_THE_START["with"].replace("ERROR", 'SchedulerStartError("scheduler rank 0: it said no")')
    ended = run_as_rank(2, script, tmp_path, n_tasks=4)
    assert ended.returncode == 1, ended.stderr
    assert ended.stderr == "rank 2: dask_runners.exceptions.SchedulerStartError: scheduler rank 0: it said no\n"


def test_an_asynchronous_runner_leaves_the_printing_to_its_process(tmp_path):
    """Its process may hold other code, or other ranks (the in-process worlds): Python prints as usual."""
    script = FAILS_IN_THE_START["async with"].replace("ERROR", 'SchedulerStartError("scheduler rank 0: it said no")')
    ended = run_as_rank(2, script, tmp_path, n_tasks=4)
    assert ended.returncode == 1, ended.stderr
    assert ended.stderr.startswith("Traceback (most recent call last):"), ended.stderr
    assert ended.stderr.splitlines()[-1] == (
        "dask_runners.exceptions.SchedulerStartError: scheduler rank 0: it said no"
    ), ended.stderr


def test_the_traceback_follows_the_scheduler_rank(tmp_path):
    script = ENTERED.replace('scheduler_file="scheduler.json"', 'scheduler_file="scheduler.json", scheduler_rank=1')
    first, second = (run_as_rank(rank, script, tmp_path) for rank in (0, 1))
    assert (first.returncode, second.returncode) == (1, 1)
    assert first.stderr.startswith(f"rank 0: {TOO_SMALL}"), first.stderr
    assert len(first.stderr.splitlines()) == 1, first.stderr
    assert second.stderr.startswith("Traceback (most recent call last):"), second.stderr


def test_a_rank_that_does_not_know_its_rank_prints_the_traceback(tmp_path):
    """A runner of the seed's hooks alone may not know its rank: it cannot tell it is not the scheduler's."""
    script = """    from dask_runners import BaseRunner, WorldTooSmallError
    class NoRank(BaseRunner):
        world_size = 2
        async def get_scheduler_address(self):
            return "tcp://127.0.0.1:1"
        def _check_can_start(self):
            raise WorldTooSmallError("two ranks are too few")
    with NoRank():
        pass
    """
    ended = run_as_rank(1, script, tmp_path)
    assert ended.returncode == 1, ended.stderr
    assert ended.stderr.startswith("Traceback (most recent call last):"), ended.stderr
    assert ended.stderr.splitlines()[-1] == "dask_runners.exceptions.WorldTooSmallError: two ranks are too few"


@pytest.mark.parametrize("entry", sorted(FAILS_IN_THE_START))
def test_any_other_error_in_the_start_keeps_its_traceback_on_every_rank(tmp_path, entry):
    """An error of the user's own hook may differ from rank to rank: each rank shows where it came from."""
    script = FAILS_IN_THE_START[entry].replace("ERROR", 'ValueError("my hook failed")')
    ended = run_as_rank(2, script, tmp_path, n_tasks=4)
    assert ended.returncode == 1, ended.stderr
    assert ended.stderr.startswith("Traceback (most recent call last):"), ended.stderr
    assert "raise ValueError" in ended.stderr
    assert ended.stderr.splitlines()[-1] == "ValueError: my hook failed", ended.stderr
