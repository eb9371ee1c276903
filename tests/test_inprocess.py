"""Roles and shutdown in worlds of runners sharing one event loop."""

import asyncio
import json

import pytest
from distributed import Client

from dask_runners import BaseRunner, Role, SchedulerLostError, WorkersTimeoutError
from dask_runners.inprocess import InProcessRunner, InProcessWorld, RankExited

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

LIGHT = {
    "scheduler_options": {"dashboard": False},
    "worker_options": {"nthreads": 1},
    "timeouts": {"shutdown": 5},
}


async def run_world(size, body, start_delays=None, runner_class=InProcessRunner, world=None, **kwargs):
    """Run every rank of a world; return (exit codes of service ranks, client outcome)."""
    world = world or InProcessWorld(size)
    outcome = {}
    start_delays = start_delays or {}

    async def rank_main(rank):
        await asyncio.sleep(start_delays.get(rank, 0))
        try:
            async with runner_class(world, rank, **{**LIGHT, **kwargs}) as runner:
                outcome["runner"] = runner
                outcome["result"] = await body(runner)
        except RankExited:
            pass
        except Exception as e:
            outcome["error"] = e

    await asyncio.wait_for(asyncio.gather(*(rank_main(r) for r in range(size))), 30)
    return world.exit_codes, outcome


async def one_task(runner):
    async with Client(runner, asynchronous=True) as client:
        await client.wait_for_workers(runner.n_workers)
        assert await client.submit(lambda x: x + 1, 10) == 11
        return len(await client.run(lambda: 1))


async def test_every_rank_takes_its_role_and_the_client_alone_runs_the_body():
    codes, outcome = await run_world(4, one_task)
    assert outcome["result"] == 2
    assert codes == {0: 0, 2: 0, 3: 0}
    runner = outcome["runner"]
    assert (runner.role, runner.rank, runner.n_workers) == (Role.client, 1, 2)
    assert runner.status.name == "closed"


async def test_a_failing_body_ends_every_rank_with_exit_code_1():
    async def failing(runner):
        async with Client(runner, asynchronous=True) as client:
            await client.wait_for_workers(runner.n_workers)
            raise ValueError("boom")

    codes, outcome = await run_world(4, failing)
    assert isinstance(outcome["error"], ValueError)
    assert codes == {0: 1, 2: 1, 3: 1}


async def test_a_worker_that_starts_after_the_body_finished_is_stopped_not_stranded():
    async def quick(runner):
        return "done"

    codes, outcome = await run_world(4, quick, start_delays={3: 1.0})
    assert outcome["result"] == "done"
    assert codes == {0: 0, 2: 0, 3: 0}


async def test_client_shutdown_inside_the_body_stops_the_cluster_cleanly():
    async def shutdown(runner):
        async with Client(runner, asynchronous=True) as client:
            await client.wait_for_workers(runner.n_workers)
            await client.shutdown()

    codes, outcome = await run_world(3, shutdown)
    assert "error" not in outcome
    assert codes == {0: 0, 2: 0}


async def test_vanished_client_rank_ends_the_job_with_exit_code_1():
    async def vanish(runner):
        await runner.wait_for_workers()
        runner._session.channel.link.abort()  # as if the process had been killed
        await asyncio.sleep(1)
        runner.status = runner.status.closed  # the dead process never shuts down

    world = InProcessWorld(4)
    codes, _ = await run_world(4, vanish, world=world)
    assert codes == {0: 1, 2: 1, 3: 1}
    # Every survivor knows the client rank is gone (MPIRunner then aborts
    # instead of waiting in MPI_Finalize for it).
    assert world.client_lost == {0, 2, 3}


async def test_no_rank_counts_the_client_lost_after_a_failing_body():
    async def failing(runner):
        raise ValueError("boom")

    world = InProcessWorld(4)
    codes, _ = await run_world(4, failing, world=world)
    assert codes == {0: 1, 2: 1, 3: 1}
    assert world.client_lost == set()


async def test_wait_for_workers_times_out_saying_how_many_arrived():
    async def wait_for_too_many(runner):
        with pytest.raises(WorkersTimeoutError, match=r"waiting for 5 workers: 2 arrived"):
            await runner.wait_for_workers(5, timeout=0.5)
        return "checked"

    codes, outcome = await run_world(4, wait_for_too_many)
    assert outcome["result"] == "checked"
    assert codes == {0: 0, 2: 0, 3: 0}


