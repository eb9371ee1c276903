"""The runner's finalizer: the cluster of a script that has no ``with`` block closes when the script ends.

A runner started by its first use (``client = Client(SLURMRunner())``) or by
dask-mpi's ``initialize()`` has no block to leave. :func:`close_at_exit`
registers what leaving it would do, for the end of the interpreter:

1. the ``Client`` objects the script left open close, so that none of them
   sees its cluster go and logs a lost connection;
2. the runner leaves as from a ``with`` block, with the exception that ended
   the script (a signal's :class:`~dask_runners.JobInterrupted` included):
   the cluster shuts down, every rank with the script's exit status.

A failure of the cluster that the script never saw (the scheduler rank was
lost during its last line) ends the process with that failure's status, as
``__exit__`` would raise it. One case cannot be told: ``sys.exit(n)`` at the
top level of the script ends the client rank with ``n``, but Python says so
to no one, and the other ranks leave with 0.

The client rank's interpreter also skips its last garbage collections
(:func:`collect_no_garbage_at_exit`), however its cluster closed.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys

from distributed.core import Status

from .exceptions import JobInterrupted

logger = logging.getLogger(__name__)

#: The exception that ended the script, seen by :data:`sys.excepthook`.
_uncaught: BaseException | None = None


def close_at_exit(runner) -> None:
    """Shut ``runner``'s cluster down when the interpreter exits, unless it is closed by then."""
    _remember_uncaught_exceptions()
    atexit.register(_close, runner)


def _remember_uncaught_exceptions() -> None:
    previous = sys.excepthook
    if getattr(previous, "remembers_for_dask_runners", False):
        return

    def remember(exc_type, exc, tb):
        note_uncaught(exc)
        previous(exc_type, exc, tb)

    remember.remembers_for_dask_runners = True
    sys.excepthook = remember


def note_uncaught(exc: BaseException) -> None:
    """Note ``exc`` as the exception that ended the script (a hook that prints it itself calls this)."""
    global _uncaught
    _uncaught = exc


def script_ending(state) -> BaseException | None:
    """The exception the script ended with, as far as this process can tell.

    An uncaught exception, else the signal that interrupted the client code
    (its :class:`~dask_runners.JobInterrupted` is a ``SystemExit``, which
    Python hands to no hook).
    """
    if _uncaught is not None:
        return _uncaught
    if state.signal_received is not None:
        return JobInterrupted(state.signal_received, state.signal_exit)
    return None


def _close(runner) -> None:
    if runner.status is Status.closed:  # left its block, or send_close_signal() / close() ran
        return
    close_clients_left_open()
    exc = script_ending(runner.state)
    try:
        runner.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)
    except (SystemExit, Exception) as failure:  # one the script never saw: its status is the job's
        logger.error("%s: %s", runner.state.log_prefix, failure)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        code = getattr(failure, "code", 1)
        os._exit(code if isinstance(code, int) and code else 1)


def close_clients_left_open() -> None:
    """Close the ``Client`` objects the script left open, before the cluster goes.

    Code written for a long-lived cluster often ends with ``client = Client()``
    still open, and a client still connected when the workers stop tries to
    reconnect and prints tracebacks. Python would close it at exit, after the
    cluster; the runner closes it first.
    """
    from distributed import Client

    for client in list(Client._instances):
        if client.status not in ("closing", "closed"):
            client.close()


def collect_no_garbage_at_exit() -> None:
    """Have this interpreter's exit skip its garbage collections.

    When Python exits it clears every module and runs full garbage
    collections over what remains, which with distributed imported takes a
    noticeable share of a short job's teardown. On the client rank the
    whole job waits for that exit: every other rank has left, or waits in
    ``MPI_Finalize``. At exit the hook registered here moves every object
    the collector tracks out of its reach (:func:`gc.freeze`), so the exit
    frees what reference counting frees and leaves the rest to the
    operating system.

    ``atexit`` handlers, ``weakref.finalize`` callbacks and logging's flush
    run as before, and what the modules hold is freed as before when they
    are cleared. Only an object in a reference cycle at exit is not freed,
    and its ``__del__`` does not run, which Python does not promise either.
    Called on the client rank as it starts, so that the hook is in place
    before the interpreter exits: one registered while ``atexit`` handlers
    run (a runner closed by :func:`close_at_exit`) would never run.
    Registers once per process.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
