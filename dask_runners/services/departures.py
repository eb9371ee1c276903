"""A client that leaves while the work it sent last is still arriving.

Client code that submits work and leaves at once (``client.map(...)`` and the
end of ``with Client(...)``) closes its connection before a busy scheduler
has read what it sent last: the graphs, then the goodbye. Two things follow.

* The runner's shutdown request travels on another connection, and can
  overtake them: the workers would then stop while the scheduler still holds
  keys for that client, and each worker that leaves logs them as lost. So the
  client rank names the clients its client code has closed
  (:func:`closed_clients`) in its shutdown request, and the scheduler closes
  once it has read their goodbyes, within a deadline
  (:class:`~dask_runners.control.ClusterControl`).
* distributed builds a graph in the background and removes the client as
  soon as its goodbye is read. A graph built after that registers keys for a
  client that is no longer there, computed for nobody and held until the
  cluster shuts down. :class:`DepartedClients` releases such a graph as soon
  as it is built, as if the client had stayed to cancel it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger(__name__)


def _closed_instances() -> list:
    """The closed ``distributed.Client`` objects of this process (still referenced)."""
    from distributed import Client

    return [client for client in list(Client._instances) if client.status == "closed"]


def closed_clients() -> list[str]:
    """The ids of the closed ``distributed.Client`` objects of this process (still referenced)."""
    return [client.id for client in _closed_instances()]


async def stop_senders_of_closed_clients(timeout: float = 1.0) -> None:
    """Stop the batched senders that the closed clients of this process left waiting.

    ``Client.close`` does not close its batched stream when the scheduler
    closed the connection first, which it does on reading the goodbye. The
    stream's sender then waits out its send interval (10 ms) on a timer. If
    the event loop stops in that window, the timer's ``TimeoutError`` can be
    set and never read, and asyncio logs "Future exception was never
    retrieved" as the process exits. Stopping those senders, and waiting
    (within ``timeout``) until they have, leaves no such timer behind.
    """
    loop = asyncio.get_running_loop()
    senders = []
    for client in _closed_instances():
        sender = getattr(client, "scheduler_comm", None)
        if sender is None or sender.comm is None or sender.please_stop:
            continue
        if getattr(client.loop, "asyncio_loop", None) is not loop:  # a client on another loop is not ours to touch
            continue
        sender.abort()
        senders.append(sender.stopped.wait())
    if senders:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*senders), timeout)


class DepartedClients(SchedulerPlugin):
    """Release the keys of a graph whose client left before it was built.

    Parameters
    ----------
    scheduler : distributed.Scheduler
        The scheduler to watch.
    """

    name = "dask-runners-departed-clients"

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.departed: set[str] = set()

    def install(self) -> None:
        """Add this plugin to the scheduler."""
        self.scheduler.add_plugin(self)

    def add_client(self, scheduler, client: str) -> None:
        self.departed.discard(client)

    def remove_client(self, scheduler, client: str) -> None:
        self.departed.add(client)

    def update_graph(self, scheduler, *, client: str, keys, **kwargs) -> None:
        if client in self.departed and keys:
            # After the graph's own transitions, which run once this hook returns.
            asyncio.get_running_loop().call_soon(self._release, client, list(keys))

    def _release(self, client: str, keys: list) -> None:
        logger.debug("scheduler rank: releasing %d keys of the departed client %s", len(keys), client)
        self.scheduler.client_releases_keys(keys=keys, client=client, stimulus_id=f"dask-runners-departed-{client}")
        cs = self.scheduler.clients.get(client)
        if cs is not None and not cs.wants_what:
            del self.scheduler.clients[client]
