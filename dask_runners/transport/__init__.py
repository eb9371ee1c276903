"""How the scheduler's contact travels from the scheduler rank to every other rank.

The scheduler rank *publishes* a :class:`Contact` (the scheduler's address
and, under per-job TLS, the job's credentials) and every other rank
*discovers* it: one value, end to end. A :class:`Transport` carries it:

* :class:`~dask_runners.transport.scheduler_file.SchedulerFileTransport`: a
  file on the shared filesystem (:class:`~dask_runners.SLURMRunner`,
  :class:`~dask_runners.SchedulerFileRunner`);
* :class:`~dask_runners.transport.broadcast.BroadcastTransport`: an MPI
  broadcast (:class:`~dask_runners.MPIRunner`);
* :class:`~dask_runners.transport.memory.MemoryTransport`: a future shared by
  the ranks of an in-process test world;
* :class:`FixedAddress`: an address given up front (workers joining a
  scheduler started elsewhere);
* :class:`AddressHooks`: a runner's own ``get_scheduler_address`` hook, for a
  runner written with the hooks alone (see :doc:`/writing-runners`); it
  carries the address without credentials.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

from ..dashboard import Dashboard
from ..security import JobCredentials


class Contact(NamedTuple):
    """How to reach a running scheduler: what the scheduler rank publishes.

    Attributes
    ----------
    address : str
        The scheduler's address, such as ``"tls://10.0.0.5:40123"``.
    credentials : JobCredentials or None
        The job's TLS credentials, under per-job TLS.
    serves_control : bool
        Whether the scheduler is a dask_runners one, which serves the
        runner's control channel; workers that join it from another job are
        then stopped in its shutdown like its own.
    dashboard : Dashboard or None
        Where the scheduler's dashboard listens, if it has one.
    """

    address: str
    credentials: JobCredentials | None = None
    serves_control: bool = True
    dashboard: Dashboard | None = None

    def to_dict(self) -> dict:
        """The contact as JSON-ready data (credentials included)."""
        credentials = None if self.credentials is None else self.credentials.to_dict()
        dashboard = None if self.dashboard is None else self.dashboard.to_dict()
        return {"address": self.address, "credentials": credentials, "dashboard": dashboard}

    @classmethod
    def from_dict(cls, data: dict, serves_control: bool = True) -> Contact:
        """The contact that :meth:`to_dict` wrote."""
        credentials = JobCredentials.from_dict(data.get("credentials"))
        return cls(data["address"], credentials, serves_control, Dashboard.from_dict(data.get("dashboard")))


class Transport(abc.ABC):
    """Carries the scheduler's :class:`Contact` from the scheduler rank to the others."""

    #: Whether the contact's credentials reach the other ranks, so that the
    #: job can run on per-job TLS.
    carries_credentials = True

    @abc.abstractmethod
    async def publish(self, contact: Contact, scheduler) -> None:
        """On the scheduler rank: make ``contact`` known to the other ranks."""

    @abc.abstractmethod
    async def discover(self) -> Contact:
        """On every other rank: wait for the contact and return it.

        Wait as long as it takes; the runner applies the discovery deadline.
        """

    async def prepare(self, publishes: bool, credentials_required: bool) -> None:
        """On every rank, before the contact is published or awaited: check what the transport needs.

        ``publishes`` on the scheduler rank; ``credentials_required`` when
        the job runs on per-job TLS, so that a contact without credentials
        must not be used. Raise a named error when the transport cannot work.
        """

    def describe(self) -> str:
        """What a waiting rank waits for, for the discovery deadline's message."""
        return "the scheduler address"

    def report_failure(self, error: str) -> None:
        """On the scheduler rank, which could not start: tell the waiting ranks ``error``."""

    def withdraw(self) -> None:
        """On the scheduler rank, after the scheduler closed: take the contact back."""


class FixedAddress(Transport):
    """A scheduler address known up front: the scheduler was started elsewhere."""

    carries_credentials = False

    def __init__(self, address: str):
        self.address = address

    async def publish(self, contact: Contact, scheduler) -> None:
        raise RuntimeError("a fixed address is only read: no scheduler rank publishes it")

    async def discover(self) -> Contact:
        return Contact(self.address, serves_control=False)

    def describe(self) -> str:
        return f"the scheduler at {self.address}"


class AddressHooks(Transport):
    """The address found by a runner's ``get_scheduler_address`` hook; no credentials.

    The runner's ``set_scheduler_address`` hook publishes it, as the
    lifecycle calls that hook on every scheduler rank.
    """

    carries_credentials = False

    def __init__(self, get_scheduler_address):
        self.get_scheduler_address = get_scheduler_address

    async def publish(self, contact: Contact, scheduler) -> None:
        pass

    async def discover(self) -> Contact:
        return Contact(await self.get_scheduler_address(), serves_control=False)
