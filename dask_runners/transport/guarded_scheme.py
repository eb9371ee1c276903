"""The address a TLS cluster's scheduler file shows to readers that cannot use its credentials.

The scheduler file is also an ordinary distributed scheduler file: it has
``type`` and ``address`` keys. On a cluster without TLS, distributed's
``Client(scheduler_file=...)`` or ``dask worker --scheduler-file`` reach it
as they reach any scheduler. On the job's own TLS (the default), they cannot:
the credentials are in the file, and distributed does not read them. Left
with a plain ``tls://`` address they would fail deep in distributed with
"TLS expects a ``ssl_context`` argument".

So the file's ``address`` is written under its own scheme,
``dask-runners-tls://host:port``. distributed finds that scheme's backend
through the ``distributed.comm.backends`` entry point that this package
declares, and :class:`GuardedTLSBackend` answers any connection with an
error that says to use :func:`dask_runners.connect`. Our own readers turn
the address back into ``tls://`` (:func:`unguarded`).
"""

from __future__ import annotations

from distributed.comm.core import Connector
from distributed.comm.registry import Backend

from ..exceptions import CredentialsRequiredError

#: The scheme of a TLS cluster's address in its scheduler file.
SCHEME = "dask-runners-tls"
_PREFIX = f"{SCHEME}://"


def guarded(address: str) -> str:
    """``address`` (``tls://host:port``) as the scheduler file shows it."""
    return _PREFIX + address.split("://", 1)[1]


def unguarded(address):
    """The scheduler file's ``address`` as the scheduler serves it (other values unchanged)."""
    if isinstance(address, str) and address.startswith(_PREFIX):
        return "tls://" + address[len(_PREFIX) :]
    return address


def _refuse(location: str) -> CredentialsRequiredError:
    return CredentialsRequiredError(
        f"the scheduler at tls://{location} runs on its job's own TLS credentials, which are in its "
        "scheduler file; distributed's Client(scheduler_file=...) does not read them. Connect with "
        "client = dask_runners.connect(scheduler_file), which does"
    )


class _RefusingConnector(Connector):
    async def connect(self, address, deserialize=True, **connection_args):
        raise _refuse(address)


class GuardedTLSBackend(Backend):
    """The ``dask-runners-tls`` scheme: every connection fails with the way to connect."""

    def get_connector(self):
        return _RefusingConnector()

    def get_listener(self, loc, handle_comm, deserialize, **connection_args):
        raise _refuse(loc)

    def get_address_host(self, loc):
        return loc.rpartition(":")[0]

    def get_address_host_port(self, loc):
        host, _, port = loc.rpartition(":")
        return host, int(port)

    def resolve_address(self, loc):
        return loc

    def get_local_address_for(self, loc):
        raise _refuse(loc)
