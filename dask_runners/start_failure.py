"""A failed start that the script does not catch: one traceback for the job, one line on every other rank.

When a job cannot start, every rank usually meets the same error: too few
ranks, a setting that cannot work, the scheduler's failure passed on through
its file, a deadline run out. Python would print the same traceback on each
rank, and the job's output would repeat it once per rank. So when a
:class:`~dask_runners.RunnerError` leaves the runner's start and nothing in
the script catches it:

* the scheduler rank (rank 0 unless ``scheduler_rank`` says otherwise, and
  rank 0 in a job too small to have it) prints its traceback, as Python would;
* every other rank prints one line, its rank and the error::

      rank 3: dask_runners.exceptions.WorldTooSmallError: SLURM_NTASKS=2 but at least 3 are needed ...

The message names the values found and the fix, so that line is the whole
story. The error is raised as before: ``except WorldTooSmallError`` catches
it on every rank, and an uncaught one still ends the rank with status 1. An
error of any other type, such as one raised by your own ``worker_setup`` or
hook, keeps its traceback on every rank: it may differ from rank to rank.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

from .exceptions import RunnerError

#: The start failure this process prints in one line if it ends the script, and its rank.
_briefly_printed: tuple[BaseException, int] | None = None


@contextlib.contextmanager
def one_traceback_per_job(rank: int | None, world_size: int | None, scheduler_rank: int):
    """Print a :class:`RunnerError` that leaves the block and the script briefly, unless on the traceback's rank."""
    try:
        yield
    except RunnerError as e:
        has_scheduler_rank = world_size is None or scheduler_rank < world_size
        traceback_rank = scheduler_rank if has_scheduler_rank else 0
        if rank is not None and rank != traceback_rank:
            _print_briefly_if_uncaught(e, rank)
        raise


def _print_briefly_if_uncaught(exc: BaseException, rank: int) -> None:
    global _briefly_printed
    _briefly_printed = (exc, rank)
    if not getattr(sys.excepthook, "prints_start_failures_briefly", False):
        sys.excepthook = _briefly(sys.excepthook)


def _briefly(previous):
    def excepthook(exc_type, exc, tb):
        if _briefly_printed is None or exc is not _briefly_printed[0]:
            previous(exc_type, exc, tb)
            return
        error = "".join(traceback.format_exception_only(exc_type, exc)).rstrip()
        print(f"rank {_briefly_printed[1]}: {error}", file=sys.stderr, flush=True)

    excepthook.prints_start_failures_briefly = True
    return excepthook
