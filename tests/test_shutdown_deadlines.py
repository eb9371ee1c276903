"""The shutdown deadline: a rank that does not leave, and a shutdown nobody confirms."""

import asyncio
import logging
import re

import pytest

from distributed import WorkerPlugin

from dask_runners import ClusterStoppedError, ShutdownTimeoutError
from dask_runners.control import ClusterControl
from dask_runners.inprocess import InProcessRunner, InProcessWorld, RankExited

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

LIGHT = {"scheduler_options": {"dashboard": False}, "worker_options": {"nthreads": 1}}


async def quick(runner):
    return "done"


def start_ranks(world, runner_class, timeouts):
    """Start every rank of ``world``; return (tasks by rank, runners by rank, client outcome)."""
    runners, outcome = {}, {}

    async def rank_main(rank):
        try:
            runner = runner_class(world, rank, **LIGHT, timeouts=timeouts)
            runners[rank] = runner
            async with runner:
                outcome["result"] = await quick(runner)
        except RankExited:
            pass
        except Exception as e:
            outcome["error"] = e

    tasks = {rank: asyncio.ensure_future(rank_main(rank)) for rank in range(world.size)}
    return tasks, runners, outcome


async def test_a_rank_that_does_not_leave_is_logged_and_the_scheduler_closes_anyway(caplog):
    class StuckWorker(InProcessRunner):
        async def on_worker_start(self, worker):
            if self.rank == 3:
                await asyncio.sleep(3600)  # joined (its worker registered), then never acts on the stop order

    world = InProcessWorld(4)
    with caplog.at_level(logging.WARNING, logger="dask_runners.control"):
        tasks, _, outcome = start_ranks(world, StuckWorker, {"shutdown": 1})
        await asyncio.wait_for(asyncio.gather(tasks[0], tasks[1], tasks[2]), 20)
    tasks[3].cancel()
    await asyncio.gather(tasks[3], return_exceptions=True)
    assert outcome == {"result": "done"}
    assert world.exit_codes[0] == 0 and world.exit_codes[2] == 0
    assert "rank(s) [3] did not leave within the 1 s shutdown deadline; closing anyway" in caplog.text


async def test_a_shutdown_the_scheduler_never_confirms_raises_shutdown_timeout(monkeypatch):
    monkeypatch.setattr(ClusterControl, "request_close", lambda self, exit_code, reason: None)
    world = InProcessWorld(3)
    tasks, runners, outcome = start_ranks(world, InProcessRunner, {"shutdown": 0.5})
    await asyncio.wait_for(tasks[1], 20)
    assert isinstance(outcome.get("error"), ShutdownTimeoutError), outcome
    assert "did not confirm the shutdown within 1 s" in str(outcome["error"])
    monkeypatch.undo()  # now let the scheduler close the cluster as usual
    runners[0]._service.control.request_close(0, "the test is over")
    await asyncio.wait_for(asyncio.gather(tasks[0], tasks[2]), 20)
    assert world.exit_codes == {0: 0, 2: 0}



def _failing_setup():
    raise RuntimeError("the model file is missing")


async def test_a_worker_that_cannot_start_raises_its_own_error_when_the_shutdown_is_never_confirmed(monkeypatch):
    """The worker rank asks for the shutdown and nobody confirms it within the
    deadline: the rank still raises its worker's start error, not another."""
    monkeypatch.setattr(ClusterControl, "request_close", lambda self, exit_code, reason: None)
    world = InProcessWorld(3)
    runners, errors = {}, {}

    async def rank_main(rank):
        try:
            runners[rank] = InProcessRunner(
                world, rank, **LIGHT, worker_setup=_failing_setup, timeouts={"shutdown": 0.5}
            )
            async with runners[rank]:
                await asyncio.sleep(3600)  # the client code waits; the test ends it
        except RankExited:
            pass
        except BaseException as e:
            errors[rank] = e

    tasks = {rank: asyncio.ensure_future(rank_main(rank)) for rank in range(3)}
    start = asyncio.get_running_loop().time()
    await asyncio.wait_for(tasks[2], 20)
    elapsed = asyncio.get_running_loop().time() - start
    chain, error = [], errors.get(2)
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any("the model file is missing" in str(e) for e in chain), errors
    assert not any(isinstance(e, NameError) for e in chain), chain
    assert elapsed < 5, elapsed  # the start, then the 0.5 s shutdown deadline
    monkeypatch.undo()
    runners[0]._service.control.request_close(1, "the test is over")
    await asyncio.wait_for(tasks[0], 20)
    assert world.exit_codes == {0: 1}
    tasks[1].cancel()  # an asynchronous runner cannot interrupt the client code
    await asyncio.gather(tasks[1], return_exceptions=True)


