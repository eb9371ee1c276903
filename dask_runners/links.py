"""What carries the runner's control messages between the scheduler and a rank.

Both kinds give the control channel (:mod:`dask_runners.control`) the same
four operations, ``read``, ``write``, ``abort`` and ``close``, so that the
channel's logic (joining, the lease, the stop order) is written once:

* a :class:`StreamLink` rides on the connection distributed opens anyway
  between a worker and its scheduler (the worker's batched stream). A worker
  rank opens no connection for the control channel, and the scheduler
  accepts no TLS handshake for it;
* a :class:`CommLink` is a connection of its own. The client rank has one,
  since it runs no worker, and so does a rank whose worker is a nanny (the
  worker then lives in another process, with the stream).

A stream link ends when the worker's stream does: on the scheduler when it
removes the worker, on the rank when the worker closes.
"""

from __future__ import annotations

import asyncio

from distributed.comm.core import CommClosedError

#: The operation under which control messages travel on a batched stream.
STREAM_OP = "dask_runners_control"


class CommLink:
    """Control messages over a connection of their own."""

    def __init__(self, comm):
        self.comm = comm

    async def read(self) -> dict:
        return await self.comm.read()

    async def write(self, message: dict) -> None:
        await self.comm.write(message)

    def abort(self) -> None:
        self.comm.abort()

    async def close(self) -> None:
        await self.comm.close()


class StreamLink:
    """Control messages inside a distributed batched stream.

    Parameters
    ----------
    send : callable or None
        Sends one message on the stream (``BatchedSend.send``); ``None`` until
        the stream exists (:meth:`attach`), and messages wait until then.
    drop : callable
        Called by :meth:`abort`: ends the stream (the scheduler removes the
        worker).
    """

    def __init__(self, send=None, drop=lambda: None):
        self._send = send
        self._drop = drop
        self._waiting: list[dict] = []
        self._inbox: asyncio.Queue = asyncio.Queue()
        self.ended = False
        self.broken = False

    def attach(self, send) -> None:
        """Send on the stream from now on, the messages written before it first."""
        self._send = send
        waiting, self._waiting = self._waiting, []
        for message in waiting:
            self._send_now(message)

    def deliver(self, message: dict) -> None:
        """Take in a message that arrived on the stream."""
        if not self.ended:
            self._inbox.put_nowait(message)

    def end(self, broken: bool = False) -> None:
        """The stream is gone: :meth:`read` raises ``CommClosedError`` once the inbox is empty.

        ``broken``: the other end closed it (rather than this one).
        """
        if not self.ended:
            self.ended = True
            self.broken = broken
            self._inbox.put_nowait(None)

    async def read(self) -> dict:
        message = await self._inbox.get()
        if message is None:
            self._inbox.put_nowait(None)  # every later read ends too
            raise CommClosedError("the worker's stream to the scheduler closed")
        return message

    async def write(self, message: dict) -> None:
        if self.ended:
            raise CommClosedError("the worker's stream to the scheduler closed")
        if self._send is None:
            self._waiting.append(message)
        else:
            self._send_now(message)

    def _send_now(self, message: dict) -> None:
        # BatchedSend raises CommClosedError itself once its connection closed.
        self._send({"op": STREAM_OP, "message": message})

    def abort(self) -> None:
        self._drop()
        self.end()

    async def close(self) -> None:
        self.end()
