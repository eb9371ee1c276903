"""The runner's own control channel between the scheduler and the other ranks.

Every rank other than the scheduler keeps one connection open to the
scheduler for as long as it serves. Over it:

* the rank says who it is when it joins (``rank``, ``role``);
* the client rank asks for the cluster to shut down, with an exit code;
* the scheduler tells each rank to stop, with the exit code to leave with.

Because the connection stays open, each side learns at once when the other
process goes away: the kernel closes the socket of a process that dies for any
reason. The scheduler can then end the job instead of waiting for an idle
timeout, and a worker rank whose scheduler vanished leaves with a non-zero
status instead of retrying.

The shutdown sequence, run by :meth:`ClusterControl.drain` from the
scheduler's ``before_close`` plugin hook whatever the reason for closing:

0. after the client code ended normally, the workers stop taking tasks and
   finish the transfers in flight (:meth:`ClusterControl.quiet_workers`);
1. the scheduler lets the messages it has queued for workers go out, then
   tells every worker rank to stop; each closes its own worker or nanny
   (for a nanny this is the only path on which the worker process exits
   cleanly);
2. the client rank is told right after the workers, so that its process
   ends while theirs do;
3. the scheduler waits until every expected rank has joined and left, or the
   shutdown deadline (a rank that joins late is told to stop at once, so
   that no rank is left waiting for a scheduler that is gone);
4. the scheduler closes: no worker ever sees its scheduler vanish.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time

from distributed.comm import connect
from distributed.comm.core import CommClosedError
from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin

from .config import backoff_delays
from .exceptions import SchedulerLostError, ShutdownTimeoutError
from .unreachable import cancel_job_at_exit

logger = logging.getLogger(__name__)

HANDLER = "dask_runners_control"
WAIT_FOR_WORKERS = "dask_runners_wait_for_workers"


@dataclasses.dataclass(frozen=True)
class StopOrder:
    """What the scheduler told a rank when the cluster stopped."""

    exit_code: int
    reason: str
    #: The client rank's process died: the other ranks cannot all meet
    #: again, as ``MPI_Finalize`` needs them to.
    client_lost: bool = False


@dataclasses.dataclass
class _Member:
    rank: int | str
    role: str
    comm: object
    #: The name of the rank's Dask worker, if it runs one.
    worker: str | int | None = None
    left: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    #: The longest time the rank said nothing, in seconds (to choose a lease from).
    longest_silence: float = 0.0


class ClusterControl(SchedulerPlugin):
    """Scheduler-side bookkeeping of the job's ranks.

    Parameters
    ----------
    scheduler : distributed.Scheduler
        The running scheduler; the control handler is added to it.
    expected_members : int or None
        How many ranks besides the scheduler belong to the job, if known.
    shutdown_timeout : float
        How long :meth:`drain` waits for ranks to leave.
    lease : float
        How long a rank may stay silent (no heartbeat) before it counts as gone.
    expected_workers : int or None
        How many workers the job has, if known: once they all run, the
        client rank is told that the cluster is ready (:func:`ready_summary`).
    """

    name = "dask-runners-control"

    def __init__(self, scheduler, expected_members, shutdown_timeout, lease, expected_workers=None):
        self.scheduler = scheduler
        self.expected_members = expected_members
        self.expected_workers = expected_workers
        self._ready: dict | None = None
        self.shutdown_timeout = shutdown_timeout
        self.lease = lease
        self.members: dict[int | str, _Member] = {}
        self.exit_code = 0
        self.reason = "the scheduler was closed"
        #: Whether the client rank's process died (killed, out of memory).
        self.client_lost = False
        #: Ranks that went silent past the lease, or did not leave when told to.
        self.unreachable: set[int | str] = set()
        self._stopping = False
        self._member_joined = asyncio.Event()
        self._worker_arrived = asyncio.Event()
        self._drained: asyncio.Task | None = None
        #: Coroutine functions awaited in the shutdown while the ranks leave:
        #: closing the scheduler rank's own worker (``exclusive_workers=False``).
        self.on_drain: list = []
        self._client_watch: asyncio.Task | None = None

    def expect_client(self, deadline: float, rank: int = 1) -> None:
        """End the job if no client rank joins within ``deadline`` seconds.

        A client rank that fails before it joins (its own start failed, or it
        died) closes no connection the scheduler knows of; without this the
        scheduler and workers would serve until the job's time limit.
        """

        async def watch():
            await asyncio.sleep(deadline)
            if not any(m.role == "client" for m in self.members.values()):
                logger.error(
                    "scheduler rank: no client rank joined within %.0f s "
                    "(runners.timeouts.discovery); look at the client rank's "
                    "output (rank %s). Shutting the job down with exit code 1",
                    deadline,
                    rank,
                )
                if self.expected_members is not None:
                    self.expected_members -= 1  # do not wait for it to join now
                # Ranks that failed with it will not join either: do not wait for them.
                self.request_close(1, "the client rank never joined", wait_for_stragglers=False)

        self._client_watch = asyncio.ensure_future(watch())

    def install(self) -> None:
        """Add the control handler and this plugin to the scheduler."""
        self.scheduler.handlers[HANDLER] = self.handle_member
        self.scheduler.handlers[WAIT_FOR_WORKERS] = self.wait_for_workers
        self.scheduler.add_plugin(self)
        logging.getLogger("distributed.batched").addFilter(self._quiet_expected_closes)

    def _quiet_expected_closes(self, record: logging.LogRecord) -> bool:
        # When one worker leaves, the scheduler tells every other worker; in a
        # shutdown the others are leaving too, so such a message can meet a
        # connection that just closed. distributed logs that at INFO level,
        # with a traceback. During a shutdown we started, it is expected.
        return not (self._stopping and record.msg.startswith("Batched Comm Closed"))

    # -- connections from ranks ---------------------------------------------
    async def handle_member(self, comm, rank, role, worker=None):
        """Serve one rank's control connection until that rank leaves or its lease runs out.

        The scheduler's side beats too (:meth:`_beat`), so that the rank can
        tell a silent scheduler from a quiet one.
        """
        member = _Member(rank, role, comm, worker)
        self.members[rank] = member
        self._member_joined.set()
        if self._stopping:  # joined a cluster already shutting down (a worker could not start, a signal)
            await self._send_stop(member)
        else:
            await comm.write({"op": "welcome"})
            if self._ready is not None and role == "client":
                await comm.write(self._ready)
        beating = asyncio.ensure_future(self._beat(member))
        silent = False
        try:
            heard = time.monotonic()
            while True:
                message = await asyncio.wait_for(comm.read(), self.lease)
                member.longest_silence = max(member.longest_silence, time.monotonic() - heard)
                heard = time.monotonic()
                if message.get("op") == "shutdown":
                    self.request_close(message["exit_code"], message["reason"])
                elif message.get("op") == "ping":
                    await comm.write({"op": "pong"})
        except asyncio.TimeoutError:  # before OSError: on Python 3.11 it is one
            silent = True
            self.unreachable.add(rank)
            comm.abort()
        except (CommClosedError, OSError):
            pass
        finally:
            beating.cancel()
            member.left.set()
        if not self._stopping:
            self._member_lost(member, silent)
        return Status.dont_reply

    async def _beat(self, member: _Member) -> None:
        """Tell ``member`` every quarter lease that the scheduler is there."""
        while not member.left.is_set():
            await asyncio.sleep(self.lease / 4)
            try:
                await member.comm.write({"op": "heartbeat"})
            except (CommClosedError, OSError):
                return

    def _member_lost(self, member: _Member, silent: bool) -> None:
        """``member`` left without being told to: its process died, or it went silent past the lease."""
        if silent:
            how = (
                f"sent no heartbeat for {self.lease:.0f} s (runners.timeouts.lease): its node is "
                "cut off or the process is stopped"
            )
        else:
            how = "vanished without leaving the cluster (killed, or out of memory?)"
        if member.role == "client":
            # A client rank leaves only by asking to shut down.
            self.client_lost = True
            logger.error(
                "scheduler rank: the client rank (rank %s) %s; shutting the job down with exit code 1",
                member.rank,
                how,
            )
            self.request_close(1, f"the client rank (rank {member.rank}) {'went silent' if silent else 'vanished'}")
            return
        logger.warning(
            "scheduler rank: worker rank %s %s; carrying on with the remaining workers", member.rank, how
        )
        asyncio.ensure_future(self._remove_workers_of(member))

    async def _remove_workers_of(self, member: _Member) -> None:
        """Drop the lost rank's Dask worker now, so that its tasks run elsewhere.

        Without this the scheduler would wait for distributed's own
        ``worker-ttl`` or TCP timeouts to notice a rank that is cut off.
        """
        if member.worker is None:
            return
        for ws in list(self.scheduler.workers.values()):
            if ws.name == member.worker:
                await self.scheduler.remove_worker(
                    ws.address, stimulus_id=f"dask-runners-rank-{member.rank}-lost", close=False
                )

    def request_close(self, exit_code: int, reason: str, *, wait_for_stragglers: bool = True) -> None:
        """Close the scheduler (and so the cluster), leaving with ``exit_code``.

        ``wait_for_stragglers=False``: do not wait for ranks that have not
        joined yet. A launcher's signal reaches every rank, and a rank still
        starting then leaves without joining.
        """
        if self._stopping or self.scheduler.status in (Status.closing, Status.closed):
            return
        if not wait_for_stragglers:
            self.expected_members = None
        self.exit_code = exit_code
        self.reason = reason
        asyncio.ensure_future(self.scheduler.close(reason=reason))

    # -- waiting for workers -----------------------------------------------------
    def add_worker(self, scheduler, worker: str) -> None:
        self._worker_arrived.set()
        self._tell_client_when_ready()

    def log_event(self, topic, msg) -> None:
        # A worker registers while it is still starting; it counts as running
        # only when its status change arrives, a moment later. The scheduler
        # logs that change as an event, and that is the only hook it offers.
        if isinstance(msg, dict) and msg.get("action") == "worker-status-change":
            self._worker_arrived.set()
            # The event comes before the scheduler counts the worker as running.
            asyncio.get_running_loop().call_soon(self._tell_client_when_ready)

    def _tell_client_when_ready(self) -> None:
        """Once every expected worker runs, send the client rank what the cluster is (once)."""
        expected = self.expected_workers
        if self._ready is not None or self._stopping or not expected or len(self.scheduler.running) < expected:
            return
        self._ready = {"op": "ready", **ready_summary(self.scheduler)}
        for member in self.members.values():
            if member.role == "client":
                asyncio.ensure_future(self._send_quietly(member, self._ready))

    @staticmethod
    async def _send_quietly(member: _Member, message: dict) -> None:
        try:
            await member.comm.write(message)
        except (CommClosedError, OSError):
            pass  # the rank is gone; its connection's end says so

    async def wait_for_workers(self, n: int, timeout: float) -> list[str]:
        """Return the running workers' names once there are ``n``, or at ``timeout``.

        Answers as soon as the n-th worker is running (registered, then its
        status changed to running), instead of at the next tick of a poll. A
        look every second is only a safety net.
        """
        deadline = time.monotonic() + timeout
        while len(self.scheduler.running) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._worker_arrived.clear()
            try:
                await asyncio.wait_for(self._worker_arrived.wait(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                pass
        return sorted(str(ws.name) for ws in self.scheduler.running)

    # -- the shutdown sequence -------------------------------------------------
    async def before_close(self) -> None:
        if self._client_watch is not None:
            self._client_watch.cancel()
        await self.drain()

    def drain(self) -> asyncio.Task:
        """Stop every rank, workers first and the client last (runs once)."""
        if self._drained is None:
            self._stopping = True
            self._drained = asyncio.ensure_future(self._drain())
        return self._drained

    async def quiet_workers(self) -> None:
        """Let the workers finish what is in flight before they are told to stop.

        Nothing here; :class:`~dask_runners.services.quiesce.QuiescingControl`
        quiets them after the client code ends.
        """

    async def _drain(self) -> None:
        await self.quiet_workers()
        deadline = time.monotonic() + self.shutdown_timeout
        await self._flush_worker_streams(deadline)
        workers = [m for m in self.members.values() if m.role != "client"]
        await asyncio.gather(*(self._send_stop(m) for m in workers))
        # The client need not wait while the workers close: it is told now,
        # and its process ends while theirs do.
        clients = [m for m in self.members.values() if m.role == "client"]
        await asyncio.gather(*(self._send_stop(m) for m in clients))
        await asyncio.gather(*(close() for close in self.on_drain))
        await self._wait_for_everyone_to_join(deadline)
        await self._wait_until_left(list(self.members.values()), deadline)
        if self.members:
            quietest = max(self.members.values(), key=lambda m: m.longest_silence)
            logger.debug(
                "scheduler rank: the longest silence was %.2f s, from rank %s (lease %.0f s, beats every %.1f s)",
                quietest.longest_silence, quietest.rank, self.lease, self.lease / 4,
            )
        if self.unreachable:
            cancel_job_at_exit(
                f"scheduler rank: rank(s) {sorted(self.unreachable, key=str)} could not be reached; "
                f"the cluster stopped with exit code {self.exit_code} ({self.reason})"
            )

    async def _wait_for_everyone_to_join(self, deadline: float) -> None:
        if self.expected_members is None:
            return
        while len(self.members) < self.expected_members:
            self._member_joined.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning(
                    "scheduler rank: %d of %d ranks never joined the cluster "
                    "before the %.0f s shutdown deadline",
                    self.expected_members - len(self.members),
                    self.expected_members,
                    self.shutdown_timeout,
                )
                return
            try:
                await asyncio.wait_for(self._member_joined.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _wait_until_left(self, members: list[_Member], deadline: float) -> None:
        pending = [m for m in members if not m.left.is_set()]
        if not pending:
            return
        remaining = max(deadline - time.monotonic(), 0)
        waits = [asyncio.ensure_future(m.left.wait()) for m in pending]
        done, not_done = await asyncio.wait(waits, timeout=remaining)
        for task in not_done:
            task.cancel()
        stuck = [m.rank for m in pending if not m.left.is_set()]
        if stuck:
            logger.warning(
                "scheduler rank: rank(s) %s did not leave within the %.0f s "
                "shutdown deadline; closing anyway",
                stuck,
                self.shutdown_timeout,
            )
            self.unreachable.update(stuck)
            for member in pending:
                if not member.left.is_set():
                    member.comm.abort()

    async def _flush_worker_streams(self, deadline: float) -> None:
        # A worker that closes while the scheduler still has a message queued
        # for it makes the scheduler log a CommClosedError traceback. The
        # last messages (releasing the client's keys) were queued just before
        # the shutdown; let them go out before any worker is told to stop.
        for delay in backoff_delays(first=0.001, cap=0.01):
            streams = list(self.scheduler.stream_comms.values())
            if not any(stream.buffer for stream in streams):
                return
            if time.monotonic() + delay > deadline:
                return
            await asyncio.sleep(delay)

    async def _send_stop(self, member: _Member) -> None:
        message = {
            "op": "stop",
            "exit_code": self.exit_code,
            "reason": self.reason,
            "client_lost": self.client_lost,
        }
        try:
            await member.comm.write(message)
        except (CommClosedError, OSError):
            member.left.set()


def ready_summary(scheduler) -> dict:
    """What the running workers of ``scheduler`` add up to, as JSON-ready data."""
    workers = list(scheduler.running)
    return {
        "workers": len(workers),
        "threads": sum(ws.nthreads for ws in workers),
        "memory": sum(ws.memory_limit or 0 for ws in workers),
        "nodes": len({ws.host for ws in workers}),
    }


class ControlChannel:
    """A rank's end of the control connection.

    Use :meth:`open`; then :attr:`stopped` resolves to a :class:`StopOrder`
    when the scheduler says stop, or raises :class:`SchedulerLostError` when
    the scheduler goes away without saying so.
    """

    def __init__(self, comm, address: str, lease: float, role: str = "worker"):
        self.comm = comm
        self.address = address
        self.role = role
        loop = asyncio.get_running_loop()
        self.stopped: asyncio.Future[StopOrder] = loop.create_future()
        self.joined: asyncio.Future[None] = loop.create_future()
        #: What the cluster is, once every expected worker runs (client rank only).
        self.ready: asyncio.Future[dict] = loop.create_future()
        self.lease = lease
        self._pong: asyncio.Future | None = None
        self._listener = asyncio.ensure_future(self._listen())
        self._heartbeat = asyncio.ensure_future(self._beat(lease / 4))

    @classmethod
    async def open(
        cls, address: str, rank, role: str, connection_args: dict, timeout: float, lease: float, worker=None
    ) -> ControlChannel:
        """Connect to the scheduler at ``address`` and join as ``rank`` (whose Dask worker is named ``worker``)."""
        comm = await connect(address, timeout=timeout, **connection_args)
        await comm.write({"op": HANDLER, "rank": rank, "role": role, "worker": worker, "reply": False})
        channel = cls(comm, address, lease, role)
        # The first message says whether the cluster is still up: a rank that
        # joins a cluster already shutting down is told to stop right away.
        await asyncio.wait_for(asyncio.shield(channel.joined), timeout)
        return channel

    async def _beat(self, interval: float) -> None:
        while not self.stopped.done():
            await asyncio.sleep(interval)
            try:
                await self.comm.write({"op": "heartbeat"})
            except (CommClosedError, OSError):
                return

    async def _listen(self) -> None:
        try:
            while True:
                message = await asyncio.wait_for(self.comm.read(), self.lease)
                if not self.joined.done():
                    self.joined.set_result(None)
                op = message.get("op")
                if op == "ready" and not self.ready.done():
                    self.ready.set_result(message)
                elif op == "stop" and not self.stopped.done():
                    order = StopOrder(message["exit_code"], message["reason"], message.get("client_lost", False))
                    self.stopped.set_result(order)
                elif op == "pong" and self._pong is not None and not self._pong.done():
                    self._pong.set_result(True)
        except asyncio.TimeoutError:  # before OSError: on Python 3.11 it is one
            self.comm.abort()
            why = (
                f"no word from the scheduler at {self.address} for {self.lease:.0f} s "
                "(runners.timeouts.lease): its node is cut off, or its process is stopped"
            )
            self._lost(why)
            self._release_allocation(why)
        except (CommClosedError, OSError):
            self._lost(
                f"lost the connection to the scheduler at {self.address} without being told "
                "to stop: the scheduler rank exited or was killed"
            )

    def _release_allocation(self, why: str) -> None:
        # The client rank cancels at once, as it exits; worker ranks only as
        # a fallback (the client's node may be cut off too), one per node,
        # after the client has had time to report.
        if self.role == "client":
            cancel_job_at_exit(f"client rank: {why}; the client code got SchedulerLostError")
        elif os.environ.get("SLURM_LOCALID", "0") == "0":
            cancel_job_at_exit(f"worker rank: {why}", delay=min(5.0, self.lease / 4))

    def _lost(self, why: str) -> None:
        if not self.joined.done():
            self.joined.set_result(None)
        if not self.stopped.done():
            self.stopped.set_exception(SchedulerLostError(why))

    async def scheduler_answers(self) -> bool:
        """Whether the scheduler answers a ping within a quarter lease (and has not said stop)."""
        if self.stopped.done():
            return False
        self._pong = asyncio.get_running_loop().create_future()
        try:
            await self.comm.write({"op": "ping"})
            done, _ = await asyncio.wait([self._pong, self.stopped], timeout=self.lease / 4)
        except (CommClosedError, OSError):
            return False
        return self._pong in done

    async def request_shutdown(self, exit_code: int, reason: str, timeout: float) -> StopOrder:
        """Ask the scheduler to shut the cluster down; wait until it has.

        Returns once every worker rank has left, or raises
        :class:`ShutdownTimeoutError` after ``timeout`` seconds.
        """
        if not self.stopped.done():
            self._heartbeat.cancel()
            message = {"op": "shutdown", "exit_code": exit_code, "reason": reason}
            try:
                await self.comm.write(message)
            except (CommClosedError, OSError):
                pass  # the listener reports the lost scheduler
        try:
            return await asyncio.wait_for(asyncio.shield(self.stopped), timeout)
        except asyncio.TimeoutError as e:
            raise ShutdownTimeoutError(
                f"the scheduler at {self.address} did not confirm the shutdown "
                f"within {timeout:.0f} s (twice runners.timeouts.shutdown)"
            ) from e

    async def close(self) -> None:
        """Leave the cluster: close the connection."""
        self._listener.cancel()
        self._heartbeat.cancel()
        if not self.stopped.done():
            self.stopped.cancel()
        if not self.ready.done():
            self.ready.cancel()
        await self.comm.close()
