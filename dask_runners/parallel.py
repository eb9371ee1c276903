"""``parallel_for``: map a function over many items on the cluster, in order.

It is the batch-processing loop of ML inference and feature extraction: a
pure function processes one item with objects from a per-worker environment
(see :mod:`dask_runners.worker_setup`)::

    def setup():
        return {"model": load_model("model.pt")}

    def predict(item, *, model):
        return model.predict(item)

    with Runner(worker_setup=setup) as runner:
        with Client(runner) as client:
            for prediction in parallel_for(predict, inputs, client=client):
                ...

Only a bounded number of items is in flight at a time, so a million items do
not make a million futures; results come back in input order (or as they
finish); a failing item is reported without losing the others; results can
be written as JSON Lines shards. Without a client, the same call runs in
this process, for debugging.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator

import dask.config
import distributed

from .batching import TASKS_PER_THREAD, BatchSizer
from .config import Timeouts, parse_seconds
from .exceptions import MapStopped, ParallelForError, RunnerError, WorkersTimeoutError
from .progress import Progress
from .shards import fingerprint, open_shards
from .worker_setup import (
    DEFAULT_NAME,
    WorkerEnvironment,
    as_environment,
    build,
    warn_if_large,
)

logger = logging.getLogger(__name__)

#: Set by :func:`stop_maps`: every map of this process stops.
_stop_requested = threading.Event()
#: Seconds a stopping map waits for the items in flight (``runners.parallel.grace``).
GRACE_KEY = "runners.parallel.grace"

#: Environments registered by parallel_for, per client: {name: setup}.
_registered: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ON_ERROR = ("raise", "skip", "return")
_SKIPPED = object()


@dataclasses.dataclass
class ItemFailure:
    """An item whose function raised.

    Attributes
    ----------
    index : int
        The item's position in the input.
    item : object
        The item.
    error : str
        ``"ExceptionType: message"``.
    traceback : str
        The formatted traceback, from the worker.
    exception : BaseException or None
        The exception itself, when it could be sent back.
    """

    index: int
    item: object
    error: str
    traceback: str
    exception: BaseException | None = None


def _failure_of(exc: BaseException, tb: str) -> tuple[str, str, BaseException | None]:
    """``(error, traceback, exception)``, with the exception only if it pickles."""
    try:
        distributed.protocol.pickle.dumps(exc)
        sendable = exc
    except Exception:
        sendable = None
    return f"{type(exc).__name__}: {exc}", tb, sendable


def _call(fn: Callable, item, env: dict) -> tuple[bool, object]:
    """``(True, fn(item, **env))``, or ``(False, failure)`` if it raised."""
    try:
        return True, fn(item, **env)
    except Exception as e:
        user_frames = e.__traceback__.tb_next  # leave out this frame
        return False, _failure_of(e, "".join(traceback.format_exception(type(e), e, user_frames)))


def _run_batch(items: list, *, fn: Callable, environment: str, required: bool):
    """The task: call ``fn`` on each item with this worker's environment.

    Returns ``([(ok, value) per item], seconds)``: the seconds the items
    took here, from which the next batches are sized.
    """
    from .worker_setup import worker_environment

    start = time.perf_counter()
    worker = distributed.get_worker()
    try:
        env = worker_environment(environment) if required or environment in worker.plugins else {}
    except Exception as e:
        failure = (False, _failure_of(e, traceback.format_exc()))
        return [failure] * len(items), time.perf_counter() - start
    outcomes = [_call(fn, item, env) for item in items]
    return outcomes, time.perf_counter() - start


class ParallelFor:
    """The iterator :func:`parallel_for` returns.

    Attributes
    ----------
    failures : list of ItemFailure
        The items that failed so far.
    done : int
        How many items finished, successfully or not.
    shards : list of Path
        The shards this run finished, when ``output_dir`` was given.
    skipped : int
        Items skipped because ``output_dir`` already held their results.
    """

    def __init__(self, fn, items, *, client, setup, environment, ordered, with_index,
                 max_in_flight, on_error, max_failures, progress, output_dir, shard_size, if_exists="resume"):
        if on_error not in _ON_ERROR:
            raise ValueError(f"on_error must be one of {_ON_ERROR}, not {on_error!r}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        warn_if_large(fn, "the function")
        self.fn = fn
        self.items = items
        self.client = _resolve_client(client)
        self.setup = None if setup is None else as_environment(setup, environment or DEFAULT_NAME)
        self.environment = self.setup.name if self.setup is not None else (environment or DEFAULT_NAME)
        self.environment_required = setup is not None or environment is not None
        self.ordered = ordered
        self.with_index = with_index
        self.max_in_flight = max_in_flight
        self.on_error = on_error
        self.max_failures = max_failures
        self.failures: list[ItemFailure] = []
        self.done = 0
        label = getattr(fn, "__name__", "parallel_for")
        total = _length(items)
        self._writer = None
        if output_dir is not None:
            self._writer = open_shards(output_dir, shard_size, total, fingerprint(fn), if_exists)
        self._done: set[int] = set() if self._writer is None else self._writer.done
        #: Items skipped because ``output_dir`` already held their results.
        self.skipped = len(self._done)
        if self.skipped:
            logger.info(
                "parallel_for: %d of %s items already have results in %s; computing the others",
                self.skipped, "?" if total is None else total, output_dir,
            )
        #: How many items this run computes, if known.
        self._left = None if total is None else total - self.skipped
        self._progress = Progress(label, self._left, enabled=progress)
        self._results = self._run()

    @property
    def shards(self):
        return [] if self._writer is None else list(self._writer.finished)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._results)

    def close(self) -> None:
        """Stop: cancel the items in flight."""
        self._results.close()

    # -- the two ways of running ------------------------------------------------
    def _run(self) -> Iterator:
        finished = False
        try:
            if self.client is None:
                yield from self._run_here()
            else:
                yield from self._run_on_cluster()
            finished = True
        finally:
            self._progress.close()
            if self._writer is not None:
                self._writer.close(complete=finished)
        if self.failures and self.on_error == "raise":
            raise ParallelForError(self.failures, self.done)

    def _run_here(self) -> Iterator:
        if self.setup is not None:
            env = build(self.setup.setup_function, self.environment)
        elif self.environment_required:
            raise RunnerError(
                f"environment {self.environment!r} was asked for, but there is no cluster "
                "(no client) to have one; pass setup=... to build it in this process"
            )
        else:
            env = {}
        for index, item in self._inputs():
            output = self._record(index, item, *_call(self.fn, item, env))
            if output is not _SKIPPED:
                yield output

    def _run_on_cluster(self) -> Iterator:
        client = self.client
        self._register_environment()
        sizer = BatchSizer(sum(client.nthreads().values()), self._left, self.max_in_flight)
        batches = _Batches(client, self, sizer)
        inputs = self._inputs()
        outstanding: dict[int, object] = {}  # index -> item, until its result is handed out
        ready: dict[int, object] = {}  # index -> output, waiting for its turn
        next_index = self._after(-1)
        exhausted = False
        watchdog = _WorkersWatchdog(client)
        try:
            while True:
                if _stop_requested.is_set():
                    yield from self._stop(batches, outstanding, ready, watchdog)
                while not exhausted and batches.has_room(len(outstanding)):
                    batch = list(itertools.islice(inputs, batches.next_size()))
                    exhausted = not batch
                    if batch:
                        outstanding.update(batch)
                        batches.submit(batch)
                if not outstanding:
                    return
                if len(ready) < len(outstanding):
                    for index, result in batches.collect(watchdog, len(outstanding)):
                        ready[index] = self._record(index, outstanding[index], *result)
                        if not self.ordered:
                            del outstanding[index]
                while ready:
                    if self.ordered:
                        if next_index not in ready:
                            break
                        output = ready.pop(next_index)
                        del outstanding[next_index]
                        next_index = self._after(next_index)
                    else:
                        output = ready.pop(next(iter(ready)))
                    if output is not _SKIPPED:
                        yield output
        finally:
            batches.cancel()

    def _stop(self, batches, outstanding, ready, watchdog) -> Iterator:
        """Stop for preemption: record what finishes within the grace period, then raise."""
        grace = parse_seconds(dask.config.get(GRACE_KEY), f"the dask config key {GRACE_KEY}")
        logger.warning(
            "parallel_for: stopping for preemption; waiting up to %.0f s (%s) for %d items in flight",
            grace, GRACE_KEY, len(outstanding) - len(ready),
        )
        deadline = time.monotonic() + grace
        while len(ready) < len(outstanding) and batches.futures and time.monotonic() < deadline:
            for index, result in batches.collect(watchdog, len(outstanding), timeout=deadline - time.monotonic()):
                ready[index] = self._record(index, outstanding[index], *result)
        if not self.ordered:
            for output in ready.values():
                if output is not _SKIPPED:
                    yield output
        raise MapStopped(len(outstanding) - len(ready), self.done)

    def _inputs(self) -> Iterator[tuple[int, object]]:
        """``(index, item)`` for the items without a result in ``output_dir`` yet."""
        return ((index, item) for index, item in enumerate(self.items) if index not in self._done)

    def _after(self, index: int) -> int:
        """The next index after ``index`` that this run computes."""
        index += 1
        while index in self._done:
            index += 1
        return index

    def _record(self, index: int, item, ok: bool, value):
        """Count, log and shard one result; return what the iterator hands out."""
        self.done += 1
        self._progress.update(1, failed=0 if ok else 1)
        if ok:
            record, output = {"result": value}, value
        else:
            output = ItemFailure(index, item, *value)
            self.failures.append(output)
            record = {"error": output.error, "traceback": output.traceback}
        if self._writer is not None:
            self._writer.write(index, record)
        if not ok and self.max_failures is not None and len(self.failures) > self.max_failures:
            raise ParallelForError(self.failures, self.done, stopped_early=True)
        if not ok and self.on_error != "return":
            return _SKIPPED
        return (index, output) if self.with_index else output

    def _register_environment(self) -> None:
        if self.setup is None:
            return
        known = _registered.setdefault(self.client, {})
        if known.get(self.environment) is not self.setup.setup_function:
            self.client.register_plugin(self.setup, name=self.environment)
            known[self.environment] = self.setup.setup_function


class _Batches:
    """The map's tasks on the cluster: each carries a batch of items (see :mod:`dask_runners.batching`)."""

    def __init__(self, client, parallel: ParallelFor, sizer: BatchSizer):
        self.client = client
        self.parallel = parallel
        self.sizer = sizer
        self.token = f"{parallel._progress.label}-{uuid.uuid4().hex[:8]}"
        self.finished: queue.Queue = queue.Queue()
        self.indices: dict[str, list[int]] = {}  # key -> the indices of its batch
        self.futures: dict[str, distributed.Future] = {}
        self.submitted = 0

    def next_size(self) -> int:
        return self.sizer.batch_size(self.submitted)

    def has_room(self, in_flight: int) -> bool:
        """Whether another batch may go out with ``in_flight`` items outstanding."""
        if self.sizer.item_seconds is None and len(self.futures) >= self.sizer.threads * TASKS_PER_THREAD:
            return False  # still measuring: a first wave of one-item tasks
        size = self.sizer.batch_size(self.submitted)
        return self.sizer.window(size) - in_flight >= size

    def submit(self, batch: list[tuple[int, object]]) -> None:
        parallel = self.parallel
        key = f"{self.token}-{batch[0][0]}"
        future = self.client.submit(
            _run_batch, [item for _, item in batch], key=key, pure=False,
            fn=parallel.fn, environment=parallel.environment, required=parallel.environment_required,
        )
        self.indices[key] = [index for index, _ in batch]
        self.futures[key] = future
        self.submitted += len(batch)
        future.add_done_callback(self.finished.put)

    def collect(self, watchdog, in_flight: int, timeout: float | None = None) -> list[tuple[int, tuple[bool, object]]]:
        """Wait for finished tasks (at most ``timeout`` s); return ``[(index, (ok, value))]`` for their items."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                done = [self.finished.get(timeout=1.0 if deadline is None else min(1.0, max(deadline - time.monotonic(), 0)))]
                break
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    return []
                watchdog.check(in_flight)
        while True:
            try:
                done.append(self.finished.get_nowait())
            except queue.Empty:
                break
        watchdog.progressed()
        succeeded = [future for future in done if future.status == "finished"]
        results = []
        for future, (outcomes, seconds) in zip(succeeded, self.client.gather(succeeded) if succeeded else []):
            indices = self.indices.pop(future.key)
            self.sizer.observe(len(indices), seconds)
            results.extend(zip(indices, outcomes))
        for future in done:
            self.futures.pop(future.key, None)
            if future.status != "finished":
                exc = future.exception() if future.status == "error" else distributed.CancelledError(future.key)
                failure = (False, _failure_of(exc, ""))
                results.extend((index, failure) for index in self.indices.pop(future.key))
        return results

    def cancel(self) -> None:
        """Cancel the tasks still running."""
        pending = [future for future in self.futures.values() if not future.done()]
        if pending:
            self.client.cancel(pending)


class _WorkersWatchdog:
    """Raise when a cluster with items in flight has had no worker for too long."""

    def __init__(self, client):
        self.client = client
        self.deadline = Timeouts.resolve().workers
        self.empty_since: float | None = None

    def progressed(self) -> None:
        self.empty_since = None

    def check(self, in_flight: int) -> None:
        if self.client.nthreads():
            self.empty_since = None
            return
        now = time.monotonic()
        self.empty_since = self.empty_since or now
        if now - self.empty_since > self.deadline:
            raise WorkersTimeoutError(
                f"the cluster has had no worker for {now - self.empty_since:.0f} s with {in_flight} "
                f"items in flight (runners.timeouts.workers = {self.deadline:.0f} s); "
                "check the worker ranks' logs"
            )


def stop_maps(runner=None) -> None:
    """Stop every :func:`parallel_for` of this process, gracefully; use it as ``on_preemption``.

    A running map stops submitting, records the items that finish within
    ``runners.parallel.grace`` seconds (to its shards too), and raises
    :class:`MapStopped`, which ends the job with exit code 75 like the
    preemption signal itself. Run again into the same ``output_dir``, the
    map resumes. ::

        with SLURMRunner(preemption_signal=signal.SIGUSR1, on_preemption=stop_maps) as runner:
            ...

    A map that starts after the call stops at once.
    """
    _stop_requested.set()


def _resolve_client(client):
    if client is not None:
        if client.asynchronous:
            raise TypeError("parallel_for needs a synchronous Client")
        return client
    try:
        return distributed.default_client()
    except ValueError:
        logger.info("parallel_for: no Dask client; running the items in this process")
        return None


def _length(items) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None


def parallel_for(
    fn: Callable,
    items: Iterable,
    *,
    client: distributed.Client | None = None,
    setup: Callable | WorkerEnvironment | None = None,
    environment: str | None = None,
    ordered: bool = True,
    with_index: bool = False,
    max_in_flight: int | None = None,
    on_error: str = "raise",
    max_failures: int | None = None,
    progress: bool | None = None,
    output_dir=None,
    shard_size: int = 1000,
    if_exists: str = "resume",
) -> ParallelFor:
    """Call ``fn(item, **env)`` for every item, on the cluster, and yield the results.

    Parameters
    ----------
    fn : callable
        A pure function of one item and the environment's entries as keyword
        arguments. It is pickled once per batch of items, so it should not
        capture large objects: put those in the environment.
    items : iterable
        The items (often indices into a dataset in the environment). Read
        lazily, as room in flight frees up, so it may be a generator.
    client : distributed.Client, optional
        The cluster's client; by default the current client. With no client
        at all, the items run here, one after the other, with the
        environment built here: the same code, for debugging.
    setup : callable or WorkerEnvironment, optional
        Build the environment with this on every worker (registered on the
        client, once per client and name). Not needed when the runner was
        given ``worker_setup=``.
    environment : str, optional
        The name of the environment to use. By default the one named
        ``"environment"``, if the workers have it; with neither ``setup``
        nor a worker environment, ``fn`` gets no keyword arguments.
    ordered : bool
        Yield results in input order (default), or as they finish.
    with_index : bool
        Yield ``(index, result)`` pairs; useful when ``ordered=False``.
    max_in_flight : int, optional
        How many items may be submitted but not yet handed out. By default
        what two tasks per worker thread need, at least 128 and at most
        100 000. Items go to the workers in batches sized from the measured
        time per item (see :mod:`dask_runners.batching`).
    on_error : {"raise", "skip", "return"}
        What a failing item does. ``"raise"``: every other result is
        yielded, then :class:`ParallelForError` lists the failures.
        ``"skip"``: failures are left out (see :attr:`ParallelFor.failures`).
        ``"return"``: an :class:`ItemFailure` is yielded in the item's place.
    max_failures : int, optional
        Stop (cancel what is in flight and raise :class:`ParallelForError`)
        once more than this many items have failed.
    progress : bool, optional
        Show progress: a bar in a terminal, a line every 30 s in a log.
        Default: only in a terminal.
    output_dir : str or Path, optional
        Also write every result to JSON Lines shards here; see
        :mod:`dask_runners.shards`. Run again into the same directory, the
        map computes only the items without a line there, and yields only
        their results (:attr:`ParallelFor.skipped` counts the others).
    shard_size : int
        How many consecutive items share a shard.
    if_exists : {"resume", "restart", "error"}
        What results already in ``output_dir`` do: their items are skipped
        (default; a directory of a different map is an error), they are
        deleted and the map starts over, or they are an error.

    Returns
    -------
    ParallelFor
        An iterator over the results.

    Examples
    --------
    >>> results = list(parallel_for(lambda x, scale=1: x * scale, range(3)))  # no client: here
    >>> results
    [0, 1, 2]
    """
    return ParallelFor(
        fn, items, client=client, setup=setup, environment=environment, ordered=ordered,
        with_index=with_index, max_in_flight=max_in_flight, on_error=on_error,
        max_failures=max_failures, progress=progress, output_dir=output_dir, shard_size=shard_size,
        if_exists=if_exists,
    )
