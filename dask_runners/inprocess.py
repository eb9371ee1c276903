"""Runners that share one event loop, for testing roles and shutdown.

An :class:`InProcessWorld` stands in for a launcher: it hands out ranks and
passes the scheduler's contact in memory. Service ranks do not end the
process; :meth:`InProcessRunner.exit_process` records the exit code and raises
:class:`~dask_runners.exceptions.RankExited` instead.

Examples
--------
>>> async def rank_main(world, rank):  # doctest: +SKIP
...     try:
...         async with InProcessRunner(world, rank, asynchronous=True) as runner:
...             async with Client(runner, asynchronous=True) as client:
...                 await client.wait_for_workers(runner.n_workers)
...     except RankExited:
...         pass
>>> world = InProcessWorld(4)  # doctest: +SKIP
>>> await asyncio.gather(*(rank_main(world, r) for r in range(4)))  # doctest: +SKIP
"""

from __future__ import annotations

from .base import BaseRunner
from .exceptions import RankExited
from .launchers import job_context
from .transport.memory import MemoryTransport

__all__ = ["InProcessRunner", "InProcessWorld", "RankExited"]


class InProcessWorld:
    """The shared state of several runners in one process.

    Parameters
    ----------
    size : int
        How many ranks the world has.
    """

    def __init__(self, size: int):
        self.size = size
        self.exit_codes: dict[int, int] = {}
        #: The ranks whose service stopped because the client rank died.
        self.client_lost: set[int] = set()
        #: Carries the scheduler's contact from its rank to the others.
        self.transport = MemoryTransport()


class InProcessRunner(BaseRunner):
    """One rank of an :class:`InProcessWorld`; always asynchronous."""

    def __init__(self, world: InProcessWorld, rank: int, **kwargs):
        kwargs["asynchronous"] = True
        super().__init__(**kwargs)
        self.world = world
        self.rank = rank
        self.world_size = world.size
        self.job = job_context({}, numbering=(rank, world.size), numbered_by="inprocess")
        self.transport = world.transport

    def exit_process(self, exit_code: int):
        self.world.exit_codes[self.rank] = exit_code
        if self.client_lost:
            self.world.client_lost.add(self.rank)
        raise RankExited(self.rank, exit_code)
