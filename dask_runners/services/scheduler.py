"""The scheduler rank: start the scheduler, publish its contact, serve, shut the cluster down.

The scheduler runs the runner's control channel (:mod:`dask_runners.control`):
it learns at once when a rank's process dies, and its shutdown sequence stops
every rank, workers first, before the scheduler itself closes.
"""

from __future__ import annotations

import errno
import logging
import socket

from distributed.core import Status

from .. import version_report
from ..dashboard import Dashboard, scheduler_dashboard_options
from ..exceptions import DiscoveryTimeoutError, SchedulerStartError
from ..limits import raise_open_file_limit
from ..logs import attach, detach, scheduler_log_filters
from ..roles import RankLayout
from ..security import TLSChoice
from ..state import RankState
from ..transport import Contact, Transport
from .departures import DepartedClients
from .quiesce import QuiescingControl
from .worker import ColocatedWorker

logger = logging.getLogger(__name__)


def cannot_listen(who: str, options: dict, error: OSError) -> str:
    """Why rank ``who``'s scheduler, made with ``options``, could not listen, and the fix."""
    port = options.get("port") or 0
    where = options.get("host") or (f"interface {options['interface']}" if options.get("interface") else "")
    where = f"{where}:{port}" if where else f"port {port}"
    if error.errno == errno.EADDRINUSE:
        fix = (
            f"another process on {socket.gethostname()} holds port {port}: choose a free port in "
            "scheduler_options, or give none and the system picks one"
        )
    else:
        fix = "check the host, interface and port in scheduler_options: they must name this node"
    return f"{who}: the scheduler cannot listen on {where} ({error.strerror or error}); {fix}"


class SchedulerService:
    """The scheduler rank's service.

    Parameters
    ----------
    state : RankState
        The rank's state.
    options : dict
        Keyword arguments for :class:`distributed.Scheduler`.
    tls : TLSChoice
        How the cluster is secured.
    transport : Transport
        Where the contact is published.
    hooks : Hooks
        The runner's scheduler hooks.
    notify : Notifier
        Tells the lifecycle callbacks.
    layout : RankLayout
        Which ranks the job has.
    world_size : int or None
        How many ranks the job has, if known.
    timeouts : Timeouts
        The deadlines.
    colocated : ColocatedWorker or None
        A worker to run beside the scheduler (``exclusive_workers=False``).

    Attributes
    ----------
    contact : Contact or None
        The published contact, once the scheduler runs.
    security : distributed.Security or None
        What the scheduler serves with.
    control : QuiescingControl or None
        The control channel's scheduler side, once the scheduler runs.
    log_filters : list or None
        The log filters attached while the scheduler runs
        (:func:`~dask_runners.logs.scheduler_log_filters`).
    """

    def __init__(
        self,
        state: RankState,
        *,
        options: dict,
        tls: TLSChoice,
        transport: Transport,
        hooks,
        notify,
        layout: RankLayout,
        world_size: int | None,
        timeouts,
        colocated: ColocatedWorker | None = None,
    ):
        self.state = state
        self.options = options
        self.tls = tls
        self.transport = transport
        self.hooks = hooks
        self.notify = notify
        self.layout = layout
        self.world_size = world_size
        self.timeouts = timeouts
        self.colocated = colocated
        self.contact: Contact | None = None
        self.security = None
        self.control: QuiescingControl | None = None
        self.log_filters: list | None = None

    async def start(self):
        """Start the scheduler and publish its contact, within the discovery deadline."""
        return await DiscoveryTimeoutError.unless_done_within(
            self._start(), self.timeouts.discovery, self.state.log_prefix,
            "starting the scheduler and publishing its address",
        )

    async def _start(self):
        from distributed import Scheduler

        await self.hooks.before_scheduler_start()
        raise_open_file_limit(self.world_size)
        options = scheduler_dashboard_options(self.options)
        self.security, credentials = self.tls.for_scheduler()
        if self.security is not None:
            options.setdefault("security", self.security)
            if self.security.require_encryption:
                options.setdefault("protocol", "tls")
        scheduler = Scheduler(**options)
        try:
            await scheduler
        except RuntimeError as e:
            if not isinstance(e.__cause__, OSError):
                raise
            raise SchedulerStartError(cannot_listen(self.state.log_prefix, options, e.__cause__)) from e.__cause__
        attach(self._log_filters(scheduler))
        DepartedClients(scheduler).install()
        expected = self.layout.control_members(self.world_size)
        self.control = control = QuiescingControl(
            scheduler, expected, self.timeouts.shutdown, self.timeouts.lease, self.layout.n_workers(self.world_size)
        )
        control.install()
        self.state.stop_service = self._close_on_signal
        if self.layout.client:
            control.expect_client(self.timeouts.discovery, self.layout.client_rank)
        if self.security is None:
            logger.warning(
                "%s: TLS is off (security=False, or a runner that cannot share "
                "credentials): anyone who can reach %s can run code as you",
                self.state.log_prefix,
                scheduler.address,
            )
        self.contact = Contact(scheduler.address, credentials, dashboard=Dashboard.of(scheduler))
        await self.transport.publish(self.contact, scheduler)
        version_report.make_in_background()  # idle until the first connection, which needs it
        await self.hooks.set_scheduler_address(scheduler)
        return scheduler

    def _log_filters(self, scheduler) -> list:
        """This scheduler's log filters (:func:`~dask_runners.logs.scheduler_log_filters`), made once."""
        if self.log_filters is None:
            self.log_filters = scheduler_log_filters(scheduler)
        return self.log_filters

    async def _close_on_signal(self) -> None:
        self.control.quiet = False  # every rank may be leaving on the same signal
        self.control.request_close(
            self.state.signal_exit, "the scheduler rank received a signal", wait_for_stragglers=False
        )

    async def serve(self, scheduler, worker_name) -> int:
        """Serve until the cluster shuts down; return the rank's exit status."""
        state, control = self.state, self.control
        state.status = Status.running
        try:
            if self.colocated is not None:
                await self.colocated.start(scheduler.address, worker_name, self.security)
                control.on_drain.append(self.colocated.close)
                self.notify("on_worker_start")
            await self.hooks.on_scheduler_start(scheduler)
            self.notify("on_scheduler_start")
            await scheduler.finished()
        finally:
            await scheduler.close(reason=control.reason)
            detach(self._log_filters(scheduler))
            state.status = Status.closed
            self.transport.withdraw()
            await self.hooks.on_scheduler_close()
        state.client_lost = control.client_lost
        self.notify("on_scheduler_stop", exit_code=control.exit_code)
        return control.exit_code
