"""The dashboard: where it listens, and how the user reaches it.

distributed serves its dashboard on every interface by default, over plain
HTTP and without a login; its ``/info`` pages show the workers' logs. On a
shared cluster that is anybody's view of the job, whatever the cluster's
TLS. A dask_runners scheduler therefore listens for the dashboard on the
loopback interface of its node (port 8787, or any free port when another
job holds it), and the workers' own HTTP servers on loopback too; the user
reaches it through an SSH tunnel, whose command the ready line gives.

``runners.dashboard.public: true`` (or a ``dashboard_address`` of one's own
in ``scheduler_options``) opens it to the network instead.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

import dask.config

DEFAULT_PORT = 8787
LOOPBACK = "127.0.0.1"


def is_public() -> bool:
    """Whether the dashboard listens on every interface (``runners.dashboard.public``)."""
    return bool(dask.config.get("runners.dashboard.public"))


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def scheduler_dashboard_options(options: dict) -> dict:
    """``options`` for ``distributed.Scheduler``, with the dashboard on loopback (or public) at 8787.

    Port 8787, or any free port when another process holds it (another
    job's scheduler on the same node); a ``dashboard_address`` of the
    user's is kept as it is.
    """
    options = dict(options)
    if "dashboard_address" in options:
        return options
    host = "" if is_public() else LOOPBACK
    # Without the dashboard (dashboard=False) the HTTP server still serves /info and /metrics.
    wanted = options.get("dashboard", True) is not False and port_is_free(host or "0.0.0.0", DEFAULT_PORT)
    options["dashboard_address"] = f"{host}:{DEFAULT_PORT if wanted else 0}"
    return options


def worker_dashboard_options(options: dict) -> dict:
    """``options`` for a worker, with its HTTP server (``/health``, ``/metrics``) on loopback unless public or set."""
    options = dict(options)
    if "dashboard_address" not in options and not is_public():
        options["dashboard_address"] = f"{LOOPBACK}:0"
    return options


class Dashboard(NamedTuple):
    """Where a scheduler's dashboard listens.

    Attributes
    ----------
    node : str
        The host name of the scheduler's node.
    host : str
        The address the dashboard listens on.
    port : int
        Its port.
    """

    node: str
    host: str
    port: int

    @classmethod
    def of(cls, scheduler) -> Dashboard | None:
        """The dashboard of a running ``scheduler``, or ``None`` if it has none."""
        server = scheduler.services.get("dashboard")
        if server is None:
            return None
        return cls(socket.gethostname(), server.address, server.port)

    @property
    def loopback(self) -> bool:
        """Whether only processes on the scheduler's node reach it."""
        return self.host.startswith("127.") or self.host == "::1"

    @property
    def link(self) -> str:
        """The dashboard's address, as the user's browser reaches it (through the tunnel if on loopback)."""
        host = "localhost" if self.loopback else self.node
        return f"http://{host}:{self.port}/status"

    @property
    def tunnel(self) -> str | None:
        """The ``ssh`` command that reaches a loopback dashboard from another machine."""
        if not self.loopback:
            return None
        return f"ssh -L {self.port}:localhost:{self.port} {self.node}"

    def to_dict(self) -> dict:
        """The dashboard as JSON-ready data."""
        return self._asdict()

    @classmethod
    def from_dict(cls, data: dict | None) -> Dashboard | None:
        """The dashboard :meth:`to_dict` wrote; ``None`` for anything else."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["node"]), str(data["host"]), int(data["port"]))
        except (KeyError, TypeError, ValueError):
            return None
