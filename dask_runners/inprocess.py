"""Runners that share one event loop, for testing roles and shutdown.

An :class:`InProcessWorld` stands in for a launcher: it hands out ranks and
passes the scheduler address in memory. Service ranks do not end the process;
:meth:`InProcessRunner.exit_process` records the exit code and raises
:class:`RankExited` instead.

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

import asyncio

from .base import BaseRunner, Role
from .job import JobContext


class RankExited(Exception):
    """Raised where a real service rank would have left the process."""

    def __init__(self, rank: int, exit_code: int):
        super().__init__(f"rank {rank} left with exit code {exit_code}")
        self.rank = rank
        self.exit_code = exit_code


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
        self._address: asyncio.Future[str] | None = None

    @property
    def address(self) -> asyncio.Future[tuple]:
        """The scheduler address and the job's credentials, once published."""
        if self._address is None:
            self._address = asyncio.get_running_loop().create_future()
        return self._address


class InProcessRunner(BaseRunner):
    """One rank of an :class:`InProcessWorld`; always asynchronous."""

    shares_credentials = True

    def __init__(self, world: InProcessWorld, rank: int, **kwargs):
        kwargs["asynchronous"] = True
        super().__init__(**kwargs)
        self.world = world
        self.rank = rank
        self.world_size = world.size
        self.job = JobContext("inprocess", rank=rank, world_size=world.size)

    async def get_role(self) -> Role:
        return self.role_for_rank(self.rank)

    async def set_scheduler_address(self, scheduler) -> None:
        self.world.address.set_result((scheduler.address, self.credentials))

    async def get_scheduler_address(self) -> str:
        address, self.credentials = await asyncio.shield(self.world.address)
        return address

    def exit_process(self, exit_code: int):
        self.world.exit_codes[self.rank] = exit_code
        if self.client_lost:
            self.world.client_lost.add(self.rank)
        raise RankExited(self.rank, exit_code)