async def test_a_client_that_joins_a_stopping_cluster_is_told_so_and_the_loop_lives_on():
    """The stop reaches the late client as ClusterStoppedError, raised outside the event loop."""
    world = InProcessWorld(3)
    errors = {}

    async def rank_main(rank, delay=0.0):
        await asyncio.sleep(delay)
        try:
            async with InProcessRunner(world, rank, **LIGHT, worker_setup=_failing_setup):
                errors[rank] = "the client code ran"
        except RankExited:
            pass
        except BaseException as e:  # noqa: BLE001 - SystemExit subclasses are what is checked
            errors[rank] = e

    scheduler, worker = asyncio.ensure_future(rank_main(0)), asyncio.ensure_future(rank_main(2))
    await asyncio.wait_for(worker, 20)  # the worker failed, and asked for the shutdown
    await asyncio.wait_for(rank_main(1), 20)  # the client joins only now
    await asyncio.wait_for(scheduler, 20)
    assert isinstance(errors[1], ClusterStoppedError), errors
    assert errors[1].code == 1 and "could not start its worker" in errors[1].reason
    assert world.exit_codes == {0: 1}
    assert asyncio.get_running_loop().is_running()


class _SlowToCloseOnRank3(WorkerPlugin):
    """A plugin whose setup fails on every worker, and whose teardown takes
    two seconds on rank 3: the stop order reaches rank 3 while its failed
    start is still closing the worker."""

    async def setup(self, worker):
        raise RuntimeError("the model file is missing")

    async def teardown(self, worker):
        if worker.name == 3:
            await asyncio.sleep(2)


async def test_a_stop_order_that_meets_a_failing_start_lets_the_worker_close(caplog):
    """Cancelled mid-close, a worker never finishes closing: the rank then
    waited its whole shutdown deadline (as a 4-rank srun job did, now and then)."""
    world = InProcessWorld(4)
    ended = {}

    async def rank_main(rank):
        try:
            options = {"nthreads": 1, "plugins": [_SlowToCloseOnRank3()]}
            async with InProcessRunner(
                world, rank, scheduler_options={"dashboard": False}, worker_options=options, timeouts={"shutdown": 10}
            ):
                await asyncio.sleep(3600)  # the client code; the failed starts stop the job
        except RankExited:
            pass
        except BaseException:  # noqa: BLE001 - the worker ranks raise their start error
            pass
        ended[rank] = asyncio.get_running_loop().time()

    start = asyncio.get_running_loop().time()
    with caplog.at_level(logging.WARNING):
        tasks = [asyncio.ensure_future(rank_main(rank)) for rank in range(4)]
        await asyncio.wait_for(asyncio.gather(tasks[2], tasks[3]), 30)
        tasks[1].cancel()  # an asynchronous runner cannot interrupt the client code
        await asyncio.gather(tasks[1], return_exceptions=True)
        await asyncio.wait_for(tasks[0], 30)
    assert ended[3] - start < 6, ended[3] - start  # its two-second close, not the 10 s deadline
    assert "did not close within" not in caplog.text
    assert not re.search(r"rank\(s\) \[[\d, ]*3\] did not leave", caplog.text)
    assert world.exit_codes[0] == 1