async def test_hooks_run_in_order_on_each_role():
    calls = []

    class Recording(InProcessRunner):
        async def before_scheduler_start(self):
            calls.append((self.rank, "before_scheduler_start"))

        async def on_scheduler_start(self, scheduler):
            calls.append((self.rank, "on_scheduler_start"))

        async def on_scheduler_close(self):
            calls.append((self.rank, "on_scheduler_close"))

        async def before_worker_start(self):
            calls.append((self.rank, "before_worker_start"))

        async def on_worker_start(self, worker):
            calls.append((self.rank, f"on_worker_start:{worker.name}"))

        async def get_worker_name(self):
            return f"w{self.rank}"

        async def before_client_start(self):
            calls.append((self.rank, "before_client_start"))

    await run_world(3, one_task, runner_class=Recording)
    assert [c for r, c in calls if r == 0] == [
        "before_scheduler_start",
        "on_scheduler_start",
        "on_scheduler_close",
    ]
    assert [c for r, c in calls if r == 2] == ["before_worker_start", "on_worker_start:w2"]
    assert [c for r, c in calls if r == 1] == ["before_client_start"]


async def test_a_subclass_needs_only_the_two_required_hooks(tmp_path, caplog):
    """The design's minimal runner: distributed writes the file, the hook reads it, on plain TCP, with a warning."""
    scheduler_file = tmp_path / "scheduler.json"

    class Minimal(BaseRunner):
        def __init__(self, world, rank, **kwargs):
            kwargs["asynchronous"] = True
            kwargs["scheduler_options"] = {"scheduler_file": str(scheduler_file), "dashboard": False}
            super().__init__(**kwargs)
            self.world = world
            self.rank, self.world_size = rank, world.size

        async def get_role(self):
            return self.role_for_rank(self.rank)

        async def get_scheduler_address(self):
            while not scheduler_file.exists():
                await asyncio.sleep(0.05)
            return json.loads(scheduler_file.read_text())["address"]

        def exit_process(self, exit_code):
            self.world.exit_codes[self.rank] = exit_code
            raise RankExited(self.rank, exit_code)

    codes, outcome = await run_world(3, one_task, runner_class=Minimal)
    assert outcome["result"] == 1
    assert codes == {0: 0, 2: 0}
    # the hook carries an address only, no credentials: the scheduler says so
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "TLS is off" in r.getMessage()]
    assert len(warnings) == 1 and "anyone who can reach tcp://" in warnings[0], warnings


async def test_base_runner_cannot_start_without_a_way_to_the_scheduler():
    """Neither a transport nor get_scheduler_address: a TypeError before anything starts."""
    runner = BaseRunner(asynchronous=True)
    with pytest.raises(TypeError, match="implement get_scheduler_address"):
        await runner
    assert runner.status.name == "created" and runner.role is None


async def test_heartbeats_keep_a_quiet_client_alive_past_the_lease():
    async def idle(runner):
        await asyncio.sleep(1.5)  # three leases without any other traffic
        return "alive"

    codes, outcome = await run_world(3, idle, timeouts={"lease": 0.5, "shutdown": 5})
    assert outcome["result"] == "alive"
    assert codes == {0: 0, 2: 0}


async def test_a_silent_client_counts_as_gone_after_the_lease():
    async def silent(runner):
        runner._session.channel._heartbeat.cancel()  # as if its node had vanished
        await asyncio.sleep(2)
        return runner._session.channel.stopped.exception()

    codes, outcome = await run_world(3, silent, timeouts={"lease": 0.5, "shutdown": 5})
    assert codes == {0: 1, 2: 1}


async def test_a_late_worker_rank_is_stopped_as_its_worker_registers():
    """The shutdown waits for the late rank; its worker's registration is its join, answered with the stop.

    Without the stop the late rank would serve for ever (the test's timeout).
    """
    async def quick(runner):
        return "done"

    codes, _ = await run_world(4, quick, start_delays={3: 1.0})
    assert codes == {0: 0, 2: 0, 3: 0}


