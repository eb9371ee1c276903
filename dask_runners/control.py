"""The runner's own control channel between the scheduler and the other ranks.

Every rank other than the scheduler stays linked to it for as long as it
serves: a worker rank through its worker's own stream to the scheduler, the
client rank (and a rank whose worker is a nanny) through a connection of its
own (:mod:`dask_runners.links`). Over the link:

* the rank says who it is when it joins (``rank``, ``role``);
* the client rank asks for the cluster to shut down, with an exit code and
  the clients its client code closed: the scheduler closes once it has read
  their goodbyes (within half the shutdown deadline), so that the request
  cannot overtake them (see :mod:`dask_runners.services.departures`);
* the scheduler tells each rank to stop, with the exit code to leave with.

Because the link's connection stays open, each side learns at once when the
other process goes away: the kernel closes the socket of a process that dies
for any reason. The scheduler can then end the job instead of waiting for an idle
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
import logging
import time
from typing import NamedTuple

from distributed.comm.core import CommClosedError
from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin

from .config import backoff_delays
from .links import STREAM_OP, CommLink, StreamLink
from .unreachable import cancel_job_at_exit

logger = logging.getLogger(__name__)

HANDLER = "dask_runners_control"
WAIT_FOR_WORKERS = "dask_runners_wait_for_workers"
STANDING = "dask_runners_standing"
#: The key of a worker's startup information that says which rank it serves.
MEMBERSHIP = "dask-runners"


class StopOrder(NamedTuple):
    """What the scheduler told a rank when the cluster stopped."""

    exit_code: int
    reason: str
    #: The client rank's process died: the other ranks cannot all meet
    #: again, as ``MPI_Finalize`` needs them to.
    client_lost: bool = False


class _Member:
    """One rank that joined: how to reach it, and what it has said so far.

    (A plain class: a dataclass costs every rank its code generation at import.)
    """

    __slots__ = ("rank", "role", "link", "worker", "left", "quieted", "longest_silence")

    def __init__(self, rank: int | str, role: str, link: CommLink | StreamLink, worker: str | int | None = None):
        self.rank = rank
        self.role = role
        self.link = link
        #: The name of the rank's Dask worker, if it runs one.
        self.worker = worker
        self.left = asyncio.Event()
        #: Set when the rank says its worker is quiet (see :mod:`dask_runners.services.quiesce`).
        self.quieted = asyncio.Event()
        #: The longest time the rank said nothing, in seconds (to choose a lease from).
        self.longest_silence = 0.0


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
        #: Members linked through their worker's stream, by worker address.
        self._streams: dict[str, _Member] = {}

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
        self.scheduler.handlers[STANDING] = self.standing
        self.scheduler.stream_handlers[STREAM_OP] = self._on_stream_message
        self.scheduler.add_plugin(self)
        logging.getLogger("distributed.batched").addFilter(self._quiet_expected_closes)

    def _quiet_expected_closes(self, record: logging.LogRecord) -> bool:
        # When one worker leaves, the scheduler tells every other worker; in a
        # shutdown the others are leaving too, so such a message can meet a
        # connection that just closed. distributed logs that at INFO level,
        # with a traceback. During a shutdown we started, it is expected.
        return not (self._stopping and record.msg.startswith("Batched Comm Closed"))

    # -- links from ranks ---------------------------------------------------
    async def handle_member(self, comm, rank, role, worker=None):
        """Serve one rank's control connection until that rank leaves or its lease runs out."""
        await self._serve(_Member(rank, role, CommLink(comm), worker))
        return Status.dont_reply

    def add_worker(self, scheduler, worker: str) -> None:
        """A worker registered: if a worker rank of the job runs it, that rank joins through its stream."""
        self._worker_arrived.set()
        self._tell_client_when_ready()
        ws = getattr(scheduler, "workers", {}).get(worker)
        membership = None if ws is None else (ws.extra or {}).get(MEMBERSHIP)
        if not membership:
            return
        stream = scheduler.stream_comms[worker]
        link = StreamLink(stream.send, drop=stream.abort)
        member = _Member(membership["rank"], membership["role"], link, ws.name)
        self._streams[worker] = member
        asyncio.ensure_future(self._serve(member))

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        member = self._streams.pop(worker, None)
        if member is not None:
            member.link.end()

    @property
    def members_on_streams(self) -> dict[str, _Member]:
        """The members linked through their worker's stream, by worker address."""
        return dict(self._streams)

    def _on_stream_message(self, message: dict, worker: str | None = None, **kwargs) -> None:
        member = self._streams.get(worker)
        if member is not None:
            member.link.deliver(message)

    async def _serve(self, member: _Member) -> None:
        """Serve one rank's link until that rank leaves or its lease runs out.

        The scheduler's side beats too (:meth:`_beat`), so that the rank can
        tell a silent scheduler from a quiet one.
        """
        self.members[member.rank] = member
        self._member_joined.set()
        link = member.link
        beating = None
        silent = left_on_purpose = False
        try:
            if self._stopping:  # joined a cluster already shutting down (a worker could not start, a signal)
                await self._send_stop(member)
            else:
                await link.write({"op": "welcome"})
                if self._ready is not None and member.role == "client":
                    await link.write(self._ready)
            beating = asyncio.ensure_future(self._beat(member))
            heard = time.monotonic()
            while True:
                message = await asyncio.wait_for(link.read(), self.lease)
                member.longest_silence = max(member.longest_silence, time.monotonic() - heard)
                heard = time.monotonic()
                if message.get("op") == "shutdown":
                    asyncio.ensure_future(self._close_once_departed(message))
                elif message.get("op") == "ping":
                    await link.write({"op": "pong"})
                elif message.get("op") == "quieted":
                    member.quieted.set()
                elif message.get("op") == "leave":  # its worker closes by itself; the rank lives on
                    left_on_purpose = True
                    break
        except asyncio.TimeoutError:  # before OSError: on Python 3.11 it is one
            silent = True
            self.unreachable.add(member.rank)
            link.abort()
        except (CommClosedError, OSError):
            pass
        finally:
            if beating is not None:
                beating.cancel()
            member.left.set()
        if not self._stopping and not left_on_purpose:
            self._member_lost(member, silent)

    def standing(self, rank) -> dict:
        """What a rank whose worker's stream ended learns of its place in the cluster.

        ``dropped``: it was counted as gone (silent past the lease). During a
        shutdown, the stop order's exit code and reason.
        """
        return {
            "dropped": rank in self.unreachable,
            "stopping": self._stopping,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "client_lost": self.client_lost,
        }

    async def _beat(self, member: _Member) -> None:
        """Tell ``member`` every quarter lease that the scheduler is there."""
        while not member.left.is_set():
            await asyncio.sleep(self.lease / 4)
            try:
                await member.link.write({"op": "heartbeat"})
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

    async def _close_once_departed(self, request: dict) -> None:
        """Close as the client rank asks, once the clients it names have left, within half the deadline."""
        clients = request.get("departed", [])
        deadline = time.monotonic() + self.shutdown_timeout / 2
        for delay in backoff_delays(first=0.001, cap=0.05):
            staying = [client for client in clients if client in self.scheduler.clients]
            if not staying or time.monotonic() + delay > deadline:
                break
            await asyncio.sleep(delay)
        if staying:
            logger.info("scheduler rank: closing before these clients have left: %s", staying)
        self.request_close(request["exit_code"], request["reason"])

    # -- waiting for workers -----------------------------------------------------
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
            await member.link.write(message)
        except (CommClosedError, OSError):
            pass  # the rank is gone; its link's end says so

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
                    member.link.abort()

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
            await member.link.write(message)
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
