"""The scheduler side of the control channel, against a stand-in scheduler."""

import asyncio
from types import SimpleNamespace

import pytest

from dask_runners.control import ClusterControl


class Worker:
    """What ``wait_for_workers`` reads of a scheduler's WorkerState."""

    def __init__(self, name):
        self.name = name

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


async def test_wait_for_workers_answers_when_the_last_worker_turns_running():
    scheduler = SimpleNamespace(running=set())
    control = ClusterControl(scheduler, expected_members=None, shutdown_timeout=5, lease=60)
    waiting = asyncio.ensure_future(control.wait_for_workers(1, timeout=30))
    # A worker registers while it is still starting: not running yet.
    control.add_worker(scheduler, "tls://10.0.0.2:4000")
    await asyncio.sleep(0.05)
    assert not waiting.done()
    # Its status change arrives; the scheduler logs it as an event.
    scheduler.running.add(Worker("w1"))
    control.log_event("tls://10.0.0.2:4000", {"action": "worker-status-change", "status": "running"})
    assert control._worker_arrived.is_set()  # wakes the waiter now, not at a poll
    # Well before the one-second safety look.
    assert await asyncio.wait_for(waiting, 0.5) == ["w1"]


async def test_wait_for_workers_gives_up_at_the_deadline_with_those_running():
    scheduler = SimpleNamespace(running={Worker("w1")})
    control = ClusterControl(scheduler, expected_members=None, shutdown_timeout=5, lease=60)
    assert await control.wait_for_workers(2, timeout=0.2) == ["w1"]
