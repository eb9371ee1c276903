"""Per-worker environments: heavy objects built once per worker, never per task.

A model, a tokenizer or a dataset index is expensive to build and to pickle.
A :class:`WorkerEnvironment` builds them on each worker, once, from a setup
function that returns a dict; tasks then read the dict with
:func:`worker_environment`, or get it as keyword arguments from
:func:`~dask_runners.parallel_for`.

Register an environment through the runner, so that each worker builds it
before it joins the cluster::

    def setup():
        return {"model": load_model("model.pt")}

    with SLURMRunner(worker_setup=setup) as runner:
        ...

or on a running cluster, from a client::

    client.register_plugin(WorkerEnvironment(setup))

The setup function should build its objects itself rather than capture them:
whatever it captures is pickled and shipped to every worker. A setup function
that pickles to more than :data:`LARGE_PICKLE` bytes draws a warning naming
what it captures.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import warnings
from collections.abc import Callable, Mapping

import cloudpickle
from dask.utils import format_bytes
from distributed import WorkerPlugin, get_worker

logger = logging.getLogger(__name__)

#: The name an environment goes by when none is given.
DEFAULT_NAME = "environment"
#: Pickled size (bytes) above which a setup or task function draws a warning.
LARGE_PICKLE = 1_000_000


class WorkerEnvironment(WorkerPlugin):
    """A dict of objects built once on each worker by a setup function.

    Parameters
    ----------
    setup : callable
        Called with no arguments on each worker; returns a mapping from names
        to objects (a model, a dataset, ...). It runs in a thread, so a long
        setup does not stall the worker's heartbeats.
    name : str
        The environment's name; tasks look it up by this name. Several
        environments may live side by side under different names.
    lazy : bool
        ``False`` (the default): build when the worker starts, before it
        joins the cluster, so a worker that is "there" is ready, and a setup
        that fails stops the job at once. ``True``: build on the first task
        that asks for it.
    teardown : callable, optional
        Called as ``teardown(env)`` when the worker closes, for example to
        release a GPU or close a file.

    Attributes
    ----------
    env : dict or None
        The built environment on a worker; ``None`` until built.
    """

    def __init__(
        self,
        setup: Callable[[], Mapping],
        *,
        name: str = DEFAULT_NAME,
        lazy: bool = False,
        teardown: Callable[[dict], object] | None = None,
    ):
        if not callable(setup):
            raise TypeError(f"setup must be a callable returning a dict, not {type(setup).__name__}")
        self.setup_function = setup
        self.name = name
        self.lazy = lazy
        self.teardown_function = teardown
        self.env: dict | None = None
        self._lock = threading.Lock()
        warn_if_large(setup, "the setup function")

    def __getstate__(self):
        # By value, so that a setup function defined in the job's script
        # reaches a worker in another process (a Nanny's child, or a worker
        # registered from a client) without importing that script.
        try:
            functions = cloudpickle.dumps((self.setup_function, self.teardown_function))
        except Exception as e:
            raise TypeError(
                f"the setup function of environment {self.name!r} cannot be sent to the workers "
                f"({e}){_captured(self.setup_function)}; make the objects inside the setup "
                "function instead of capturing them"
            ) from e
        return {
            "functions": functions,
            "name": self.name,
            "lazy": self.lazy,
        }

    def __setstate__(self, state):
        self.setup_function, self.teardown_function = cloudpickle.loads(state["functions"])
        self.name = state["name"]
        self.lazy = state["lazy"]
        self.env = None
        self._lock = threading.Lock()

    async def setup(self, worker):
        if not self.lazy:
            await asyncio.to_thread(self.get)

    def teardown(self, worker):
        if self.env is not None and self.teardown_function is not None:
            self.teardown_function(self.env)

    def get(self) -> dict:
        """The environment, built on the first call (thread-safe)."""
        with self._lock:
            if self.env is None:
                self.env = build(self.setup_function, self.name)
        return self.env


def build(setup: Callable[[], Mapping], name: str) -> dict:
    """Call ``setup`` and check that it returned a mapping with str keys."""
    env = setup()
    if not isinstance(env, Mapping):
        raise TypeError(
            f"the setup function of environment {name!r} returned {type(env).__name__}; "
            "it must return a dict such as {'model': model}"
        )
    bad = [key for key in env if not isinstance(key, str) or not key.isidentifier()]
    if bad:
        raise TypeError(
            f"environment {name!r} has keys {bad!r}; keys must be valid Python names, "
            "because tasks receive them as keyword arguments"
        )
    return dict(env)


def as_environment(setup, name: str = DEFAULT_NAME) -> WorkerEnvironment:
    """``setup`` itself if it is a :class:`WorkerEnvironment`, else one around it."""
    if isinstance(setup, WorkerEnvironment):
        return setup
    return WorkerEnvironment(setup, name=name)


def worker_environment(name: str = DEFAULT_NAME) -> dict:
    """The environment ``name`` of the worker running the current task.

    Call it inside a task. It builds a lazy environment on first use.

    Raises
    ------
    LookupError
        If this worker has no environment of that name.
    """
    worker = get_worker()
    plugin = worker.plugins.get(name)
    if not isinstance(plugin, WorkerEnvironment):
        known = sorted(n for n, p in worker.plugins.items() if isinstance(p, WorkerEnvironment))
        raise LookupError(
            f"worker {worker.name} has no environment named {name!r} (it has {known}); "
            "give the runner worker_setup=..., or pass setup=... to parallel_for, "
            "or register WorkerEnvironment(setup, name=...) with client.register_plugin"
        )
    return plugin.get()


def warn_if_large(function: Callable, what: str) -> None:
    """Warn when ``function`` pickles to more than :data:`LARGE_PICKLE` bytes."""
    try:
        size = len(cloudpickle.dumps(function))
    except Exception as e:  # an unpicklable capture is reported where it is shipped
        logger.debug("could not pickle %s to measure it: %r", what, e)
        return
    if size <= LARGE_PICKLE:
        return
    warnings.warn(
        f"{what} {getattr(function, '__qualname__', function)!r} pickles to {format_bytes(size)}"
        f"{_captured(function)}; it is shipped to every worker. Build large objects inside the "
        "setup function (load them from a file) instead of capturing them.",
        stacklevel=3,
    )


def _captured(function: Callable) -> str:
    """Name what ``function`` captures that cannot be pickled, or the largest capture."""
    captures = {}
    if inspect.ismethod(function):
        captures["self"] = function.__self__
        function = function.__func__
    closure = inspect.getclosurevars(function) if inspect.isfunction(function) else None
    if closure is not None:
        captures.update(closure.nonlocals)
        captures.update(closure.globals)
    sizes = {}
    for name, value in captures.items():
        try:
            sizes[name] = len(cloudpickle.dumps(value))
        except Exception:
            return f" (it captures {name!r}, a {type(value).__name__}, which cannot be pickled)"
    if not sizes:
        return ""
    largest = max(sizes, key=sizes.get)
    return f" (it captures {largest!r}, {format_bytes(sizes[largest])})"
