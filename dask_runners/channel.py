"""A rank's end of the control channel (see :mod:`dask_runners.control`).

A worker rank's channel rides on its worker's stream to the scheduler
(:meth:`ControlChannel.through_worker`): the worker is made at once, and its
registration with the scheduler is the rank's join. The client rank, and a
rank whose worker is a nanny, open a connection for it
(:meth:`ControlChannel.open`).
"""

from __future__ import annotations

import asyncio
import os

from distributed.comm import connect, parse_address
from distributed.comm.registry import get_backend
from distributed.comm.core import CommClosedError
from distributed.diagnostics.plugin import WorkerPlugin

from .control import HANDLER, MEMBERSHIP, STANDING, StopOrder
from .exceptions import SchedulerLostError, ShutdownTimeoutError
from .links import STREAM_OP, CommLink, StreamLink
from .unreachable import cancel_job_at_exit


class ControlChannel:
    """A rank's end of the control channel.

    Make it with :meth:`open` or :meth:`through_worker`; then :attr:`stopped`
    resolves to a :class:`~dask_runners.control.StopOrder` when the scheduler
    says stop, or raises :class:`~dask_runners.SchedulerLostError` when the
    scheduler goes away without saying so.

    Parameters
    ----------
    link : CommLink or StreamLink
        What carries the messages.
    address : str
        The scheduler's address.
    lease : float
        How long the scheduler may stay silent before it counts as lost.
    role : str
        ``"worker"`` or ``"client"``.
    rank : int or str or None
        The rank's name in the cluster.
    connection_args : dict or None
        How to connect to the scheduler, for a question outside the link
        (:meth:`_ask_standing`).
    """

    def __init__(self, link, address: str, lease: float, role: str = "worker", rank=None, connection_args=None):
        self.link = link
        self.address = address
        self.role = role
        self.rank = rank
        self.connection_args = connection_args or {}
        loop = asyncio.get_running_loop()
        self.stopped: asyncio.Future[StopOrder] = loop.create_future()
        self.joined: asyncio.Future[None] = loop.create_future()
        #: What the cluster is, once every expected worker runs (client rank only).
        self.ready: asyncio.Future[dict] = loop.create_future()
        self.lease = lease
        self._pong: asyncio.Future | None = None
        #: Quiets this rank's worker when the scheduler asks (set by :class:`StreamMembership`).
        self.quiet = None
        self._listener = asyncio.ensure_future(self._listen())
        self._heartbeat = asyncio.ensure_future(self._beat(lease / 4))

    @classmethod
    async def open(
        cls, address: str, rank, role: str, connection_args: dict, timeout: float, lease: float, worker=None
    ) -> ControlChannel:
        """Connect to the scheduler at ``address`` and join as ``rank`` (whose Dask worker is named ``worker``)."""
        comm = await connect(address, timeout=timeout, **connection_args)
        await comm.write({"op": HANDLER, "rank": rank, "role": role, "worker": worker, "reply": False})
        channel = cls(CommLink(comm), address, lease, role, rank, connection_args)
        # The first message says whether the cluster is still up: a rank that
        # joins a cluster already shutting down is told to stop right away.
        await asyncio.wait_for(asyncio.shield(channel.joined), timeout)
        return channel

    @classmethod
    def through_worker(cls, address: str, rank, connection_args: dict, lease: float) -> ControlChannel:
        """A worker rank's channel on its worker's stream; give :attr:`plugin` to the worker.

        The rank joins when its worker registers with the scheduler. Until
        then, once a lease it asks the scheduler whether it is still there,
        so that a worker waiting to start does not outlive it. (Not more
        often: in a join storm of thousands of ranks, the scheduler is busy
        with registrations, and every question costs it a TLS handshake.)
        """
        return cls(StreamLink(), address, lease, "worker", rank, connection_args)

    @property
    def plugin(self) -> StreamMembership:
        """The worker plugin that carries this channel on the worker's stream."""
        return StreamMembership(self)

    @property
    def link_is_stream(self) -> bool:
        """Whether a worker's stream carries the channel (:meth:`through_worker`)."""
        return isinstance(self.link, StreamLink)

    async def _beat(self, interval: float) -> None:
        while not self.stopped.done():
            await asyncio.sleep(interval)
            if not self.joined.done():
                continue
            try:
                await self.link.write({"op": "heartbeat"})
            except (CommClosedError, OSError):
                return

    async def _listen(self) -> None:
        try:
            while True:
                try:
                    message = await asyncio.wait_for(self.link.read(), self.lease)
                except asyncio.TimeoutError:
                    if self.joined.done():
                        raise
                    if await self._ask_standing() is None:  # a worker still starting
                        self._lost(f"lost the connection to the scheduler at {self.address} while this rank's "
                                   "worker started: it does not answer (the scheduler rank exited or was killed)")
                        return
                    continue
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
                elif op == "quiet" and self.quiet is not None:
                    asyncio.ensure_future(self._quiet_and_say_so())
        except asyncio.TimeoutError:  # before OSError: on Python 3.11 it is one
            self.link.abort()
            why = (
                f"no word from the scheduler at {self.address} for {self.lease:.0f} s "
                "(runners.timeouts.lease): its node is cut off, or its process is stopped"
            )
            self._lost(why)
            self._release_allocation(why)
        except (CommClosedError, OSError):
            if self.link_is_stream:
                await self._stream_ended()
            else:
                self._lost(self._connection_lost)

    async def _quiet_and_say_so(self) -> None:
        await self.quiet()
        try:
            await self.link.write({"op": "quieted"})
        except (CommClosedError, OSError):
            pass  # the stream is gone; the stop order will not come either

    @property
    def _connection_lost(self) -> str:
        return (
            f"lost the connection to the scheduler at {self.address} without being told "
            "to stop: the scheduler rank exited or was killed"
        )

    async def _stream_ended(self) -> None:
        """The worker's stream ended without a stop order: say why, if the scheduler's end closed it.

        A worker that never registered failed to start (the worker service
        reports that); one that closed by itself said so to the scheduler.
        """
        if self.stopped.done() or not self.joined.done() or not self.link.broken:
            return
        standing = await self._ask_standing(first_try=0.05)  # most likely, nothing listens any more
        if standing is None:
            self._lost(self._connection_lost)
        elif standing["dropped"]:
            self._lost(
                f"the scheduler at {self.address} dropped this rank after {self.lease:.0f} s without "
                "a heartbeat (runners.timeouts.lease): its node was cut off, or its process stopped"
            )
        elif not self.stopped.done():
            self.stopped.set_result(StopOrder(standing["exit_code"], standing["reason"], standing["client_lost"]))

    async def _ask_standing(self, first_try: float = 1.0) -> dict | None:
        """The scheduler's answer to :data:`~dask_runners.control.STANDING`, or ``None`` if it gives none.

        Gives up when a try finds nothing listening at the address (the
        scheduler rank's process is gone), else after a quarter lease. Each
        try lasts twice the one before, from ``first_try`` seconds: a second
        by default, since a try abandoned sooner costs a busy scheduler a
        handshake for nothing; a refused connection ends a try only at its
        end (distributed tries again until then). A try that fails otherwise
        is checked by one direct attempt (:func:`nothing_listens`), since
        distributed reports only the error of its last attempt.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease / 4
        attempt = first_try
        while True:
            remaining = deadline - loop.time()
            if remaining < 0.01:  # (a timeout of 0 would mean distributed's default)
                return None
            attempt = min(attempt, remaining)
            try:
                comm = await connect(self.address, timeout=attempt, **self.connection_args)
                break
            except OSError as e:
                if refused(e) or await nothing_listens(self.address, self.connection_args, attempt):
                    return None
                attempt *= 2
        try:
            await comm.write({"op": STANDING, "rank": self.rank, "reply": True})
            return await asyncio.wait_for(comm.read(), max(deadline - loop.time(), 0.1))
        except (OSError, asyncio.TimeoutError):
            return None
        finally:
            comm.abort()

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
        """Whether the scheduler answers a ping within a quarter lease (and has not said stop).

        On a worker's stream that has ended, the answer is what the scheduler
        said when the stream ended. If it said nothing (this end closed the
        stream, perhaps because its scheduler vanished before the stream
        showed it, or the stream broke before the scheduler's first word to a
        worker that had only just registered), the scheduler is asked over a
        connection of its own; if nothing answers, the scheduler is lost
        (:attr:`stopped` raises :class:`~dask_runners.SchedulerLostError`).
        """
        if self.link_is_stream and self.link.ended:
            await asyncio.wait([self._listener])
            if self.stopped.done():
                return False
            if await self._ask_standing(first_try=0.05) is None:
                self._lost(self._connection_lost)
                return False
            return True
        if self.stopped.done():
            return False
        self._pong = asyncio.get_running_loop().create_future()
        try:
            await self.link.write({"op": "ping"})
            done, _ = await asyncio.wait([self._pong, self.stopped], timeout=self.lease / 4)
        except (CommClosedError, OSError):
            return False
        return self._pong in done

    async def request_shutdown(self, exit_code: int, reason: str, timeout: float, departed=()) -> StopOrder:
        """Ask the scheduler to shut the cluster down; wait until it has.

        The scheduler first waits (within half its shutdown deadline) until
        the clients named in ``departed`` (ids of this process's closed
        ``Client`` objects) have left. Returns once every worker rank has
        left, or raises :class:`ShutdownTimeoutError` after ``timeout``
        seconds. A worker rank whose worker never registered asks over a
        connection of its own.
        """
        if self.link_is_stream and not self.joined.done():
            channel = await ControlChannel.open(
                self.address, self.rank, self.role, self.connection_args, timeout, self.lease
            )
            try:
                return await channel.request_shutdown(exit_code, reason, timeout)
            finally:
                await channel.close()
        if not self.stopped.done():
            self._heartbeat.cancel()
            message = {"op": "shutdown", "exit_code": exit_code, "reason": reason, "departed": list(departed)}
            try:
                await self.link.write(message)
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
        """Leave the cluster: close the link."""
        self._listener.cancel()
        self._heartbeat.cancel()
        if not self.stopped.done():
            self.stopped.cancel()
        if not self.ready.done():
            self.ready.cancel()
        await self.link.close()


async def nothing_listens(address: str, connection_args: dict, timeout: float) -> bool:
    """Whether one direct attempt to reach ``address`` within ``timeout`` is refused.

    distributed's ``connect`` tries again until its deadline and reports only
    its last attempt's error. On a loaded node that is often an attempt cut
    short by the deadline (a timeout), though every attempt before it was
    refused. One attempt of the address's own connector says it plainly. A
    connection that succeeds is closed at once; the scheduler logs at INFO
    that it closed before its handshake.
    """
    scheme, location = parse_address(address)
    connector = get_backend(scheme).get_connector()
    try:
        comm = await asyncio.wait_for(connector.connect(location, deserialize=False, **connection_args), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return refused(e)
    comm.abort()
    return False


def refused(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it) is a refused connection: nothing listens there."""
    while error is not None:
        if isinstance(error, ConnectionRefusedError):
            return True
        error = error.__cause__ or error.__context__
    return False


