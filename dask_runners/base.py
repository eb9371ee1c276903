"""The runner base class: the lifecycle of one process of the job.

The same script runs in every process of a job. Each process builds a runner;
the runner asks :meth:`BaseRunner.get_role` what this process is, and then:

* the **scheduler** rank serves the scheduler
  (:class:`~dask_runners.services.scheduler.SchedulerService`) until the
  cluster shuts down, and leaves the process;
* a **worker** rank discovers the scheduler's contact, serves a worker
  (:class:`~dask_runners.services.worker.WorkerService`) until told to stop,
  and leaves the process;
* the **client** rank discovers the contact and returns from ``__enter__``,
  so it alone runs the body of the ``with`` block
  (:class:`~dask_runners.services.client.ClientSession`). Leaving the body
  shuts the whole cluster down.

Scheduler and worker ranks never return from entering the runner: they leave
the process from :meth:`BaseRunner.exit_process`, the one place where a
process of the job ends. How the contact travels is the runner's
:attr:`~BaseRunner.transport` (:mod:`dask_runners.transport`); what a signal
does is :class:`~dask_runners.signals.SignalPolicy`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import NoReturn

import dask.config
from dask.utils import parse_timedelta
from distributed.core import Status
from distributed.utils import LoopRunner, SyncMethodMixin
from tornado.ioloop import IOLoop

from . import version_report
from .callbacks import outcome
from .config import Timeouts
from .channel import ControlChannel
from .unreachable import cancel_pending, policy as unreachable_policy
from .exceptions import ClusterStoppedError, DiscoveryTimeoutError, JobInterrupted
from .exit_status import exit_status
from .launchers import launch_facts
from .logs import configure_rank_logging
from .roles import RankLayout, Role
from .security import TLSChoice, connection_args
from .services import Hooks, Notifier
from .services.worker import ColocatedWorker, WorkerService, WorkerSpec, pin_gpu
from .signals import SignalHandlers, SignalPolicy, let_signals_end_the_process
from .start_failure import one_traceback_per_job
from .state import RankState
from .transport import AddressHooks, Contact, Transport
from .worker_setup import as_environment

logger = logging.getLogger(__name__)


class _StartInterrupted(Exception):
    """A signal ended this rank's start; it leaves with the signal's exit code."""


class _StoppedBeforeStart(Exception):
    """The cluster stopped before the client code began.

    It carries the :class:`ClusterStoppedError` to raise; that one is a
    ``SystemExit``, which must not be raised inside the event loop (asyncio
    lets it escape the loop, ending the loop's thread).
    """

    def __init__(self, failure: ClusterStoppedError):
        super().__init__(str(failure))
        self.failure = failure


class BaseRunner(SyncMethodMixin):
    """Start a Dask cluster from the processes of one job.

    A subclass sets :attr:`rank` and :attr:`world_size` and says where the
    scheduler is: with a :attr:`transport`, or with the hooks
    :meth:`get_scheduler_address` (and :meth:`set_scheduler_address`).
    :meth:`get_role` answers from :attr:`rank` by default; every other hook
    has a working default.

    Parameters
    ----------
    scheduler : bool
        Whether one process of the job runs the scheduler (``scheduler_rank``).
        When ``False`` the workers join an existing scheduler.
    client : bool
        Whether one process runs the client code (``client_rank``). When
        ``False`` every other rank is a worker: a batch cluster that serves
        outside clients until one of them shuts it down.
    scheduler_rank : int
        The rank that runs the scheduler; 0 by default.
    client_rank : int, optional
        The rank that runs the client code; by default the lowest rank that
        is not the scheduler's (1, or 0 without a scheduler rank).
    exclusive_workers : bool
        ``True`` (the default): workers run only on the other ranks.
        ``False``: the scheduler rank and the client rank each run a worker
        too, as dask-mpi's ``exclusive_workers=False`` does.
    worker_name : str, optional
        Prefix of the workers' names: each is named ``{worker_name}-{rank}``
        (dask-mpi's ``worker_name``). By default a worker is named by its rank.
    scheduler_options : dict, optional
        Keyword arguments for :class:`distributed.Scheduler`.
    worker_class : type or str, optional
        The worker class or its import path, for example
        ``"distributed.Nanny"``. Default :class:`distributed.Worker`.
    worker_options : dict, optional
        Keyword arguments for the worker class.
    worker_setup : callable or WorkerEnvironment, optional
        Build a per-worker environment (a dict of models, datasets, ...)
        with this on each worker before it joins the cluster; tasks read it
        with :func:`~dask_runners.worker_environment`, and
        :func:`~dask_runners.parallel_for` passes it to its function. See
        :mod:`dask_runners.worker_setup`.
    timeouts : dict, optional
        Deadlines in seconds by name (``discovery``, ``workers``,
        ``shutdown``, ``lease``); see :class:`dask_runners.config.Timeouts`.
    security : bool or distributed.Security, optional
        ``True`` (the default, from the dask config key ``runners.security``):
        the scheduler rank makes TLS credentials for this job and the runner
        hands them to the job's processes only (see
        :mod:`dask_runners.security`). ``False``: plain TCP, with a warning.
        A ``distributed.Security``: used as it is, on every rank.
    callbacks : sequence, optional
        Objects told of lifecycle events on every rank; see
        :mod:`dask_runners.callbacks`.
    interface : str, optional
        The network interface (``"ib0"``) for the scheduler and the workers;
        to choose per role, put ``interface`` in ``scheduler_options`` or
        ``worker_options`` instead.
    pin_gpus : bool, optional
        Give each worker rank one of the GPUs it can see, by local rank, by
        setting ``CUDA_VISIBLE_DEVICES`` before its worker starts. Default:
        the dask config key ``runners.pin-gpus`` (``False``).
    preemption_signal : int or None
        The signal that warns of preemption (``sbatch --signal=USR2@90``);
        ``None`` to leave it alone. See :mod:`dask_runners.signals`.
    signal_exit_codes : dict, optional
        Exit codes by signal number that replace the usual ones (143 for
        ``SIGTERM``, ...): ``dask-runner serve`` passes ``{SIGTERM: 0}``,
        since there a signal is the requested way to stop.
    on_preemption : callable, optional
        Called as ``on_preemption(runner)`` on the client rank's main thread
        when the preemption signal arrives; the other ranks then ignore it.
        Without it, the cluster closes and every rank exits with 75.
    asynchronous : bool
        Set to ``True`` to use the runner with ``async with`` in a running
        event loop. An asynchronous runner installs no signal handlers: the
        application that owns the loop owns the signals.
    loop : tornado.ioloop.IOLoop, optional
        The loop to run on when synchronous; a new one in a thread by default.

    Attributes
    ----------
    role : Role
        This process's role, known once the runner has started.
    rank : int or None
        This process's rank in the job.
    world_size : int or None
        How many processes the job has.
    job : JobContext or None
        Where this process sits in its job.
    transport : Transport or None
        How the scheduler's contact reaches the other ranks
        (:mod:`dask_runners.transport`); ``None`` for a runner written with
        the seed hooks alone.
    scheduler_address : str or None
        The scheduler's address, known once the runner has started.
    credentials : JobCredentials or None
        The job's TLS credentials: made on the scheduler rank, received with
        the address on the others (see :mod:`dask_runners.security`).
    exit_code : int or None
        On a scheduler or worker rank whose :meth:`exit_process` keeps the
        process: the status the rank's service ended with.
    client_lost : bool
        On a scheduler or worker rank, once its service has stopped: whether
        the stop came because the client rank's process died. Such a job
        cannot end with every rank meeting again; :class:`MPIRunner` then
        aborts the job instead of waiting in ``MPI_Finalize``.
    """

    rank: int | None = None
    world_size: int | None = None
    job = None
    transport: Transport | None = None

    def __init__(
        self,
        *,
        scheduler: bool = True,
        client: bool = True,
        scheduler_rank: int = 0,
        client_rank: int | None = None,
        exclusive_workers: bool = True,
        worker_name: str | None = None,
        scheduler_options: dict | None = None,
        worker_class: type | str | None = None,
        worker_options: dict | None = None,
        worker_setup=None,
        timeouts: dict | None = None,
        security=None,
        callbacks=(),
        interface: str | None = None,
        pin_gpus: bool | None = None,
        preemption_signal: int | None = signal.SIGUSR2,
        on_preemption=None,
        signal_exit_codes: dict | None = None,
        asynchronous: bool = False,
        loop: IOLoop | None = None,
    ):
        self.layout = RankLayout(scheduler, client, scheduler_rank, client_rank, exclusive_workers)
        self.worker_name = worker_name
        self.scheduler_options = dict(scheduler_options or {})
        self.worker_class = worker_class or "distributed.Worker"
        self.worker_options = dict(worker_options or {})
        self.worker_setup = None if worker_setup is None else as_environment(worker_setup)
        if interface is not None:
            self.scheduler_options.setdefault("interface", interface)
            self.worker_options.setdefault("interface", interface)
        self.callbacks = list(callbacks)
        self.pin_gpus = dask.config.get("runners.pin-gpus") if pin_gpus is None else pin_gpus
        self.timeouts = Timeouts.resolve(timeouts)
        unreachable_policy()  # a bad runners.unreachable fails now, not when a node is lost
        self._security_option = security
        #: The job's credentials, if this rank made them before its start (see MPIRunner).
        self._made_credentials = None
        self.state = RankState()
        preempted = None if on_preemption is None else (lambda: on_preemption(self))
        self._policy = SignalPolicy(self.state, preemption_signal, preempted, signal_exit_codes)
        self._asynchronous = asynchronous
        self._loop_arg = loop
        self._loop_runner: LoopRunner | None = None
        self.loop: IOLoop | None = loop
        self.contact: Contact | None = None
        #: The ``distributed.Security`` this rank connects with, once started.
        self.security = security if not isinstance(security, bool) else None
        self.exit_code: int | None = None
        #: This rank's own log file (``runners.logging.directory``), if it writes one.
        self.log_file = None
        self._carrier: Transport | None = None
        self._service = None  # the scheduler's rank: its SchedulerService
        self._session = None  # the client's rank: its ClientSession
        self._start_task: asyncio.Task | None = None
        self._signals: SignalHandlers | None = None
        self._told_on_begin = False

    @classmethod
    def for_launcher(cls, launcher: str, environ=None, **kwargs) -> BaseRunner:
        """The runner :func:`~dask_runners.Runner` makes for ``launcher`` and ``environ``.

        By default ``cls(**kwargs)``: a runner that reads where it is from
        elsewhere (an MPI communicator) needs neither.
        """
        return cls(**kwargs)

    # -- the hooks (see docs/writing-runners.rst) -------------------------------
    async def get_role(self) -> Role:
        """Decide whether this process is the scheduler, the client or a worker.

        By default :meth:`role_for_rank` of :attr:`rank`.
        """
        return self.role_for_rank(self.rank)

    async def get_scheduler_address(self) -> str:
        """Return the scheduler's address; called on every rank but the scheduler.

        Wait for it as long as needed: the runner applies the discovery
        deadline around this call. A runner with a :attr:`transport` need
        not implement it.
        """
        return (await self.transport.discover()).address

    async def set_scheduler_address(self, scheduler) -> None:
        """Publish the running ``scheduler``'s address to the other ranks."""

    async def get_worker_name(self) -> str | int | None:
        """The worker's name in the cluster; the rank by default."""
        return self.rank

    async def before_scheduler_start(self) -> None:
        """Called on the scheduler rank before the scheduler starts."""

    async def before_worker_start(self) -> None:
        """Called on a worker rank before the worker starts."""

    async def before_client_start(self) -> None:
        """Called on the client rank before the client code runs."""

    async def on_scheduler_start(self, scheduler) -> None:
        """Called on the scheduler rank once the scheduler is running."""

    async def on_worker_start(self, worker) -> None:
        """Called on a worker rank once the worker (or nanny) is running."""

    async def on_scheduler_close(self) -> None:
        """Called on the scheduler rank after the scheduler has closed."""

    def exit_process(self, exit_code: int) -> NoReturn:
        """Leave the process of a scheduler or worker rank.

        This is the one place where a scheduler or worker rank ends. By then
        its service is closed and its connections are shut; what remains is
        to flush output and go. The interpreter's own teardown (atexit
        handlers, garbage collection of every module) is skipped: it does
        nothing useful here and takes a large share of a short job's time.

        A subclass may return instead, to keep the process (dask-mpi's
        ``initialize(exit=False)``): entering the runner then returns on
        that rank once its service has closed, with :attr:`role` saying what
        the rank was and :attr:`exit_code` how its service ended.
        """
        cancel_pending()  # a rank that gave up on an unreachable one frees the allocation
        let_signals_end_the_process()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)

    def abort_start(self, exc: BaseException) -> None:
        """Called when this rank fails before the cluster is up.

        The exception is raised after this returns. By default the rank
        that runs the scheduler reports the failure through its transport, so that the waiting
        ranks fail at once with the reason. A runner whose launcher would
        leave the other ranks waiting (MPI) ends the job here.
        """
        hosts_scheduler = self.role is Role.scheduler or self._service is not None
        if hosts_scheduler and self._carrier is not None:
            self._carrier.report_failure(f"{type(exc).__name__}: {exc}")

    # -- what the rank is ----------------------------------------------------------
    def role_for_rank(self, rank: int) -> Role:
        """The role of ``rank``: ``scheduler_rank``, ``client_rank``, else a worker."""
        return self.layout.role_of(rank)

    @property
    def n_workers(self) -> int | None:
        """How many workers the job has, if the world size is known."""
        return self.layout.n_workers(self.world_size)

    scheduler = property(lambda self: self.layout.scheduler, doc="Whether a rank runs the scheduler.")
    client = property(lambda self: self.layout.client, doc="Whether a rank runs the client code.")
    scheduler_rank = property(lambda self: self.layout.scheduler_rank, doc="The scheduler's rank.")
    client_rank = property(lambda self: self.layout.client_rank, doc="The client code's rank.")
    exclusive_workers = property(lambda self: self.layout.exclusive_workers, doc="Workers on other ranks only.")
    role = property(lambda self: self.state.role, doc="This process's role, once started.")
    status = property(lambda self: self.state.status, doc="``created``, ``running``, ``closing``, ``closed``.")
    client_lost = property(lambda self: self.state.client_lost, doc="The client rank's process died.")

    @property
    def credentials(self):
        """The job's TLS credentials, once the contact is known (``None`` without per-job TLS)."""
        return None if self.contact is None else self.contact.credentials

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's address as the user's browser reaches it, once the runner has started.

        A dashboard on the loopback interface (the default, see
        :mod:`dask_runners.dashboard`) is ``http://localhost:<port>/status``
        at the user's end of the SSH tunnel that the ready line gives (also
        ``runner.contact.dashboard.tunnel``).
        """
        dashboard = None if self.contact is None else self.contact.dashboard
        return None if dashboard is None else dashboard.link

    @property
    def scheduler_address(self) -> str | None:
        """The scheduler's address; asking for it starts a synchronous runner not yet started.

        That is the first use of a runner made without ``with``
        (``Client(runner)`` asks for it first): see :meth:`start_at_first_use`.
        """
        self.start_at_first_use()
        return None if self.contact is None else self.contact.address

    def start_at_first_use(self) -> None:
        """Start a synchronous runner made without ``with``; close it when the script ends.

        The seed's model: ``runner = SLURMRunner(); client = Client(runner)``.
        Scheduler and worker ranks serve here and leave the process, as from
        ``__enter__``; the client rank goes on with the script, and its
        cluster shuts down at the end of the script with the script's status
        (:mod:`dask_runners.at_exit`). Does nothing for an asynchronous
        runner, or one already entered.
        """
        if self._asynchronous or self._loop_runner is not None:
            return
        from .at_exit import close_at_exit  # the client rank's

        self.__enter__()
        close_at_exit(self)

    def _check_can_start(self) -> None:
        """Fail before anything starts if this runner cannot find its scheduler or is too small."""
        if self.transport is None and type(self).get_scheduler_address is BaseRunner.get_scheduler_address:
            raise TypeError(
                f"{type(self).__name__} has no way to find the scheduler: implement "
                "get_scheduler_address (and set_scheduler_address), or give it a transport"
            )
        self.state.rank = self.rank
        facts = launch_facts(None if self.job is None else self.job.launcher)
        self.layout.check_world_size(self.world_size, facts.world_size.format(n=self.world_size), facts.hint)

    # -- the start -------------------------------------------------------------------
    async def _start(self) -> int | None:
        """Take this process's role and serve it; return the exit code of a service rank."""
        self.state.role = role = Role(await self.get_role())
        if not self._asynchronous:  # the rank owns its process, and so its logging
            self.log_file = configure_rank_logging(role, self.rank)
        beside_client = role is Role.client and self.layout.hosts_scheduler(self.rank)  # a shared rank
        self._carrier = self.transport or AddressHooks(self.get_scheduler_address)
        tls = TLSChoice.decide(self._security_option, self._carrier.carries_credentials, self._made_credentials)
        publishes = role is Role.scheduler or beside_client
        prepared = self._carrier.prepare(publishes, tls.per_job and self.layout.scheduler)
        await self._within_discovery_deadline(prepared, f"checking where {self._carrier.describe()} goes")
        hosted = None
        if publishes:
            scheduler = await self._start_scheduler(tls, None if beside_client else self._colocated_worker())
            serving = self._service.serve(scheduler, await self.get_worker_name())
            if role is Role.scheduler:
                return await serving
            hosted = asyncio.ensure_future(serving)  # closes after the client code, as the last rank leaves
        else:
            if role is Role.worker:  # its worker, or its nanny, accepts connections in this process
                tls.prepare_to_serve()
            if role is Role.client or self._worker_spec().runs_in_process:  # not a nanny's rank: it reports
                version_report.make_in_background()  # distributed's versions, and is idle until the contact comes
            discovered = self._carrier.discover()
            self.contact = await self._within_discovery_deadline(discovered, f"waiting for {self._carrier.describe()}")
            self.security = tls.for_contact(self.contact)
        if role is Role.worker:
            return await self._serve_worker()
        return await self._start_client(hosted)  # None: the client code runs next

    async def _start_scheduler(self, tls: TLSChoice, colocated: ColocatedWorker | None):
        """Start the scheduler in this process and publish its contact."""
        from .services.scheduler import SchedulerService  # imported by the scheduler's rank alone

        self._service = service = SchedulerService(
            self.state,
            options=self.scheduler_options,
            tls=tls,
            transport=self._carrier,
            hooks=Hooks(self),
            notify=self._notify,
            layout=self.layout,
            world_size=self.world_size,
            timeouts=self.timeouts,
            colocated=colocated,
        )
        scheduler = await service.start()
        self.contact, self.security = service.contact, service.security
        return scheduler

    async def _serve_worker(self) -> int:
        joins = self.layout.scheduler or self.contact.serves_control
        channel = await self._join(Role.worker) if joins else None
        gpu = (lambda: pin_gpu(self.job, self.rank, self.state.log_prefix)) if self.pin_gpus else None
        service = WorkerService(
            self.state, self._worker_spec(), Hooks(self), self._notify, self.timeouts.shutdown, gpu,
            rank_logging=not self._asynchronous,
        )
        return await service.serve(self.contact.address, self.security, channel)

    async def _start_client(self, hosted_scheduler: asyncio.Task | None) -> None:
        from .services.client import ClientSession  # imported by the client's rank alone

        channel = await self._join(Role.client) if self.layout.scheduler else None
        if channel is not None and channel.stopped.done():  # the job stopped before this rank joined
            await channel.close()
            order = channel.stopped.result()  # or the SchedulerLostError
            failure = ClusterStoppedError(order.reason, order.exit_code)
            logger.error("%s: %s; the client code does not run", self.state.log_prefix, failure)
            raise _StoppedBeforeStart(failure)
        colocated = self._colocated_worker()
        self._session = ClientSession(
            self.state,
            channel,
            self.timeouts.shutdown,
            lambda: self._signals is not None and self._signals.wake_main_thread(),
            colocated,
            self.contact.dashboard,
            hosted_scheduler,
        )
        if colocated is not None:
            await colocated.start(self.contact.address, await self.get_worker_name(), self.security)
            self._notify("on_worker_start")
        await self.before_client_start()
        self.state.status = Status.running

    async def _within_discovery_deadline(self, step, what: str):
        """Await ``step`` of the start (``what`` it does), within the discovery deadline."""
        deadline = self.timeouts.discovery
        return await DiscoveryTimeoutError.unless_done_within(step, deadline, self.state.log_prefix, what)

    async def _join(self, role: Role) -> ControlChannel:
        """Join the cluster: through the worker's own stream where it can, else over a connection."""
        # Ranks of another job (scheduler=False) must not take this job's rank numbers.
        own_rank = self.layout.scheduler and self.rank is not None
        member = self.rank if own_rank else f"{os.uname()[1]}:{os.getpid()}"
        spec = self._worker_spec() if role is Role.worker else None
        args = connection_args(self.security, role.value)
        if spec is not None and spec.runs_in_process:
            return ControlChannel.through_worker(self.contact.address, member, args, self.timeouts.lease)
        worker = None if spec is None else spec.name_for(await self.get_worker_name())
        return await ControlChannel.open(
            self.contact.address, member, role.value, args,
            timeout=self.timeouts.discovery, lease=self.timeouts.lease, worker=worker,
        )

    def _worker_spec(self) -> WorkerSpec:
        return WorkerSpec(
            self.worker_class,
            dict(self.worker_options),
            self.worker_setup,
            self.worker_name,
            self.job,
            quiet_deadline=self.timeouts.shutdown / 2,
        )

    def _colocated_worker(self) -> ColocatedWorker | None:
        """With ``exclusive_workers=False``: the worker beside the scheduler or client."""
        if self.layout.exclusive_workers:
            return None
        return ColocatedWorker(self._worker_spec(), self.state.log_prefix, self.timeouts.shutdown)

    @property
    def _notify(self) -> Notifier:
        return Notifier(self.callbacks, self.job)

    async def _start_once(self) -> int | None:
        if self._start_task is None:
            if self.state.signal_exit is not None:
                raise _StartInterrupted  # the signal came while the loop was starting
            self._start_task = asyncio.ensure_future(self._start())
            self.state.stop_service = self._cancel_start
        try:
            return await self._start_task
        except asyncio.CancelledError:
            if self.state.signal_exit is None:
                raise
            raise _StartInterrupted from None

    async def _cancel_start(self) -> None:
        self._start_task.cancel()

    def _started(self, exit_code: int | None) -> BaseRunner:
        """After the start: a service rank leaves; the client code may begin."""
        if self.role is not Role.client:
            self.exit_code = exit_code
            self.exit_process(exit_code)  # returns only if a subclass keeps the process
            return self
        if not self._told_on_begin:  # Client(runner) awaits an entered runner again
            self._told_on_begin = True
            self._notify("on_begin")
        return self

    # -- sync and async entry points ----------------------------------------------
    def __enter__(self) -> BaseRunner:
        if self._asynchronous:
            raise TypeError("an asynchronous runner is entered with `async with`")
        if self._loop_runner is not None and self.status is Status.running:
            return self  # started at its first use; leaving the block closes it now
        with one_traceback_per_job(self.rank, self.world_size, self.layout.scheduler_rank):
            self._check_can_start()
            self._signals = SignalHandlers(self._policy.handle, self._policy.signums)
            self._signals.install()
            self._loop_runner = LoopRunner(loop=self._loop_arg)
            self._loop_runner.start()
            self.loop = self._policy.loop = self._loop_runner.loop
            try:
                exit_code = self.sync(self._start_once)
            except _StartInterrupted:
                exit_code = self.state.signal_exit  # a signal ended the start
                if self.role is Role.client:
                    self._release_process()
                    raise JobInterrupted(self.state.signal_received, exit_code) from None
            except _StoppedBeforeStart as e:
                self._release_process()
                raise e.failure from None
            except Exception as e:
                self.abort_start(e)
                self._release_process()
                raise
        self._started(exit_code)
        if self.role is not Role.client:  # a service rank whose process goes on
            self._release_process()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status, error = self._body_ended(exc)
        try:
            self.sync(self._close_cluster, exc)
        finally:
            self._release_process()
            self._notify("on_completed", status=status, error=error)
        self.state.raise_failure_unseen_by(exc)  # a failure the body never saw, or saw too late
        return False

    async def __aenter__(self) -> BaseRunner:
        await self
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        status, error = self._body_ended(exc)
        try:
            await self._close_cluster(exc)
        finally:
            self._notify("on_completed", status=status, error=error)
        self.state.raise_failure_unseen_by(exc)  # a failure the body never saw, or saw too late
        return False

    def __await__(self):
        async def start():
            self._check_can_start()
            self.loop = self.loop or IOLoop.current()
            # No signal handlers here (the loop's owner has the signals), so
            # nothing interrupts the start but an error.
            try:
                exit_code = await self._start_once()
            except _StoppedBeforeStart as e:
                raise e.failure from None
            except Exception as e:
                self.abort_start(e)
                raise
            return self._started(exit_code)

        return start().__await__()

    def _release_process(self) -> None:
        """Give back what entering took: the signal handlers and the loop thread."""
        self._signals.restore()
        self._loop_runner.stop()

    # -- the end -----------------------------------------------------------------------
    def _body_ended(self, exc: BaseException | None) -> tuple[str, str | None]:
        """The client code ended with ``exc``: note it and tell the callbacks."""
        if exc is not None and exc is self.state.failure:
            self.state.failure_raised = True
        status, error = outcome(exc)
        self._notify("on_end", status=status, error=error)
        return status, error

    async def _close_cluster(self, exc: BaseException | None) -> None:
        """Shut the cluster down after the client code ended with ``exc``.

        A failed shutdown is raised only when the client code succeeded;
        otherwise it is logged, so that it never hides the code's own error.
        """
        reason = "the client code finished" if exc is None else f"the client code raised {type(exc).__name__}"
        try:
            await self._shutdown(exit_status(exc), reason)
        except Exception as e:
            if exc is None:
                raise
            logger.error("%s: the cluster did not shut down cleanly: %s", self.state.log_prefix, e)

    async def _shutdown(self, exit_code: int, reason: str) -> None:
        if self._session is None:
            self.state.status = Status.closed
            return
        try:
            await self._session.shutdown(exit_code, reason)
        finally:
            if self._session.scheduler_lost:
                self.state.scheduler_lost = True
                self.transport.withdraw()  # a lost scheduler rank cannot remove its file itself

    def close(self):
        """Shut the cluster down from the client rank (as ``Client.shutdown`` does)."""
        return self.sync(self._shutdown, 0, "the cluster was closed by the client")

    def wait_for_workers(self, n_workers: int | None = None, timeout=None):
        """Wait until ``n_workers`` workers are running.

        Parameters
        ----------
        n_workers : int, optional
            How many to wait for; by default every worker rank of the job.
        timeout : float or str, optional
            Deadline; by default ``runners.timeouts.workers``.

        Raises
        ------
        WorkersTimeoutError
            If fewer workers arrived in time; the message says how many did.
        """
        from .services.client import wait_for_workers

        n_workers = self.n_workers if n_workers is None else n_workers
        timeout = parse_timedelta(self.timeouts.workers if timeout is None else timeout, default="s")
        args = connection_args(self.security, "client")
        return self.sync(wait_for_workers, self.scheduler_address, args, n_workers, timeout, self.layout.scheduler)

    def __repr__(self) -> str:
        address = None if self.contact is None else self.contact.address
        return (
            f"<{type(self).__name__} role={self.role and self.role.value} rank={self.rank} "
            f"world_size={self.world_size} scheduler={address!r} status={self.status.name}>"
        )
