"""The scheduler's contact by an MPI broadcast over the job's communicator."""

from __future__ import annotations

import asyncio
import json

from ..config import backoff_delays
from . import Contact, Transport


class BroadcastTransport(Transport):
    """Broadcast the contact from the scheduler's rank over ``comm``.

    The broadcast is non-blocking (``Ibcast``) and polled with backoff, so
    the event loop keeps running while a rank waits. The credentials travel
    in memory and are never written to a file of ours.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The communicator whose ranks form the cluster.
    root : int
        The scheduler's rank in ``comm``.
    also_to : Transport, optional
        Also publish there (a scheduler file for clients outside the job).
    """

    def __init__(self, comm, root: int, also_to: Transport | None = None):
        self.comm = comm
        self.root = root
        self.also_to = also_to

    async def publish(self, contact: Contact, scheduler) -> None:
        if self.also_to is not None:
            await self.also_to.publish(contact, scheduler)
        await self._broadcast(json.dumps(contact.to_dict()).encode())

    async def prepare(self, publishes: bool, credentials_required: bool) -> None:
        if publishes and self.also_to is not None:
            await self.also_to.prepare(publishes, credentials_required)

    async def discover(self) -> Contact:
        return Contact.from_dict(json.loads(await self._broadcast(b"")))

    def withdraw(self) -> None:
        if self.also_to is not None:
            self.also_to.withdraw()

    def describe(self) -> str:
        return f"the scheduler address broadcast from MPI rank {self.root}"

    async def _broadcast(self, payload: bytes) -> bytes:
        """Broadcast ``payload`` from the root, length first."""
        from mpi4py import MPI

        length = bytearray(len(payload).to_bytes(8, "little"))
        await _completion(self.comm.Ibcast([length, MPI.BYTE], root=self.root))
        size = int.from_bytes(length, "little")
        buffer = bytearray(payload) if self.comm.Get_rank() == self.root else bytearray(size)
        await _completion(self.comm.Ibcast([buffer, MPI.BYTE], root=self.root))
        return bytes(buffer)


async def _completion(request) -> None:
    """Poll a non-blocking MPI request without blocking the event loop."""
    delays = backoff_delays(first=0.001, factor=1.5, cap=0.01)
    while not request.Test():
        await asyncio.sleep(next(delays))
