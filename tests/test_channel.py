"""A worker rank's control channel on its worker's stream, once the stream has ended."""

import asyncio
import socket

import pytest

from dask_runners.channel import ControlChannel, nothing_listens
from dask_runners.exceptions import SchedulerLostError

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]


def address_nothing_listens_at() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


async def test_a_stream_the_worker_closed_after_its_scheduler_vanished_is_no_sign_the_scheduler_answers():
    """distributed's worker can close on a broken scheduler connection before the stream shows it
    broken; the rank must then find the scheduler gone (exit 1), not take it for a worker that
    closed by itself (exit 0)."""
    channel = ControlChannel.through_worker(address_nothing_listens_at(), 2, {}, lease=8.0)
    channel.joined.set_result(None)
    channel.link.end(broken=False)  # this end closed it, as the worker's teardown does
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await channel.scheduler_answers() is False
    # the same end as when the channel notices first: the rank logs one message, whichever saw it
    lost = channel.stopped.exception()
    assert isinstance(lost, SchedulerLostError) and str(lost) == (
        f"lost the connection to the scheduler at {channel.address} without being told to stop: "
        "the scheduler rank exited or was killed"
    )
    # a refused connection ends the question after its first try of 50 ms: 0.050 s here (2026-12-03),
    # far below the quarter lease (2 s)
    assert loop.time() - started < 1.0
    await channel.close()


async def test_a_stream_the_scheduler_broke_before_its_first_word_is_no_sign_the_scheduler_answers():
    """A worker that had only just registered when its scheduler was killed: the stream broke
    before any control message came (the channel had not joined). The rank must find the
    scheduler gone (exit 1), not take it for a worker that closed by itself (exit 0)."""
    channel = ControlChannel.through_worker(address_nothing_listens_at(), 3, {}, lease=8.0)
    channel.link.end(broken=True)  # the scheduler's end closed it, and nothing had come on it
    assert await channel.scheduler_answers() is False
    lost = channel.stopped.exception()
    assert isinstance(lost, SchedulerLostError) and "the scheduler rank exited or was killed" in str(lost)
    await channel.close()


async def test_a_direct_attempt_tells_a_refused_address_from_a_listening_one():
    """``nothing_listens`` is what a try of ``_ask_standing`` falls back on when distributed's
    ``connect`` reports a timeout: its last attempt cut short, on a loaded node."""
    from distributed import Scheduler

    assert await nothing_listens(address_nothing_listens_at(), {}, 1.0) is True
    async with Scheduler(host="127.0.0.1", dashboard=False) as scheduler:
        assert await nothing_listens(scheduler.address, {}, 5.0) is False
