"""The runner base class: every process of a job decides its role and serves.

The same script runs in every process of a job. Each process builds a runner;
the runner asks :meth:`BaseRunner.get_role` what this process is, and then:

* the **scheduler** rank starts a :class:`distributed.Scheduler`, publishes its
  address with :meth:`BaseRunner.set_scheduler_address`, serves until the
  cluster shuts down, and leaves the process;
* a **worker** rank finds the address with
  :meth:`BaseRunner.get_scheduler_address`, starts a worker, serves until told
  to stop, and leaves the process;
* the **client** rank finds the address and returns from ``__enter__``, so it
  alone runs the body of the ``with`` block. Leaving the body shuts the whole
  cluster down.

Scheduler and worker ranks never return from entering the runner: they leave
the process from :meth:`BaseRunner.exit_process`, the one place where a
process of the job ends.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from typing import NoReturn

import dask.config
from dask.utils import parse_timedelta
from distributed import Worker
from distributed.core import Status, rpc
from distributed.utils import LoopRunner, SyncMethodMixin, import_term
from tornado.ioloop import IOLoop

from .callbacks import emit, outcome
from .config import Timeouts, backoff_delays
from .environment import as_environment
from .job import visible_gpus
from .limits import raise_open_file_limit
from .security import JobCredentials, prepare_to_accept_tls, tls_wanted
from .signals import JobInterrupted, SignalHandlers, exit_code_for_signal, signal_name
from .control import ClusterControl, ControlChannel, StopOrder
from .exceptions import (
    ClusterStoppedError,
    DiscoveryTimeoutError,
    SchedulerLostError,
    WorkersTimeoutError,
    WorldTooSmallError,
)

logger = logging.getLogger(__name__)


class Role(str, enum.Enum):
    """What one process of the job does."""

    scheduler = "scheduler"
    client = "client"
    worker = "worker"


def exit_code_for(exc: BaseException | None) -> int:
    """The exit status a process should have after ``exc`` ended its work."""
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        if exc.code is None:
            return 0
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


def _stop_child_processes_from_rerunning_main() -> None:
    """Keep processes spawned by this worker rank from re-running the script.

    A nanny starts its worker with multiprocessing's ``spawn``, which imports
    the parent's main module in the child: the user's script, runner and all,
    would run again there. A worker rank never returns to the script, so it
    can forget where its main module came from, and children start clean.
    """
    main = sys.modules.get("__main__")
    if main is not None:
        main.__spec__ = None
        main.__dict__.pop("__file__", None)


async def _poll_for_workers(scheduler, n_workers: int, timeout: float) -> list[str]:
    """Poll a scheduler that is not ours (``scheduler=False``) for running workers."""
    deadline = time.monotonic() + timeout
    for delay in backoff_delays(first=0.01, cap=0.2):
        info = await scheduler.identity(n_workers=-1)
        running = sorted(
            str(w.get("name"))
            for w in info["workers"].values()
            if w.get("status") == Status.running.name
        )
        if len(running) >= n_workers or time.monotonic() + delay > deadline:
            return running
        await asyncio.sleep(delay)


def let_signals_end_the_process() -> None:
    """From here on, SIGTERM and SIGINT end the process at once.

    A leaving rank may still wait in C code (``MPI_Finalize`` waits for every
    rank); a Python handler would run only after it returns, so a launcher's
    SIGTERM would go unheeded until it gives up and sends SIGKILL.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)


def node_local_directory(environ=None) -> str:
    """Scratch space on this node for a worker's spilled data.

    ``SLURM_TMPDIR`` or ``TMPDIR`` when set, else the system's temporary
    directory: never the (shared) working directory, where thousands of
    workers' files make a parallel filesystem crawl.
    """
    env = os.environ if environ is None else environ
    for name in ("SLURM_TMPDIR", "TMPDIR"):
        if env.get(name):
            return env[name]
    return tempfile.gettempdir()


