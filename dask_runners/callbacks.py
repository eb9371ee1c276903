"""Lifecycle callbacks, and passing the job context to functions that ask for it.

Give a runner ``callbacks=[...]``: objects whose methods, where they exist,
are called at these moments, each on the rank where it happens:

=========================  ============  =============================================
method                     rank          when
=========================  ============  =============================================
``on_begin``               client        the cluster is up; the client code is about to run
``on_end``                 client        the client code ended (``status``, ``error``)
``on_completed``           client        the cluster has shut down (``status``, ``error``)
``on_scheduler_start``     scheduler     the scheduler runs and its address is published
``on_scheduler_stop``      scheduler     the scheduler closed (``exit_code``)
``on_worker_start``        worker        the worker (or nanny) runs
``on_worker_stop``         worker        the worker closed (``exit_code``)
=========================  ============  =============================================

``status`` is ``"succeeded"``, ``"failed"`` or ``"interrupted"``; ``error`` is
``"ValueError: ..."`` or ``None``. A method receives only the arguments it
names, and the job's :class:`~dask_runners.job.JobContext` when it has a
parameter named ``job`` or annotated ``JobContext``. A callback that raises is
logged and skipped: it never changes the job's outcome. Scheduler and worker
callbacks run in the event loop: keep them quick.
"""

from __future__ import annotations

import inspect
import logging

from .exit_status import exit_status

logger = logging.getLogger(__name__)


def _wants_job(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    named = getattr(annotation, "__name__", annotation)
    return parameter.name == "job" or named == "JobContext"


def call_with_job(function, job, /, **available):
    """Call ``function`` with the arguments it names from ``available``.

    ``job`` goes to a parameter named ``job`` or annotated ``JobContext``.
    A function that takes ``**kwargs`` gets everything.
    """
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return function(job=job, **available)
    arguments = {}
    for parameter in parameters:
        if _wants_job(parameter):
            arguments[parameter.name] = job
        elif parameter.name in available:
            arguments[parameter.name] = available[parameter.name]
    return function(**arguments)


def emit(callbacks, event: str, job, **details) -> None:
    """Tell every callback that has a method named ``event``; never raise."""
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is None:
            continue
        try:
            call_with_job(method, job, **details)
        except Exception:
            logger.exception("callback %r failed in %s; carrying on", callback, event)


def outcome(exc: BaseException | None) -> tuple[str, str | None]:
    """The ``status`` and ``error`` of client code that ended with ``exc``."""
    if exit_status(exc) == 0:
        return "succeeded", None
    error = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted", error
    return "failed", error
