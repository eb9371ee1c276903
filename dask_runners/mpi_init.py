"""MPI initialized with the interpreter free: a rank works while ``MPI_Init`` waits.

``from mpi4py import MPI`` calls ``MPI_Init_thread`` and holds the GIL until
it returns. Under Debian's Open MPI that is 0.25–0.3 s of a 4-rank job on
one node, most of it spent sleeping (in the probes of its PSM transports,
and waiting for the other ranks), with the CPU idle; no thread of the rank
can run meanwhile.
:func:`initialize_while` calls the same C function through :mod:`ctypes`,
which releases the GIL for the call, and runs the rank's early work in a
thread alongside it.

mpi4py is left as its own import would leave it: ``MPI_THREAD_MULTIPLE``
requested, ``MPI_ERRORS_RETURN`` on ``COMM_WORLD`` and ``COMM_SELF`` (its
``rc.errors = "exception"``), and ``MPI_Finalize`` called by mpi4py at the
end of the interpreter's exit. Where mpi4py is configured otherwise
(``mpi4py.rc`` or ``MPI4PY_RC_*``), where ``mpi4py.MPI`` is imported
already, or where the C function cannot be found, the work runs on the
calling thread and MPI is initialized the usual way, by mpi4py (or already was).
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: mpi4py's defaults for what its import does with MPI; another value is the user's to keep.
MPI4PY_DEFAULTS = {
    "initialize": True,
    "threads": True,
    "thread_level": "multiple",
    "finalize": None,
    "errors": "exception",
}


def initialize_while(work: Callable[[], T]) -> T:
    """Initialize MPI in this thread while another thread runs ``work``; return what ``work`` returned.

    Parameters
    ----------
    work : callable
        What the rank would otherwise do before or after ``MPI_Init``; it
        must not call MPI.

    Returns
    -------
    object
        ``work()``'s result, once both it and ``MPI_Init`` are done.

    Raises
    ------
    RuntimeError
        If ``MPI_Init_thread`` returns an error code.
    Exception
        Whatever ``work`` raised, after MPI is initialized: the caller can
        then end the whole job with ``MPI_Abort`` instead of leaving the
        other ranks waiting.
    """
    if "mpi4py.MPI" in sys.modules or not _mpi4py_at_defaults():
        result = work()
        importlib.import_module("mpi4py.MPI")  # MPI_Init, mpi4py's way
        return result
    MPI = _import_without_initializing()
    init_thread = _c_init_thread(MPI)
    if MPI.Is_initialized() or init_thread is None:  # initialized by other C code, or no symbol to call
        result = work()
        if not MPI.Is_initialized():
            MPI.Init_thread()
        return result
    side = _Side(work)
    side.start()
    provided = ctypes.c_int(-1)
    code = init_thread(None, None, MPI.THREAD_MULTIPLE, ctypes.byref(provided))  # the GIL is released
    if code != MPI.SUCCESS:
        side.join()
        raise RuntimeError(f"MPI_Init_thread() failed [error code: {code}]")
    for comm in (MPI.COMM_SELF, MPI.COMM_WORLD):
        comm.Set_errhandler(MPI.ERRORS_RETURN)
    return side.result()


def _mpi4py_at_defaults() -> bool:
    import mpi4py

    if any(f"MPI4PY_RC_{name.upper()}" in os.environ for name in MPI4PY_DEFAULTS):
        return False
    return all(getattr(mpi4py.rc, name, value) == value for name, value in MPI4PY_DEFAULTS.items())


def _import_without_initializing():
    """``mpi4py.MPI``, imported with ``MPI_Init`` left to us and ``MPI_Finalize`` to mpi4py at exit."""
    import mpi4py

    rc = mpi4py.rc
    saved = rc.initialize, rc.finalize
    rc.initialize, rc.finalize = False, True
    try:
        from mpi4py import MPI
    finally:
        rc.initialize, rc.finalize = saved
    return MPI


def _c_init_thread(MPI):
    """``MPI_Init_thread`` of the MPI library mpi4py loaded, as a ctypes function; None if it is not found.

    A handle of mpi4py's extension module finds the symbols of the
    libraries it was linked with, whichever MPI mpi4py chose.
    """
    try:
        function = ctypes.CDLL(MPI.__file__).MPI_Init_thread
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    function.restype = ctypes.c_int
    return function


class _Side(threading.Thread):
    """The thread that runs the work; :meth:`result` waits for it and returns or raises what it did."""

    def __init__(self, work: Callable[[], T]):
        super().__init__(name="dask-runners-before-mpi", daemon=True)
        self.work = work
        self.value = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.work()
        except BaseException as e:  # re-raised in the caller's thread
            self.error = e

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.value
