"""The client rank: its link to the cluster while the client code runs, and the shutdown.

The client rank holds the control channel to the scheduler. If the cluster
stops while the client code runs (the scheduler rank received a signal, a
worker could not start) or the scheduler is lost, the failure is noted on
the rank's state and the main thread is woken, so that the client code is
interrupted with it. Leaving the client code asks the scheduler to shut the
cluster down and waits until it has.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import psutil
from dask.utils import format_bytes
from distributed.core import Status, rpc

from ..at_exit import collect_no_garbage_at_exit
from ..channel import ControlChannel
from ..config import backoff_delays
from ..control import WAIT_FOR_WORKERS
from ..dashboard import Dashboard
from ..exceptions import ClusterStoppedError, WorkersTimeoutError
from ..state import RankState
from .departures import closed_clients, stop_senders_of_closed_clients
from .worker import ColocatedWorker

logger = logging.getLogger(__name__)


class ClientSession:
    """The client rank's side of the cluster.

    Parameters
    ----------
    state : RankState
        The rank's state.
    channel : ControlChannel or None
        The control channel; ``None`` when the scheduler is not the job's own.
    shutdown_timeout : float
        The scheduler's shutdown deadline.
    wake_main_thread : callable
        Interrupts the client code on the main thread, where a handler
        raises the noted failure; returns whether there is such a handler.
    colocated : ColocatedWorker or None
        The worker beside the client code (``exclusive_workers=False``).
    dashboard : Dashboard or None
        The scheduler's dashboard, from its contact, for the ready line.
    hosted_scheduler : asyncio.Task or None
        The scheduler's service when it runs in this process, beside the
        client code (a shared rank): the shutdown waits for it to close.
    """

    def __init__(
        self,
        state: RankState,
        channel: ControlChannel | None,
        shutdown_timeout: float,
        wake_main_thread,
        colocated: ColocatedWorker | None = None,
        dashboard: Dashboard | None = None,
        hosted_scheduler: asyncio.Task | None = None,
    ):
        collect_no_garbage_at_exit()  # the job ends when this process does: skip its last collections
        self.state = state
        self.channel = channel
        self.shutdown_timeout = shutdown_timeout
        self.wake_main_thread = wake_main_thread
        self.colocated = colocated
        self.dashboard = dashboard
        self.hosted_scheduler = hosted_scheduler
        if channel is not None:
            channel.stopped.add_done_callback(self._on_cluster_stopped)
            channel.ready.add_done_callback(self._on_cluster_ready)

    def _on_cluster_ready(self, ready: asyncio.Future) -> None:
        """Every expected worker runs: say in one line what the cluster is."""
        if not ready.cancelled():
            line = ready_line(ready.result(), since_launch(), self.dashboard)
            logger.info("%s: %s", self.state.log_prefix, line)

    def _on_cluster_stopped(self, stopped: asyncio.Future) -> None:
        """The cluster stopped: a failure if the client code did not ask for it."""
        state = self.state
        if stopped.cancelled():
            return
        if stopped.exception() is not None:
            failure = stopped.exception()
        elif stopped.result().exit_code != 0:
            order = stopped.result()
            failure = ClusterStoppedError(order.reason, order.exit_code)
        else:
            return  # closed on purpose, as by Client.shutdown()
        with state.interrupting:  # see SignalPolicy.handle
            if state.shutdown_requested or state.signal_received is not None:
                return  # asked for, or the same signal reached every rank and already interrupted the code
            state.failure = failure
        logger.error("%s: %s; interrupting the client code", state.log_prefix, failure)
        # Client(runner) closes instead of reconnecting once the runner is
        # closing, cancelling its futures. With a handler on the main thread,
        # the handler says closing as it raises the failure, so that the
        # client code meets the failure, not a cancelled future.
        if not self.wake_main_thread():
            state.status = Status.closing

    @property
    def scheduler_lost(self) -> bool:
        """Whether the scheduler went away without stopping the cluster (killed, or cut off)."""
        stopped = None if self.channel is None else self.channel.stopped
        return stopped is not None and stopped.done() and not stopped.cancelled() and stopped.exception() is not None

    async def shutdown(self, exit_code: int, reason: str) -> None:
        """Shut the cluster down, workers first; wait until the scheduler confirms."""
        try:
            await self._stop_cluster(exit_code, reason)
        finally:
            await stop_senders_of_closed_clients()  # before the event loop stops
            self.state.status = Status.closed

    async def _stop_cluster(self, exit_code: int, reason: str) -> None:
        state, channel = self.state, self.channel
        if self.colocated is not None:
            await self.colocated.close()
        if channel is None or state.shutdown_requested:
            return
        state.shutdown_requested = True
        state.status = Status.closing
        try:
            if not channel.stopped.done():
                # The scheduler waits for the goodbyes of the clients the code
                # closed, then spends up to the shutdown deadline draining the
                # workers before it answers; wait for it a little longer.
                await channel.request_shutdown(exit_code, reason, 2 * self.shutdown_timeout, closed_clients())
        finally:
            await channel.close()
            await self._wait_for_hosted_scheduler()

    async def _wait_for_hosted_scheduler(self) -> None:
        """A scheduler in this process closes after the client code; wait for it, within the deadline."""
        if self.hosted_scheduler is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.hosted_scheduler), self.shutdown_timeout)
        except asyncio.TimeoutError:
            logger.warning(
                "%s: the scheduler in this process did not close within %.0f s (runners.timeouts.shutdown)",
                self.state.log_prefix,
                self.shutdown_timeout,
            )


def since_launch() -> float:
    """Seconds since this process started, to the clock tick (10 ms).

    psutil's ``create_time`` adds the start, in clock ticks since boot, to
    the boot time, which Linux gives in whole seconds: it can be a second
    off. On Linux the start is read from ``/proc/self/stat`` and compared
    with the clock that counts from boot.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        return time.time() - psutil.Process().create_time()


