"""The scheduler's contact by an MPI broadcast over the job's communicator."""

from __future__ import annotations

import asyncio
import json

from ..config import backoff_delays
from . import Contact, Transport

#: Bytes in the first broadcast: a length and a contact with its credentials.
FRAME = 4096

#: Longest wait, in seconds, between two polls of a broadcast in progress.
#: Shorter would move the broadcast faster, but at dozens of ranks per core
#: the polls would take the CPU that the scheduler rank needs to start.
POLL_CAP = 0.01


class BroadcastTransport(Transport):
    """Broadcast the contact from the scheduler's rank over ``comm``.

    The broadcast is non-blocking (``Ibcast``) and polled with backoff, so
    the event loop keeps running while a rank waits. A contact fits in one
    broadcast of :data:`FRAME` bytes. The credentials travel
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
        """Broadcast ``payload`` from the root: one frame, and the rest if it does not fit.

        The frame holds the length and the first :data:`FRAME` bytes less
        eight, which a contact fits; every rank learns the length from it,
        so all agree whether a second broadcast follows.
        """
        from mpi4py import MPI

        frame = bytearray(FRAME)
        root = self.comm.Get_rank() == self.root
        if root:
            frame[:8] = len(payload).to_bytes(8, "little")
            frame[8 : 8 + len(payload)] = payload[: FRAME - 8]
        await _completion(self.comm.Ibcast([frame, MPI.BYTE], root=self.root))
        size = int.from_bytes(frame[:8], "little")
        if size <= FRAME - 8:
            return bytes(frame[8 : 8 + size])
        rest = bytearray(payload[FRAME - 8 :]) if root else bytearray(size - (FRAME - 8))
        await _completion(self.comm.Ibcast([rest, MPI.BYTE], root=self.root))
        return bytes(frame[8:]) + bytes(rest)


async def _completion(request) -> None:
    """Poll a non-blocking MPI request without blocking the event loop.

    A non-blocking broadcast moves down its tree only as each rank polls,
    so every level adds up to one polling interval (see :data:`POLL_CAP`).
    """
    delays = backoff_delays(first=0.001, factor=1.5, cap=POLL_CAP)
    while not request.Test():
        await asyncio.sleep(next(delays))
