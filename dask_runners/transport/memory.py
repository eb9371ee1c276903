"""The scheduler's contact through a future shared by the ranks of one process."""

from __future__ import annotations

import asyncio

from . import Contact, Transport


class MemoryTransport(Transport):
    """Pass the contact in memory, between runners on one event loop (tests)."""

    def __init__(self):
        self._contact: asyncio.Future[Contact] | None = None

    @property
    def contact(self) -> asyncio.Future[Contact]:
        """The contact, once published; made on first use, on the running loop."""
        if self._contact is None:
            self._contact = asyncio.get_running_loop().create_future()
        return self._contact

    async def publish(self, contact: Contact, scheduler) -> None:
        self.contact.set_result(contact)

    async def discover(self) -> Contact:
        return await asyncio.shield(self.contact)

    def describe(self) -> str:
        return "the scheduler contact of the in-process world"
