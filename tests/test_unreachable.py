"""When a rank gives up on an unreachable one, it cancels its Slurm job as it exits: the rules.

The cancel itself, and what Slurm does with it, is proven on the 4-node Slurm
(``tests/multinode/test_network_faults.py``).
"""

import dask.config
import pytest

from dask_runners import ConfigurationError, unreachable


@pytest.fixture(autouse=True)
def nothing_pending():
    unreachable._pending.clear()
    yield
    unreachable._pending.clear()


def test_a_cancel_is_arranged_once_inside_a_slurm_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    assert unreachable.cancel_job_at_exit("rank 3 could not be reached")
    assert not unreachable.cancel_job_at_exit("rank 5 could not be reached")
    assert unreachable._pending == [("1234", "rank 3 could not be reached", 0.0)]


def test_outside_a_slurm_job_nothing_is_cancelled(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert not unreachable.cancel_job_at_exit("rank 3 could not be reached")
    assert unreachable._pending == []


def test_runners_unreachable_wait_keeps_the_job(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "1234")
    with dask.config.set({"runners.unreachable": "wait"}):
        assert not unreachable.cancel_job_at_exit("rank 3 could not be reached")


def test_a_bad_policy_names_the_key_the_choices_and_the_variable(monkeypatch):
    monkeypatch.setenv("DASK_RUNNERS__UNREACHABLE", "kill")
    dask.config.refresh()
    try:
        with pytest.raises(ConfigurationError, match=r"runners.unreachable is 'kill'; use one of cancel-job, wait"):
            unreachable.policy()
    finally:
        monkeypatch.delenv("DASK_RUNNERS__UNREACHABLE")
        dask.config.refresh()
