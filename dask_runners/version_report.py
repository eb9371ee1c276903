"""distributed's version report, made while a rank has nothing else to do.

distributed sends a version report (:func:`distributed.versions.get_versions`)
with a client's first connection and with a worker's registration, and the
scheduler makes its own at the first of either, to compare them. The
report's package versions (read from the installed packages' metadata) and
the processor's name (``platform.uname().processor``, a ``uname -p``
subprocess on Linux) are cached for the process, and the first report costs
a process 10-20 ms of CPU. That is on the path to the first result: a
worker's registration and a client's connection wait for it on both sides.

So a rank that is idle makes the report early, in a thread, and distributed
later finds it cached:

* a client rank, or a worker rank whose worker runs in its own process (a
  nanny's worker process reports for itself), while it waits for the
  scheduler's contact;
* the scheduler's rank once it has published its contact and waits for the
  first connection;
* under ``MPIRunner``, every rank while ``MPI_Init`` runs
  (:mod:`dask_runners.mpi_init`).

A process makes it once.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

THREAD_NAME = "dask-runners-version-report"

_lock = threading.Lock()
_begun = False


def make() -> None:
    """Make the report now, on this thread, unless it is made or being made already."""
    if _claim():
        _report()


def make_in_background() -> None:
    """Make the report in a daemon thread, unless it is made or being made already."""
    if _claim():
        threading.Thread(target=_report_quietly, name=THREAD_NAME, daemon=True).start()


def _claim() -> bool:
    global _begun
    with _lock:
        claimed, _begun = not _begun, True
    return claimed


def _report() -> None:
    from distributed.versions import get_versions

    get_versions()


def _report_quietly() -> None:
    """The report, for a thread: distributed makes it again where it needs it, and says what fails then."""
    try:
        _report()
    except Exception:
        logger.debug("the early version report failed", exc_info=True)
