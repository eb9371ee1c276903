"""A rank's worker: on a worker rank, and beside the scheduler or the client.

A worker rank makes its worker (or nanny) with the runner's options, serves
until the scheduler's stop order arrives over the control channel, closes the
worker within the shutdown deadline and returns the exit status the order
gave. With ``exclusive_workers=False`` the scheduler and client ranks run a
:class:`ColocatedWorker` too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time

import dask.config
from distributed import Nanny, Worker
from distributed.core import Status
from distributed.utils import import_term

from ..cadence import worker_cadence
from ..config import user_path
from ..channel import ControlChannel
from ..control import StopOrder
from ..exceptions import SchedulerLostError, ShutdownTimeoutError
from ..dashboard import worker_dashboard_options
from ..deferred_store import DeferStoreInWorkerProcess
from ..job import visible_gpus
from ..logs import CancelledOnPurpose, RankLogging, attach, detach, nanny_child_environ
from ..sizing import node_share
from ..state import RankState
from .quiesce import QuietExit

logger = logging.getLogger(__name__)

#: A worker in these has begun to close (or has failed to start, and closed).
CLOSING = (Status.closing, Status.closed, Status.failed)
#: How often a nanny's start is looked at while its worker process is made (distributed polls its own at 50 ms).
NANNY_START_POLL = 0.05


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


def pin_gpu(job, rank: int | None, log_prefix: str) -> None:
    """Give this rank one of the GPUs it sees, by local rank (``CUDA_VISIBLE_DEVICES``)."""
    gpus = job.gpus if job is not None else visible_gpus(os.environ)
    local_rank = job.local_rank if job is not None else None
    chosen = gpu_for_rank(gpus, local_rank if local_rank is not None else rank or 0)
    if chosen is None:
        logger.warning("%s: pin_gpus is set but this rank sees no GPU", log_prefix)
        return
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    logger.info("%s: pinned to GPU %s", log_prefix, chosen)


def stop_child_processes_from_rerunning_main() -> None:
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


async def close_server(server, reason: str) -> None:
    """Close a worker or nanny without waiting for tasks still running.

    A worker waits for its running tasks by default; a task that sleeps for
    an hour would hold the whole job's shutdown for an hour. Its last
    heartbeat lands before it closes its connections (see
    :class:`~dask_runners.services.quiesce.QuietExit`).
    """
    if isinstance(server, Worker):
        await server.close(reason=reason, executor_wait=False)
    else:
        await server.close(reason=reason)


async def close_worker(worker, log_prefix: str, deadline: float) -> None:
    """Close this rank's worker, giving up after ``deadline`` seconds."""
    try:
        await asyncio.wait_for(close_server(worker, f"dask-runners: {log_prefix} stopping"), deadline)
    except asyncio.TimeoutError:
        logger.warning(
            "%s: the worker did not close within %.0f s (runners.timeouts.shutdown); leaving anyway", log_prefix, deadline
        )


async def end_nanny_start(nanny: Nanny, starting: asyncio.Future, deadline: float) -> None:
    """End a nanny's start by ending the worker process it starts; wait at most ``deadline`` seconds.

    A nanny's start must not be cancelled once it has made its worker
    process: distributed's ``WorkerProcess.kill`` then finds the process
    still ``starting`` and fails an assertion, so the nanny cannot close.
    Ended from outside, the worker process makes the start return, and the
    nanny closes itself; told first to close gracefully, it does not start
    the process again. Before it makes the worker process (``nanny.process``
    is ``None``), the start may be cancelled.
    """
    until = time.monotonic() + deadline
    if nanny.process is not None:
        nanny.close_gracefully(reason="dask-runners: the job stopped while the nanny started")
    while nanny.process is not None and not starting.done() and (left := until - time.monotonic()) > 0:
        child = nanny.process.process
        if child is None:  # made, not yet started: it starts on the loop's next turn
            await asyncio.wait([starting], timeout=min(left, NANNY_START_POLL))
            continue
        await child.terminate()  # queued after its start, so it waits for the child to exist
        await asyncio.wait([starting], timeout=max(until - time.monotonic(), 0))


