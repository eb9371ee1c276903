"""Quiet the workers of a busy cluster before they are told to stop.

A worker that closes while work is still moving makes distributed log errors
with tracebacks, although nothing is lost that anyone still wants:

* a heartbeat in flight when the worker closes its own connections logs
  ``Failed to communicate with scheduler during heartbeat``;
* a transfer between two workers, cut because one of them closed, logs
  ``failed during get data`` on the sender and ``Worker stream died during
  communication`` on the receiver.

So the shutdown first quiets every worker, all at once, and only then tells
them to stop (:class:`QuiescingControl`). Quieting a worker
(:class:`QuietExit`, a worker plugin each worker of the job carries, in a
nanny's worker process too) means: it takes no new task and starts no new
transfer (its status becomes ``closing_gracefully``, as when distributed
retires a worker, so the scheduler sends it nothing more), its heartbeat
stops and the beat in flight is awaited, and the transfers in flight to and
from it are awaited. Each wait has the deadline it is given; a worker that
cannot be reached is left to the stop order. The request travels on the
worker rank's control channel, on the worker's own stream; only a nanny's
worker is asked over a connection the scheduler opens to it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from distributed import WorkerPlugin
from distributed.comm.core import CommClosedError
from distributed.core import Status

from ..config import backoff_delays
from ..control import ClusterControl

logger = logging.getLogger(__name__)

#: The worker's handler that quiets it.
QUIESCE = "dask_runners_quiesce"
#: A worker in one of these may still take work or move data.
ACTIVE = (Status.running, Status.paused)


class QuietExit(WorkerPlugin):
    """Lets a worker be quieted before it closes, and awaits its last heartbeat as it closes.

    Parameters
    ----------
    deadline : float
        How long quieting may wait for the heartbeat and transfers in flight.
    """

    name = "dask-runners-quiet-exit"

    def __init__(self, deadline: float):
        self.deadline = deadline
        self._beat: asyncio.Future | None = None

    def setup(self, worker) -> None:
        """Track the heartbeat in flight, and answer the quiesce request."""
        heartbeat = worker.periodic_callbacks.get("heartbeat")
        if heartbeat is not None:
            beat = heartbeat.callback

            def tracked_beat():
                self._beat = asyncio.ensure_future(beat())
                return self._beat

            heartbeat.callback = tracked_beat
        worker.handlers[QUIESCE] = lambda: self.quiesce(worker)
        # Sent with the worker's registration: the scheduler then knows it may ask.
        worker.startup_information[QUIESCE] = lambda _: True

    async def teardown(self, worker) -> None:
        """The worker closes (after quieting, or without it): let its last heartbeat land first.

        distributed closes the worker's connections after its plugins, so a
        heartbeat still in flight then would fail with an error. A worker
        whose scheduler is gone does not wait: that beat cannot land.
        """
        deadline = time.monotonic() + (self.deadline if _scheduler_connected(worker) else 0)
        await self._stop_heartbeat(worker, deadline)

    async def quiesce(self, worker) -> str:
        """Stop taking work and starting transfers; return once nothing is moving."""
        deadline = time.monotonic() + self.deadline
        if worker.status in ACTIVE:
            worker.status = Status.closing_gracefully
        await self._stop_heartbeat(worker, deadline)
        await _until(lambda: not _transferring(worker), deadline)
        return "OK"

    async def _stop_heartbeat(self, worker, deadline: float) -> None:
        heartbeat = worker.periodic_callbacks.get("heartbeat")
        if heartbeat is not None:
            heartbeat.stop()
        beat = self._beat
        if beat is not None and not beat.done():
            await asyncio.wait([beat], timeout=max(deadline - time.monotonic(), 0))


def _scheduler_connected(worker) -> bool:
    """Whether ``worker``'s stream to its scheduler is still open."""
    stream = getattr(worker, "batched_stream", None)
    comm = getattr(stream, "comm", None)
    return comm is not None and not comm.closed()


def _transferring(worker) -> bool:
    """Whether data is moving to or from ``worker``."""
    return bool(worker.state.in_flight_workers) or worker.transfer_outgoing_count > 0


async def _until(condition, deadline: float) -> None:
    """Wait until ``condition()`` holds or ``deadline`` (a monotonic time) passes."""
    for delay in backoff_delays(first=0.001, cap=0.05):
        if condition() or time.monotonic() + delay > deadline:
            return
        await asyncio.sleep(delay)


async def _first(*waits) -> None:
    """Return when the first of ``waits`` (coroutines) returns; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


async def quiesce_workers(scheduler, deadline: float, on_streams=None) -> None:
    """Quiet every worker of ``scheduler`` at once, within ``deadline`` seconds.

    Only workers that carry :class:`QuietExit` are asked (a worker that
    joined from elsewhere has no handler to answer). A worker that is gone
    or closing is skipped quietly: the stop order that follows deals with it.
    ``on_streams`` maps the addresses of workers whose rank's control channel
    rides on the worker's stream to that rank's member: those are asked on
    the stream; the others (a nanny's worker) over a connection of the
    scheduler's.
    """
    on_streams = on_streams or {}

    async def quiet(address: str) -> None:
        member = on_streams.get(address)
        try:
            if member is not None:
                await member.link.write({"op": "quiet"})
                await _first(member.quieted.wait(), member.left.wait())  # a rank that left has nothing to quiet
            else:
                await getattr(scheduler.rpc(address), QUIESCE)()
        except (CommClosedError, OSError, ValueError, KeyError) as e:
            logger.debug("scheduler rank: could not quiet the worker at %s: %s", address, e)

    addresses = [
        ws.address
        for ws in scheduler.workers.values()
        if ws.extra.get(QUIESCE) and ws.status in (*ACTIVE, Status.closing_gracefully)
    ]
    if not addresses:
        return
    tasks = [asyncio.ensure_future(quiet(address)) for address in addresses]
    _, late = await asyncio.wait(tasks, timeout=deadline)
    for task in late:
        task.cancel()
    if late:
        logger.warning(
            "scheduler rank: %d worker(s) were still moving data after %.0f s; stopping them anyway",
            len(late),
            deadline,
        )


class QuiescingControl(ClusterControl):
    """The control channel's scheduler side, whose shutdown quiets the workers before stopping them.

    Only a shutdown with exit status 0 that no signal started (the client
    code finished, or ``Client.shutdown()``) quiets the workers: after a
    signal, which every rank may have received and be acting on, or a lost
    rank, the job ends as fast as it can. Quieting takes at most half the
    shutdown deadline; the stop sequence of
    :class:`~dask_runners.control.ClusterControl` then has its own.

    Attributes
    ----------
    quiet : bool
        Whether the shutdown quiets the workers; the scheduler rank sets it
        to ``False`` when a signal closes the cluster.
    """

    quiet = True

    async def quiet_workers(self) -> None:
        if self.quiet and self.exit_code == 0 and not self.client_lost:
            await quiesce_workers(self.scheduler, self.shutdown_timeout / 2, self.members_on_streams)