async def quiet(worker) -> None:
    """Quiet ``worker`` through its plugin that can (:class:`~dask_runners.services.quiesce.QuietExit`)."""
    for plugin in list(worker.plugins.values()):
        if hasattr(plugin, "quiesce"):
            await plugin.quiesce(worker)
            return


class StreamMembership(WorkerPlugin):
    """Carries a worker rank's control channel on its worker's stream.

    Before the worker registers, it puts the rank into the worker's startup
    information (which the scheduler reads to let the rank join) and takes
    control messages off the stream; as the worker closes, it tells the
    scheduler that the rank leaves on purpose, unless the scheduler said stop.
    """

    name = "dask-runners-membership"

    def __init__(self, channel: ControlChannel):
        self.channel = channel

    def setup(self, worker) -> None:
        link = self.channel.link
        membership = {"rank": self.channel.rank, "role": self.channel.role}
        worker.startup_information[MEMBERSHIP] = lambda _: membership
        worker.stream_handlers[STREAM_OP] = link.deliver
        link.attach(worker.batched_stream.send)
        self.channel.quiet = lambda: quiet(worker)

    async def teardown(self, worker) -> None:
        link = self.channel.link
        stream = worker.batched_stream.comm
        broken = stream is not None and stream.closed()  # the scheduler's end closed first
        if not broken and not self.channel.stopped.done():
            try:
                await link.write({"op": "leave"})
            except (CommClosedError, OSError):
                broken = True
        link.end(broken)