class WorkerSpec:
    """How this job makes a worker.

    Parameters
    ----------
    worker_class : type or str
        The worker class or its import path.
    options : dict
        Keyword arguments for it.
    setup : WorkerEnvironment or None
        A per-worker environment plugin to register.
    name_prefix : str or None
        With one, workers are named ``{name_prefix}-{name}``.
    job : JobContext or None
        Where the rank sits; ``memory_limit`` and ``nthreads`` default to its
        share of the node (see :mod:`dask_runners.sizing`).
    quiet_deadline : float
        How long the worker may take to quiet down before it stops (see
        :mod:`dask_runners.services.quiesce`).
    """

    def __init__(
        self,
        worker_class="distributed.Worker",
        options=None,
        setup=None,
        name_prefix=None,
        job=None,
        quiet_deadline: float = 15.0,
    ):
        self.worker_class = worker_class
        self.options = dict(options or {})
        self.setup = setup
        self.name_prefix = name_prefix
        self.job = job
        self.quiet_deadline = quiet_deadline

    def name_for(self, name):
        """The worker's name in the cluster for the rank's ``name`` (its rank, by default)."""
        return self.options.get("name", name if self.name_prefix is None else f"{self.name_prefix}-{name}")

    @property
    def resolved_class(self) -> type:
        """The worker class itself."""
        return import_term(self.worker_class) if isinstance(self.worker_class, str) else self.worker_class

    @property
    def runs_in_process(self) -> bool:
        """Whether the worker runs in the rank's own process (not under a nanny).

        A class that cannot be imported counts as one: :meth:`make` raises
        the import's error where the rank reports a failed start.
        """
        try:
            return not issubclass(self.resolved_class, Nanny)
        except Exception:
            return True

    def make(self, address: str, name, security, plugins=()):
        """The worker (or nanny) for the scheduler at ``address``, made but not started.

        ``plugins`` are worker plugins of the runner's own, besides the user's.
        """
        worker_class = self.resolved_class
        options = dict(self.options)
        options.setdefault("name", self.name_for(name))
        options["local_directory"] = str(user_path(options.get("local_directory") or node_local_directory()))
        options = worker_dashboard_options(options)
        if "memory_limit" not in options or "nthreads" not in options:
            for key, value in node_share(self.job).worker_options().items():
                options.setdefault(key, value)
        if security is not None:
            options.setdefault("security", security)
        ours = [QuietExit(self.quiet_deadline), *plugins] + ([] if self.setup is None else [self.setup])
        if security is not None and not self.runs_in_process:
            ours.append(DeferStoreInWorkerProcess())
        options["plugins"] = (*options.get("plugins", ()), *ours)
        cadence = worker_cadence()
        if not self.runs_in_process:  # a nanny's worker process is made under the nanny's config argument
            options["config"] = {**cadence, **options.get("config", {})}
        with dask.config.set(cadence):
            return worker_class(address, **options)


class ColocatedWorker:
    """The worker a scheduler or client rank runs beside its own work."""

    def __init__(self, spec: WorkerSpec, log_prefix: str, shutdown_timeout: float):
        self.spec = spec
        self.log_prefix = log_prefix
        self.shutdown_timeout = shutdown_timeout
        self.worker = None

    async def start(self, address: str, name, security) -> None:
        worker = self.spec.make(address, name, security)
        await worker
        self.worker = worker

    async def close(self) -> None:
        """Close the worker, once."""
        worker, self.worker = self.worker, None
        if worker is None:
            return
        await close_worker(worker, self.log_prefix, self.shutdown_timeout)


