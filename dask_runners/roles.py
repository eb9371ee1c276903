"""Which rank does what: the scheduler, the client code, and the workers.

A :class:`RankLayout` is the answer to "what is rank ``r``?" for one job,
from the runner's ``scheduler``, ``client``, ``scheduler_rank``,
``client_rank`` and ``exclusive_workers`` arguments. It also knows how many
ranks the job needs and how many of them run a worker.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

from .exceptions import WorldTooSmallError


class Role(str, enum.Enum):
    """What one process of the job does."""

    scheduler = "scheduler"
    client = "client"
    worker = "worker"


class _Ranks(NamedTuple):
    scheduler: bool = True
    client: bool = True
    scheduler_rank: int = 0
    client_rank: int | None = None
    exclusive_workers: bool = True
    min_workers: int = 1


class RankLayout(_Ranks):
    """The ranks of the scheduler and the client code; every other rank is a worker.

    When ``scheduler_rank`` and ``client_rank`` are the same rank, that rank
    is a client rank whose process also runs the scheduler
    (:attr:`shared_rank`): the scheduler starts beside the client code and
    closes after it. With ``exclusive_workers=False`` that process runs one
    worker as well, so a one-rank job is a whole cluster.

    Parameters
    ----------
    scheduler : bool
        Whether one rank runs the scheduler.
    client : bool
        Whether one rank runs the client code.
    scheduler_rank : int
        The scheduler's rank.
    client_rank : int, optional
        The client code's rank; by default the lowest rank that is not the
        scheduler's.
    exclusive_workers : bool
        Whether workers run only on the other ranks (``False``: the scheduler
        and client ranks each run a worker too).
    min_workers : int
        How many worker ranks the job must have at least: 1, or 0 for a
        cluster that workers from elsewhere may join (dask-mpi's
        ``execute`` allows one).
    """

    __slots__ = ()

    # A named tuple, not a dataclass: a dataclass generates and compiles its
    # methods as its module is imported, on every rank.
    def __new__(cls, *args, **kwargs) -> RankLayout:
        layout = super().__new__(cls, *args, **kwargs)
        if layout.client_rank is None:
            lowest_free = 1 if layout.scheduler and layout.scheduler_rank == 0 else 0
            layout = layout._replace(client_rank=lowest_free)
        return layout

    @property
    def shared_rank(self) -> int | None:
        """The rank whose process runs both the scheduler and the client code, if any."""
        if self.scheduler and self.client and self.scheduler_rank == self.client_rank:
            return self.client_rank
        return None

    def hosts_scheduler(self, rank: int | None) -> bool:
        """Whether the process of ``rank`` runs the scheduler (alone, or beside the client code)."""
        return self.scheduler and rank == self.scheduler_rank

    def service_ranks(self) -> dict[int, Role]:
        """The ranks that run the scheduler or the client code, with their roles.

        A shared rank is listed once, as the client's: its process runs the
        client code, and the scheduler beside it.
        """
        ranks = {self.scheduler_rank: Role.scheduler} if self.scheduler else {}
        if self.client:
            ranks[self.client_rank] = Role.client
        return ranks

    def control_members(self, world_size: int | None) -> int | None:
        """How many ranks join the scheduler's control channel, if known.

        Every rank but the scheduler's; a shared rank's client code joins
        too, over its own process's loopback.
        """
        if world_size is None:
            return None
        return world_size - 1 + (self.shared_rank is not None)

    def role_of(self, rank: int) -> Role:
        """The role of ``rank``."""
        return self.service_ranks().get(rank, Role.worker)

    def n_workers(self, world_size: int | None) -> int | None:
        """How many workers a job of ``world_size`` ranks has (``None`` if unknown)."""
        if world_size is None:
            return None
        if not self.exclusive_workers:
            return world_size
        return world_size - len(self.service_ranks())

    def check_world_size(self, world_size: int | None, stated: str, hint: Callable[[int], str]) -> None:
        """Raise :class:`WorldTooSmallError` if ``world_size`` ranks cannot hold this layout.

        ``stated`` says where the size came from (``"SLURM_NTASKS=2"``) and
        ``hint(n)`` how to launch ``n`` processes; both speak the launcher's
        language (:class:`~dask_runners.launchers.LaunchFacts`).
        """
        service = self.service_ranks()
        parts = [
            f"the scheduler and the client code on rank {rank}" if rank == self.shared_rank else f"a {role.value} on rank {rank}"
            for rank, role in sorted(service.items())
        ]
        needed = len(service)
        if self.min_workers and (self.exclusive_workers or not service):
            parts.append("one worker")
            needed += 1
        needed = max([needed, *(rank + 1 for rank in service)])
        if world_size is not None and world_size < needed:
            raise WorldTooSmallError(
                f"{stated} but at least {needed} are needed ({', '.join(parts)}); {hint(needed)}"
            )