def ready_line(summary: dict, seconds: float, dashboard: Dashboard | None = None) -> str:
    """The client rank's line when the cluster is ready, from the scheduler's summary."""
    workers, nodes = summary["workers"], summary["nodes"]
    line = (
        f"cluster ready in {seconds:.1f} s: {workers} worker{'s' * (workers != 1)}, "
        f"{summary['threads']} threads, {format_bytes(summary['memory'])} on {nodes} node{'s' * (nodes != 1)}"
    )
    if dashboard is None:
        return line
    if dashboard.tunnel is None:
        return f"{line}; dashboard {dashboard.link}"
    return f"{line}; dashboard {dashboard.link} after `{dashboard.tunnel}`"


async def wait_for_workers(address: str, connection_args: dict, n_workers: int, timeout: float, ours: bool) -> None:
    """Wait until ``n_workers`` workers of the scheduler at ``address`` are running.

    A scheduler of ours (``ours``) answers as soon as the last one runs;
    any other is polled.

    Raises
    ------
    WorkersTimeoutError
        If fewer arrived within ``timeout`` seconds; the message says how many.
    """
    scheduler = rpc(address, connection_args=connection_args)
    try:
        if ours:
            running = await getattr(scheduler, WAIT_FOR_WORKERS)(n=n_workers, timeout=timeout)
        else:
            running = await _poll_for_workers(scheduler, n_workers, timeout)
    finally:
        await scheduler.close_rpc()
    if len(running) < n_workers:
        raise WorkersTimeoutError(
            f"timed out after {timeout:.0f} s waiting for {n_workers} "
            f"workers: {len(running)} arrived (names {running})"
        )


async def _poll_for_workers(scheduler, n_workers: int, timeout: float) -> list[str]:
    """Poll a scheduler that is not ours for its running workers."""
    deadline = time.monotonic() + timeout
    for delay in backoff_delays(first=0.01, cap=0.2):
        info = await scheduler.identity(n_workers=-1)
        running = sorted(
            str(w.get("name")) for w in info["workers"].values() if w.get("status") == Status.running.name
        )
        if len(running) >= n_workers or time.monotonic() + delay > deadline:
            return running
        await asyncio.sleep(delay)
