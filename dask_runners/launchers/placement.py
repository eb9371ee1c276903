"""Where the ranks of a communicator sit, from the host names they exchanged.

Open MPI's ``mpirun`` and MPICH's ``mpiexec`` put neither the host list nor a
node index in the environment, so a context read from the environment alone
cannot say where rank 0 is. An :class:`~dask_runners.MPIRunner` asks its
communicator instead: every rank contributes a :class:`RankRecord` (its host
name, the local rank its launcher gave it, its rendezvous port) to one
all-gather at construction, and :func:`with_exchange` completes the job
context from the records. This module holds the pure parts: the fixed-size
record, the placement a list of host names implies, and the rule that merges
it with what the launcher said.

What wins
---------
* The rendezvous port is rank 0's, on every rank.
* A launcher that places the process on a named node itself (a Slurm step
  gives the hosts and ``SLURM_NODEID``) keeps its hosts, node and local
  numbers: they are the names the batch system knows.
* Otherwise the communicator's view fills in the hosts (in order of their
  lowest rank, so rank 0's host is first), the node rank and count, the local
  rank and size, and ``MASTER_ADDR`` (rank 0's host), unless ``MASTER_ADDR``
  is set. Under a sub-communicator the context is the communicator's numbering
  alone, so everything comes from the communicator.
* If the launcher numbers the ranks on a node (``OMPI_COMM_WORLD_LOCAL_RANK``,
  ``MPI_LOCALRANKID``) differently from the host names on any rank, the names
  do not tell the nodes apart (containers with a host name of their own,
  nodes that share a name): the launcher's numbers stay, the exchange
  fills in no hosts, and :func:`mismatches` says where.

:func:`dask_runners.current_job` cannot run a collective (one rank alone would
wait forever), so it reuses the records an ``MPIRunner`` of this process
exchanged over a communicator congruent with ``MPI_COMM_WORLD``
(:func:`remember`), and otherwise reads the environment alone.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from ..job import JobContext

__all__ = [
    "HOST_FIELD",
    "RECORD_SIZE",
    "Placement",
    "RankRecord",
    "decode_records",
    "exchanged_context",
    "forget",
    "launcher_places",
    "mismatches",
    "place",
    "remember",
    "with_exchange",
]

#: Bytes for a host name in a record: DNS names have at most 253 characters.
HOST_FIELD = 256
_RECORD = struct.Struct(f"<{HOST_FIELD}sii")
#: The size of one rank's record in the all-gather.
RECORD_SIZE = _RECORD.size


class RankRecord(NamedTuple):
    """What one rank contributes to the host exchange."""

    host: str
    local_rank: int | None  # as the launcher numbered it, if it did
    master_port: int

    def encode(self) -> bytes:
        """The fixed-size record (:data:`RECORD_SIZE` bytes)."""
        name = self.host.encode()
        if not name or len(name) > HOST_FIELD:
            raise ValueError(f"host name {self.host!r} must have 1 to {HOST_FIELD} bytes")
        local = -1 if self.local_rank is None else self.local_rank
        return _RECORD.pack(name, local, self.master_port)


def decode_records(data: bytes) -> list[RankRecord]:
    """The records of every rank, in rank order, from the all-gathered bytes."""
    if len(data) % RECORD_SIZE:
        raise ValueError(f"{len(data)} bytes is not a whole number of {RECORD_SIZE}-byte records")
    records = []
    for name, local, port in _RECORD.iter_unpack(data):
        records.append(RankRecord(name.rstrip(b"\0").decode(), None if local < 0 else local, port))
    return records


class Placement(NamedTuple):
    """Where one rank sits, as the host names of all ranks imply."""

    hosts: tuple[str, ...]
    node_rank: int
    local_rank: int
    local_world_size: int

    @property
    def num_nodes(self) -> int:
        return len(self.hosts)


def place(rank_hosts: Sequence[str], rank: int) -> Placement:
    """The placement of ``rank`` given the host of every rank, in rank order.

    Hosts are numbered in order of their lowest rank, so node 0 is rank 0's;
    the ranks of a host are numbered in rank order.

    >>> place(["a", "b", "a", "b"], 2)
    Placement(hosts=('a', 'b'), node_rank=0, local_rank=1, local_world_size=2)
    """
    if not 0 <= rank < len(rank_hosts):
        raise ValueError(f"rank {rank} is outside the {len(rank_hosts)} ranks given")
    hosts = tuple(dict.fromkeys(rank_hosts))
    mine = rank_hosts[rank]
    local_rank = sum(1 for host in rank_hosts[:rank] if host == mine)
    return Placement(hosts, hosts.index(mine), local_rank, sum(1 for host in rank_hosts if host == mine))


def mismatches(records: Sequence[RankRecord]) -> list[tuple[int, int, int]]:
    """``(rank, launcher's local rank, local rank by host name)`` wherever they differ."""
    hosts = [record.host for record in records]
    seen: dict[str, int] = {}
    found = []
    for rank, (host, record) in enumerate(zip(hosts, records)):
        by_name = seen.get(host, 0)
        seen[host] = by_name + 1
        if record.local_rank is not None and record.local_rank != by_name:
            found.append((rank, record.local_rank, by_name))
    return found


def launcher_places(job: JobContext) -> bool:
    """Whether the launcher names this process's node itself (hosts and a node rank), as ``srun`` does."""
    return job.node_rank is not None and bool(job.hosts)


def with_exchange(
    job: JobContext, records: Sequence[RankRecord], rank: int, environ: Mapping[str, str]
) -> JobContext:
    """``job`` completed with the records of every rank of its communicator (see the module docstring).

    Parameters
    ----------
    job : JobContext
        This rank's context as the launcher's environment gives it.
    records : sequence of RankRecord
        Every rank's record, in the communicator's rank order.
    rank : int
        This rank in the communicator.
    environ : mapping
        The environment: ``MASTER_ADDR`` set there wins over rank 0's host.
    """
    master_port = records[0].master_port
    if launcher_places(job) or mismatches(records):
        return dataclasses.replace(job, master_port=master_port)
    placement = place([record.host for record in records], rank)
    return dataclasses.replace(
        job,
        hosts=placement.hosts,
        node_rank=placement.node_rank,
        num_nodes=placement.num_nodes,
        local_rank=placement.local_rank,
        local_world_size=placement.local_world_size,
        master_addr=environ.get("MASTER_ADDR") or placement.hosts[0],
        master_port=master_port,
    )


# The records of the last exchange over a communicator congruent with
# MPI_COMM_WORLD in this process, with this process's rank.
_remembered: tuple[int, tuple[RankRecord, ...]] | None = None


def remember(rank: int, records: Sequence[RankRecord]) -> None:
    """Keep an exchange over the whole MPI world for :func:`exchanged_context`."""
    global _remembered
    _remembered = (rank, tuple(records))


def forget() -> None:
    """Drop the remembered exchange (for tests)."""
    global _remembered
    _remembered = None


def exchanged_context(job: JobContext, environ: Mapping[str, str]) -> JobContext:
    """``job`` completed by the remembered exchange, when it numbers this process alike; else ``job``."""
    if _remembered is None:
        return job
    rank, records = _remembered
    if (job.rank, job.world_size) != (rank, len(records)):
        return job
    return with_exchange(job, records, rank, environ)