def gpu_for_rank(gpus, local_rank: int) -> str | None:
    """The GPU a worker with ``local_rank`` gets from ``gpus``, round robin."""
    if not gpus:
        return None
    return gpus[local_rank % len(gpus)]


def _quiet_heartbeat_of_closing_workers(record: logging.LogRecord) -> bool:
    """Drop heartbeat failures: installed when this process closes its own
    worker on purpose, after which no worker of the process has one to miss."""
    return not str(record.msg).startswith("Failed to communicate with scheduler during heartbeat")


class _StartInterrupted(Exception):
    """A signal ended this rank's start; it leaves with the signal's exit code."""


async def _close_server(server, reason: str) -> None:
    """Close a worker or nanny without waiting for tasks still running.

    A worker waits for its running tasks by default; a task that sleeps for
    an hour would hold the whole job's shutdown for an hour.
    """
    if isinstance(server, Worker):
        await server.close(reason=reason, executor_wait=False)
    else:
        await server.close(reason=reason)


class BaseRunner(SyncMethodMixin, abc.ABC):
    """Start a Dask cluster from the processes of one job.

    Subclasses implement :meth:`get_role` and :meth:`get_scheduler_address`,
    and usually set :attr:`rank` and :attr:`world_size`; every other hook has
    a working default.

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
        :mod:`dask_runners.environment`.
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
    #: Where this process sits in its job (:class:`~dask_runners.job.JobContext`).
    job = None
    #: Whether :meth:`set_scheduler_address` and :meth:`get_scheduler_address`
    #: carry :attr:`credentials` along with the address. Runners whose
    #: transport does so get per-job TLS by default; others run on plain TCP
    #: unless given a ``distributed.Security``.
    shares_credentials: bool = False

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
        self.scheduler = scheduler
        self.client = client
        self.scheduler_rank = scheduler_rank
        if client_rank is None:
            client_rank = 1 if scheduler and scheduler_rank == 0 else 0
        self.client_rank = client_rank
        if scheduler and client and scheduler_rank == client_rank:
            raise ValueError(
                f"scheduler_rank and client_rank are both {client_rank}; "
                "the scheduler and the client code need ranks of their own"
            )
        self.exclusive_workers = exclusive_workers
        self.worker_name = worker_name
        self.signal_exit_codes = dict(signal_exit_codes or {})
        self.exit_code: int | None = None
        self.client_lost = False
        self.scheduler_options = dict(scheduler_options or {})
        self.worker_class = worker_class or "distributed.Worker"
        self.worker_options = dict(worker_options or {})
        self.worker_setup = None if worker_setup is None else as_environment(worker_setup)
        self.callbacks = list(callbacks)
        if interface is not None:
            self.scheduler_options.setdefault("interface", interface)
            self.worker_options.setdefault("interface", interface)
        if pin_gpus is None:
            pin_gpus = dask.config.get("runners.pin-gpus", False)
        self.pin_gpus = pin_gpus
        self.timeouts = Timeouts.resolve(timeouts)
        self.security = None if isinstance(security, bool) or security is None else security
        self._make_credentials = tls_wanted(security)
        self.credentials: JobCredentials | None = None
        self._asynchronous = asynchronous
        self._loop_arg = loop
        self._loop_runner: LoopRunner | None = None
        self.loop: IOLoop | None = loop
        self.status = Status.created
        self.role: Role | None = None
        self.scheduler_address: str | None = None
        self.preemption_signal = preemption_signal
        self.on_preemption = on_preemption
        self._channel: ControlChannel | None = None
        self._control: ClusterControl | None = None
        self._server = None
        self._colocated_worker = None
        self._start_task: asyncio.Task | None = None
        self._signals: SignalHandlers | None = None
        self._signal_exit: int | None = None
        self._signal_received: int | None = None
        self._failure: Exception | None = None
        self._failure_raised = False
        self._shutdown_requested = False
        self._began = False

    # -- hooks a subclass must provide ----------------------------------------
    @abc.abstractmethod
    async def get_role(self) -> Role:
        """Decide whether this process is the scheduler, the client or a worker.

        :meth:`role_for_rank` gives the usual answer from :attr:`rank`.
        """

    @abc.abstractmethod
    async def get_scheduler_address(self) -> str:
        """Return the scheduler's address; called on every rank but the scheduler.

        Wait for it as long as needed: the runner applies the discovery
        deadline around this call.
        """

    # -- hooks with working defaults ------------------------------------------
    async def set_scheduler_address(self, scheduler) -> None:
        """Publish the running ``scheduler``'s address to the other ranks."""

    async def get_worker_name(self) -> str | int | None:
        """The worker's name in the cluster; the rank by default."""
        return self.rank

    async def before_scheduler_start(self) -> None:
        """Called on the scheduler rank before the scheduler starts."""

    def joins_existing_control(self) -> bool:
        """With ``scheduler=False``: whether the existing scheduler is one of ours.

        A dask_runners scheduler serves the control channel, so the workers
        added to its cluster are stopped in its shutdown like its own. The
        default, ``False``, suits any scheduler.
        """
        return False

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

    # -- helpers for subclasses ------------------------------------------------
    def role_for_rank(self, rank: int) -> Role:
        """The role of ``rank``: ``scheduler_rank``, ``client_rank``, else a worker."""
        return self._service_ranks().get(rank, Role.worker)

    def _service_ranks(self) -> dict[int, Role]:
        ranks = {self.scheduler_rank: Role.scheduler} if self.scheduler else {}
        if self.client:
            ranks[self.client_rank] = Role.client
        return ranks

    @property
    def n_workers(self) -> int | None:
        """How many workers the job has, if the world size is known."""
        if self.world_size is None:
            return None
        if not self.exclusive_workers:
            return self.world_size
        return self.world_size - self.scheduler - self.client

    def describe_world_size(self) -> str:
        """Name the source of :attr:`world_size`, for error messages."""
        return f"the job has {self.world_size} processes"

    def launch_hint(self, n_processes: int) -> str:
        """How to launch ``n_processes`` processes, for error messages."""
        return f"launch at least {n_processes} processes"

    def describe_discovery(self) -> str:
        """What a waiting rank waits for, for error messages."""
        return "the scheduler address"

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
        let_signals_end_the_process()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)

    def abort_start(self, exc: BaseException) -> None:
        """Called when this rank fails before the cluster is up; default: nothing.

        The exception is raised after this returns. A runner whose launcher
        would leave the other ranks waiting (MPI) ends the job here.
        """

    # -- the lifecycle -----------------------------------------------------------
    @property
    def _tag(self) -> str:
        role = self.role.value if self.role else "runner"
        return f"{role} rank {self.rank}" if self.rank is not None else role

    def _connection_args(self, role: str) -> dict:
        return self.security.get_connection_args(role) if self.security else {}

    def _check_world_size(self) -> None:
        service = self._service_ranks()
        parts = [f"a {role.value} on rank {rank}" for rank, role in sorted(service.items())]
        needed = len(service)
        if self.exclusive_workers or not service:
            parts.append("one worker")
            needed += 1
        needed = max([needed, *(rank + 1 for rank in service)])
        if self.world_size is not None and self.world_size < needed:
            raise WorldTooSmallError(
                f"{self.describe_world_size()} but at least {needed} are needed "
                f"({', '.join(parts)}); {self.launch_hint(needed)}"
            )

    async def _start(self) -> int | None:
        """Take this process's role; return the exit code of a service rank."""
        self.role = Role(await self.get_role())
        if self.role is Role.scheduler:
            return await self._serve_scheduler()
        self.scheduler_address = await self._discover()
        if self.role is Role.worker:
            return await self._serve_worker()
        if self.scheduler:
            self._channel = await self._join(Role.client)
            self._channel.stopped.add_done_callback(self._on_cluster_stopped)
        await self._start_colocated_worker()
        await self.before_client_start()
        self.status = Status.running
        return None

    def _discovery_timeout(self, what: str) -> DiscoveryTimeoutError:
        return DiscoveryTimeoutError(
            f"{self._tag}: timed out after {self.timeouts.discovery:.0f} s {what}. "
            "If the ranks are slow to start, raise the deadline with "
            "timeouts={'discovery': ...} or the dask config key "
            "runners.timeouts.discovery; otherwise look at the scheduler rank's output."
        )

    async def _discover(self) -> str:
        try:
            address = await asyncio.wait_for(self.get_scheduler_address(), self.timeouts.discovery)
        except asyncio.TimeoutError as e:
            raise self._discovery_timeout(f"waiting for {self.describe_discovery()}") from e
        if self.credentials is not None and self.security is None:
            self.security = self.credentials.security()
        return address

    async def _join(self, role: Role) -> ControlChannel:
        # Ranks of another job (scheduler=False) must not take this job's rank numbers.
        own_rank = self.scheduler and self.rank is not None
        member = self.rank if own_rank else f"{os.uname()[1]}:{os.getpid()}"
        return await ControlChannel.open(
            self.scheduler_address,
            member,
            role.value,
            self._connection_args(role.value),
            timeout=self.timeouts.discovery,
            lease=self.timeouts.lease,
        )

    async def _start_scheduler(self):
        from distributed import Scheduler

        await self.before_scheduler_start()
        raise_open_file_limit(self.world_size)
        options = dict(self.scheduler_options)
        if self.security is None and self._make_credentials and self.shares_credentials:
            prepare_to_accept_tls()
            self.credentials = JobCredentials.generate()
            self.security = self.credentials.security()
        if self.security is not None:
            options.setdefault("security", self.security)
            if self.security.require_encryption:
                options.setdefault("protocol", "tls")
        scheduler = Scheduler(**options)
        await scheduler
        expected = None if self.world_size is None else self.world_size - 1
        self._control = ClusterControl(
            scheduler, expected, self.timeouts.shutdown, self.timeouts.lease
        )
        self._control.install()
        if self.client:
            self._control.expect_client(self.timeouts.discovery, self.client_rank)
        self.scheduler_address = scheduler.address
        if self.security is None:
            logger.warning(
                "%s: TLS is off (security=False, or a runner that cannot share "
                "credentials): anyone who can reach %s can run code as you",
                self._tag,
                scheduler.address,
            )
        await self.set_scheduler_address(scheduler)
        return scheduler

    async def _serve_scheduler(self) -> int:
        try:
            scheduler = await asyncio.wait_for(self._start_scheduler(), self.timeouts.discovery)
        except asyncio.TimeoutError as e:
            raise self._discovery_timeout("starting the scheduler and publishing its address") from e
        self.status = Status.running
        try:
            await self._start_colocated_worker()
            if self._colocated_worker is not None:
                self._control.on_drain.append(self._close_colocated_worker)
            await self.on_scheduler_start(scheduler)
            emit(self.callbacks, "on_scheduler_start", self.job)
            await scheduler.finished()
        finally:
            await scheduler.close(reason=self._control.reason)
            self.status = Status.closed
            await self.on_scheduler_close()
        self.client_lost = self._control.client_lost
        emit(self.callbacks, "on_scheduler_stop", self.job, exit_code=self._control.exit_code)
        return self._control.exit_code

    async def _serve_worker(self) -> int:
        joins = self.scheduler or self.joins_existing_control()
        channel = await self._join(Role.worker) if joins else None
        if channel is not None and channel.stopped.done():
            await channel.close()
            return self._obey(channel.stopped.result())
        await self.before_worker_start()
        _stop_child_processes_from_rerunning_main()
        if self.pin_gpus:
            self._pin_gpu()
        self._server = server = await self._make_worker()
        try:
            await server
        except Exception as e:
            await self._report_worker_start_failure(channel, e)
            raise
        self.status = Status.running
        await self.on_worker_start(server)
        emit(self.callbacks, "on_worker_start", self.job)
        exit_code = await self._serve_until_stopped(server, channel)
        self.status = Status.closing
        await self._close_worker(server)
        if channel is not None:
            await channel.close()
        self.status = Status.closed
        emit(self.callbacks, "on_worker_stop", self.job, exit_code=exit_code)
        return exit_code

    async def _make_worker(self):
        """The worker (or nanny) of this rank, made but not started."""
        worker_class = self.worker_class
        if isinstance(worker_class, str):
            worker_class = import_term(worker_class)
        options = dict(self.worker_options)
        name = await self.get_worker_name()
        options.setdefault("name", name if self.worker_name is None else f"{self.worker_name}-{name}")
        options.setdefault("local_directory", node_local_directory())
        if self.security is not None:
            options.setdefault("security", self.security)
        if self.worker_setup is not None:
            options["plugins"] = (*options.get("plugins", ()), self.worker_setup)
        return worker_class(self.scheduler_address, **options)

    async def _start_colocated_worker(self) -> None:
        """With ``exclusive_workers=False``: a worker beside the scheduler or client."""
        if self.exclusive_workers:
            return
        worker = await self._make_worker()
        await worker
        self._colocated_worker = worker
        emit(self.callbacks, "on_worker_start", self.job)

    async def _close_colocated_worker(self) -> None:
        worker, self._colocated_worker = self._colocated_worker, None
        if worker is None:
            return
        # A heartbeat in flight when the worker closes fails and is logged as an
        # error with a traceback; here the close is on purpose.
        logging.getLogger("distributed.worker").addFilter(_quiet_heartbeat_of_closing_workers)
        await self._close_worker(worker)

    async def _close_worker(self, worker) -> None:
        """Close this rank's worker, giving up after the shutdown deadline."""
        try:
            await asyncio.wait_for(
                _close_server(worker, f"dask-runners: {self._tag} stopping"), self.timeouts.shutdown
            )
        except asyncio.TimeoutError:
            logger.warning(
                "%s: the worker did not close within %.0f s (runners.timeouts.shutdown); leaving anyway",
                self._tag,
                self.timeouts.shutdown,
            )

    def _pin_gpu(self) -> None:
        gpus = self.job.gpus if self.job is not None else visible_gpus(os.environ)
        local_rank = self.job.local_rank if self.job is not None else None
        chosen = gpu_for_rank(gpus, local_rank if local_rank is not None else self.rank or 0)
        if chosen is None:
            logger.warning("%s: pin_gpus is set but this rank sees no GPU", self._tag)
            return
        os.environ["CUDA_VISIBLE_DEVICES"] = chosen
        logger.info("%s: pinned to GPU %s", self._tag, chosen)

    async def _serve_until_stopped(self, server, channel: ControlChannel | None) -> int:
        finished = asyncio.ensure_future(server.finished())
        waits = [finished] if channel is None else [finished, channel.stopped]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if channel is None or not channel.stopped.done():
            if self._signal_exit is None:
                logger.info("%s: the worker closed by itself; leaving", self._tag)
            return self._signal_exit or 0
        finished.cancel()
        try:
            return self._obey(channel.stopped.result())
        except SchedulerLostError as e:
            logger.error("%s: %s; leaving with exit code 1", self._tag, e)
            return 1

    def _obey(self, order: StopOrder) -> int:
        """Take in the scheduler's stop order; return the exit code it gives."""
        self.client_lost = order.client_lost
        return order.exit_code

    def _on_cluster_stopped(self, stopped: asyncio.Future) -> None:
        """On the client rank: the cluster stopped while the client code ran?"""
        if self._shutdown_requested or stopped.cancelled():
            return
        if stopped.exception() is not None:
            failure = stopped.exception()
        elif stopped.result().exit_code != 0:
            order = stopped.result()
            failure = ClusterStoppedError(order.reason, order.exit_code)
        else:
            return  # closed on purpose, as by Client.shutdown()
        logger.error("%s: %s; interrupting the client code", self._tag, failure)
        self._failure = failure
        self.status = Status.closing  # Client(runner) then closes instead of reconnecting
        if self._signals is not None:
            self._signals.wake_main_thread()

    async def _report_worker_start_failure(self, channel, error: Exception) -> None:
        """Stop the job: a worker that cannot start (a failing ``worker_setup``,
        a bad option) fails the same way on every rank, and the client would
        otherwise wait for it until the workers deadline."""
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        what = f"could not start its worker: {type(cause).__name__}: {cause}"
        logger.error("%s %s", self._tag, what)
        reason = f"worker rank {self.rank} {what}"
        if channel is None:
            return
        try:
            await channel.request_shutdown(1, reason, self.timeouts.shutdown)
        except ShutdownTimeoutError:
            pass
        finally:
            await channel.close()

    async def _shutdown(self, exit_code: int, reason: str) -> None:
        """On the client rank: shut the cluster down, workers first."""
        await self._close_colocated_worker()
        if self._channel is None or self._shutdown_requested:
            self.status = Status.closed
            return
        self._shutdown_requested = True
        self.status = Status.closing
        try:
            if not self._channel.stopped.done():
                # The scheduler spends up to the shutdown deadline draining the
                # workers before it answers; wait for it a little longer.
                wait = 2 * self.timeouts.shutdown
                await self._channel.request_shutdown(exit_code, reason, wait)
        finally:
            await self._channel.close()
            self.status = Status.closed

    async def _start_once(self) -> int | None:
        if self._start_task is None:
            if self._signal_exit is not None:
                raise _StartInterrupted  # the signal came while the loop was starting
            self._start_task = asyncio.ensure_future(self._start())
        try:
            return await self._start_task
        except asyncio.CancelledError:
            if self._signal_exit is None:
                raise
            raise _StartInterrupted from None

    # -- signals -------------------------------------------------------------------
    def _handle_signal(self, signum: int, frame) -> None:
        """Runs on the main thread when one of the runner's signals arrives."""
        client_code_running = self.role is Role.client and self.status is Status.running
        if self._failure is not None and self.role is Role.client and not self._failure_raised:
            self._failure_raised = True
            raise self._failure
        if signum == self.preemption_signal and self.on_preemption is not None:
            if self.role is Role.client:
                self.on_preemption(self)
            return  # on other ranks: the client's callback decides what happens
        exit_code = self.signal_exit_codes.get(signum, exit_code_for_signal(signum, self.preemption_signal))
        if client_code_running:
            logger.warning(
                "%s: received %s; interrupting the client code and shutting the "
                "cluster down (exit code %d)",
                self._tag,
                signal_name(signum),
                exit_code,
            )
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise JobInterrupted(signum, exit_code)
        if self._shutdown_requested or self._signal_exit is not None:
            return  # already shutting down
        logger.warning(
            "%s: received %s; closing (exit code %d)", self._tag, signal_name(signum), exit_code
        )
        self._signal_exit = exit_code
        self._signal_received = signum
        if self.loop is not None:  # else the start sees _signal_exit and does not begin
            self.loop.add_callback(self._stop_on_signal)

    async def _stop_on_signal(self) -> None:
        if self._control is not None:
            self._control.request_close(
                self._signal_exit, "the scheduler rank received a signal", wait_for_stragglers=False
            )
        elif self._server is not None:
            await _close_server(self._server, f"dask-runners: {self._tag} received a signal")
        elif self._start_task is not None:
            self._start_task.cancel()

    def _signals_for(self) -> SignalHandlers:
        return SignalHandlers(
            self._handle_signal, (signal.SIGINT, signal.SIGTERM, self.preemption_signal)
        )

    # -- sync and async entry points ----------------------------------------------
    def __enter__(self) -> BaseRunner:
        if self._asynchronous:
            raise TypeError("an asynchronous runner is entered with `async with`")
        self._check_world_size()
        self._signals = self._signals_for()
        self._signals.install()
        self._loop_runner = LoopRunner(loop=self._loop_arg)
        self._loop_runner.start()
        self.loop = self._loop_runner.loop
        try:
            exit_code = self.sync(self._start_once)
        except _StartInterrupted:
            exit_code = self._signal_exit  # a signal ended the start
            if self.role is Role.client:
                self._release_process()
                raise JobInterrupted(self._signal_received, exit_code) from None
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
            emit(self.callbacks, "on_completed", self.job, status=status, error=error)
        self._raise_undelivered_failure(exc)
        return False

    def _body_ended(self, exc: BaseException | None) -> tuple[str, str | None]:
        """The client code ended with ``exc``: note it and tell the callbacks."""
        if exc is not None and exc is self._failure:
            self._failure_raised = True
        status, error = outcome(exc)
        emit(self.callbacks, "on_end", self.job, status=status, error=error)
        return status, error

    async def _close_cluster(self, exc: BaseException | None) -> None:
        """Shut the cluster down after the client code ended with ``exc``.

        A failed shutdown is raised only when the client code succeeded;
        otherwise it is logged, so that it never hides the code's own error.
        """
        try:
            await self._shutdown(*self._outcome(exc))
        except Exception as e:
            if exc is None:
                raise
            logger.error("%s: the cluster did not shut down cleanly: %s", self._tag, e)

    def _raise_undelivered_failure(self, exc) -> None:
        """Raise a lost or stopped cluster's error if the body never saw it.

        Without signal handlers (not on the main thread, or asynchronous), a
        failure cannot interrupt the body; it is raised when the body ends.
        """
        if exc is None and self._failure is not None and not self._failure_raised:
            self._failure_raised = True
            raise self._failure

    def _release_process(self) -> None:
        """Give back what entering took: the signal handlers and the loop thread."""
        self._signals.restore()
        self._loop_runner.stop()

    async def __aenter__(self) -> BaseRunner:
        await self
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        status, error = self._body_ended(exc)
        try:
            await self._close_cluster(exc)
        finally:
            emit(self.callbacks, "on_completed", self.job, status=status, error=error)
        self._raise_undelivered_failure(exc)
        return False

    def __await__(self):
        async def start():
            self._check_world_size()
            self.loop = self.loop or IOLoop.current()
            # No signal handlers here (the loop's owner has the signals), so
            # nothing interrupts the start but an error.
            try:
                exit_code = await self._start_once()
            except Exception as e:
                self.abort_start(e)
                raise
            return self._started(exit_code)

        return start().__await__()

    def _started(self, exit_code: int | None) -> BaseRunner:
        """After the start: a service rank leaves; the client code may begin."""
        if self.role is not Role.client:
            self.exit_code = exit_code
            self.exit_process(exit_code)  # returns only if a subclass keeps the process
            return self
        if not self._began:  # Client(runner) awaits an entered runner again
            self._began = True
            emit(self.callbacks, "on_begin", self.job)
        return self

    def _outcome(self, exc: BaseException | None) -> tuple[int, str]:
        code = exit_code_for(exc)
        if exc is None:
            return code, "the client code finished"
        return code, f"the client code raised {type(exc).__name__}"

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
        return self.sync(self._wait_for_workers, n_workers, timeout)

    async def _wait_for_workers(self, n_workers, timeout) -> None:
        n_workers = self.n_workers if n_workers is None else n_workers
        if timeout is None:
            timeout = self.timeouts.workers
        timeout = parse_timedelta(timeout, default="s")
        scheduler = rpc(self.scheduler_address, connection_args=self._connection_args("client"))
        try:
            if self.scheduler:
                running = await scheduler.dask_runners_wait_for_workers(n=n_workers, timeout=timeout)
            else:
                running = await _poll_for_workers(scheduler, n_workers, timeout)
        finally:
            await scheduler.close_rpc()
        if len(running) < n_workers:
            raise WorkersTimeoutError(
                f"timed out after {timeout:.0f} s waiting for {n_workers} "
                f"workers: {len(running)} arrived (names {running})"
            )

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} role={self.role and self.role.value} "
            f"rank={self.rank} world_size={self.world_size} "
            f"scheduler={self.scheduler_address!r} status={self.status.name}>"
        )