async def test_a_client_rank_that_never_joins_ends_the_job_at_the_discovery_deadline():
    world = InProcessWorld(3)

    async def rank_main(rank):
        try:
            async with InProcessRunner(world, rank, **{**LIGHT, "timeouts": {"discovery": 1, "shutdown": 5}}):
                pass
        except RankExited:
            pass

    await asyncio.wait_for(asyncio.gather(rank_main(0), rank_main(2)), 20)
    assert world.exit_codes == {0: 1, 2: 1}


async def test_the_job_runs_on_its_own_tls_credentials_by_default():
    async def address(runner):
        return runner.scheduler_address, runner.credentials is not None

    _, outcome = await run_world(3, address)
    assert outcome["result"][0].startswith("tls://")
    assert outcome["result"][1]


async def test_a_users_own_security_is_used_as_it_is():
    from distributed import Security

    security = Security.temporary()

    async def check(runner):
        async with Client(runner, asynchronous=True) as client:
            await client.wait_for_workers(runner.n_workers)
            return runner.scheduler_address, runner.security is security, runner.credentials

    _, outcome = await run_world(3, check, security=security)
    address, same, credentials = outcome["result"]
    assert address.startswith("tls://") and same and credentials is None


async def test_security_false_runs_plain_tcp():
    async def address(runner):
        return runner.scheduler_address

    _, outcome = await run_world(3, address, security=False)
    assert outcome["result"].startswith("tcp://")


@pytest.fixture
def channels(monkeypatch):
    """Every rank's control channel, by rank, as the ranks open them."""
    from dask_runners.channel import ControlChannel

    opened = {}
    original_open = ControlChannel.open.__func__
    original_through_worker = ControlChannel.through_worker.__func__

    async def recording_open(cls, address, rank, *args, **kwargs):
        opened[rank] = channel = await original_open(cls, address, rank, *args, **kwargs)
        return channel

    def recording_through_worker(cls, address, rank, *args, **kwargs):
        opened[rank] = channel = original_through_worker(cls, address, rank, *args, **kwargs)
        return channel

    monkeypatch.setattr(ControlChannel, "open", classmethod(recording_open))
    monkeypatch.setattr(ControlChannel, "through_worker", classmethod(recording_through_worker))
    return opened


async def test_a_silent_worker_rank_is_dropped_from_the_cluster_at_the_lease(channels, caplog):
    async def body(runner):
        async with Client(runner, asynchronous=True) as client:
            await client.wait_for_workers(2)
            channels[3]._heartbeat.cancel()  # as if rank 3's node were cut off
            started = asyncio.get_running_loop().time()
            names = lambda dask_scheduler: [ws.name for ws in dask_scheduler.workers.values()]  # noqa: E731
            assert 3 in await client.run_on_scheduler(names)
            while 3 in await client.run_on_scheduler(names):
                await asyncio.sleep(0.05)
            dropped_after = asyncio.get_running_loop().time() - started
            assert await client.submit(lambda x: x + 1, 1) == 2  # the other worker carries on
            return dropped_after

    codes, outcome = await run_world(4, body, timeouts={"lease": 0.5, "shutdown": 5})
    assert 0.4 < outcome["result"] < 1.5, outcome
    assert "worker rank 3 sent no heartbeat for 0 s (runners.timeouts.lease)" in caplog.text
    assert codes[0] == 0 and codes[2] == 0
    assert codes[3] == 1  # it lost the scheduler, as a rank cut off does


async def test_a_silent_scheduler_is_lost_to_the_client_within_the_lease(monkeypatch):
    from dask_runners.control import ClusterControl

    async def no_beats(self, member):
        await member.left.wait()  # the scheduler says nothing, as if its node were cut off

    monkeypatch.setattr(ClusterControl, "_beat", no_beats)

    async def body(runner):
        started = asyncio.get_running_loop().time()
        with pytest.raises(SchedulerLostError, match="no word from the scheduler .* for 0 s"):
            await runner._session.channel.stopped
        return asyncio.get_running_loop().time() - started

    codes, outcome = await run_world(3, body, timeouts={"lease": 0.5, "shutdown": 5})
    assert 0.3 < outcome["result"] < 1.5, outcome
    assert codes == {0: 1, 2: 1}