class WorkerService:
    """A worker rank: its worker serves until the scheduler's stop order.

    Parameters
    ----------
    state : RankState
        The rank's state.
    spec : WorkerSpec
        How to make the worker.
    hooks : Hooks
        The runner's worker hooks.
    notify : Notifier
        Tells the lifecycle callbacks.
    shutdown_timeout : float
        How long the worker may take to close.
    pin_gpu : callable or None
        Called before the worker is made, to choose its GPU.
    rank_logging : bool
        Whether the rank set its logging up (:func:`~dask_runners.logs.configure_rank_logging`);
        a nanny's worker process then logs as the rank does.
    """

    def __init__(
        self, state: RankState, spec: WorkerSpec, hooks, notify, shutdown_timeout: float, pin_gpu=None,
        rank_logging: bool = False,
    ):
        self.state = state
        self.spec = spec
        self.hooks = hooks
        self.notify = notify
        self.shutdown_timeout = shutdown_timeout
        self.pin_gpu = pin_gpu
        self.rank_logging = rank_logging

    async def serve(self, address: str, security, channel: ControlChannel | None) -> int:
        """Make the worker, serve, close it; return the rank's exit status."""
        state = self.state
        if channel is not None and channel.stopped.done():  # joined a cluster already stopping
            await channel.close()
            return self._exit_code_of(channel.stopped.result())
        await self.hooks.before_worker_start()
        stop_child_processes_from_rerunning_main()
        if self.pin_gpu is not None:
            self.pin_gpu()
        try:
            server = await self._make(address, security, channel)
            state.stop_service = lambda: close_server(server, f"dask-runners: {state.log_prefix} received a signal")
            started = await self._start_unless_stopped(server, channel)
        except Exception as e:
            if state.signal_exit is not None:  # a signal closed the worker while it started
                if channel is not None:
                    await channel.close()
                return state.signal_exit
            await self._report_start_failure(channel, e)
            raise
        if not started:  # the job stopped, or the scheduler was lost, while the worker started
            if server.status not in CLOSING:  # a failed start closed it
                await close_worker(server, state.log_prefix, self.shutdown_timeout)
            await channel.close()
            state.status = Status.closed
            return self._exit_code_of_stop(channel)
        state.status = Status.running
        await self.hooks.on_worker_start(server)
        self.notify("on_worker_start")
        exit_code = await self._serve_until_stopped(server, channel)
        state.status = Status.closing
        await close_worker(server, state.log_prefix, self.shutdown_timeout)
        if channel is not None:
            await channel.close()
        state.status = Status.closed
        self.notify("on_worker_stop", exit_code=exit_code)
        return exit_code

    async def _start_unless_stopped(self, server, channel: ControlChannel | None) -> bool:
        """Start the worker; ``False`` if the stop order (or the scheduler's loss) came first.

        A worker that is starting waits for its scheduler without a deadline
        of its own; the control channel knows at once when there is none. A
        start that is already failing (its worker closing) is left to finish,
        within the shutdown deadline: cancelled mid-close, the worker would
        never be closed.
        """
        starting = asyncio.ensure_future(server)
        waits = [starting] if channel is None else [starting, channel.stopped]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        stopped = channel is not None and channel.stopped.done()
        if starting.done() and not stopped:
            starting.result()  # the start's own error, if it failed
            return True
        if not starting.done() and server.status in CLOSING:
            await asyncio.wait([starting], timeout=self.shutdown_timeout)
        if not starting.done() and isinstance(server, Nanny):
            await end_nanny_start(server, starting, self.shutdown_timeout)
        if starting.done():
            starting.exception()  # the stop order explains a failed start; it is no error of its own
            return False
        cancelled = [("distributed.worker", CancelledOnPurpose()), ("distributed.core", CancelledOnPurpose())]
        attach(cancelled)  # distributed logs the cancelled start (a worker_setup running) as an error
        try:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        finally:
            detach(cancelled)
        return False

    async def _make(self, address: str, security, channel: ControlChannel | None):
        carried = [channel.plugin] if channel is not None and channel.link_is_stream else []
        name = await self.hooks.get_worker_name()
        if not self.rank_logging or self.spec.runs_in_process:
            return self.spec.make(address, name, security, carried)
        with dask.config.set(nanny_child_environ(self.state.rank)):  # read as the nanny is made
            return self.spec.make(address, name, security, [*carried, RankLogging(self.state.rank)])

    async def _serve_until_stopped(self, server, channel: ControlChannel | None) -> int:
        finished = asyncio.ensure_future(server.finished())
        waits = [finished] if channel is None else [finished, channel.stopped]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if channel is None or not channel.stopped.done():
            if self.state.signal_exit is not None:
                return self.state.signal_exit
            if channel is not None and not await channel.scheduler_answers():
                if channel.stopped.done():  # the stop order, or the loss, came meanwhile
                    return self._exit_code_of_stop(channel)
                logger.error(
                    "%s: the worker closed after losing its scheduler, which does not answer "
                    "either; leaving with exit code 1",
                    self.state.log_prefix,
                )
                self.state.scheduler_lost = True
                return 1
            logger.info("%s: the worker closed by itself; leaving", self.state.log_prefix)
            return 0
        finished.cancel()
        return self._exit_code_of_stop(channel)

    def _exit_code_of_stop(self, channel: ControlChannel) -> int:
        """The exit status the channel's end gives: the stop order's, or 1 for a lost scheduler."""
        try:
            return self._exit_code_of(channel.stopped.result())
        except SchedulerLostError as e:
            logger.error("%s: %s; leaving with exit code 1", self.state.log_prefix, e)
            self.state.scheduler_lost = True
            return 1

    def _exit_code_of(self, order: StopOrder) -> int:
        """Take in the scheduler's stop order; return the exit status it gives."""
        self.state.client_lost = order.client_lost
        return order.exit_code

    async def _report_start_failure(self, channel: ControlChannel | None, error: Exception) -> None:
        """Stop the job: a worker that cannot start (a failing ``worker_setup``,
        a bad option) fails the same way on every rank, and the client would
        otherwise wait for it until the workers deadline."""
        cause = error
        while cause.__cause__ is not None:
            cause = cause.__cause__
        what = f"could not start its worker: {type(cause).__name__}: {cause}"
        logger.error("%s %s", self.state.log_prefix, what)
        if channel is None:
            return
        try:
            await channel.request_shutdown(1, f"worker rank {self.state.rank} {what}", self.shutdown_timeout)
        except ShutdownTimeoutError:
            pass  # the start error, raised next, is what the rank reports
        finally:
            await channel.close()
