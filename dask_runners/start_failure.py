"""A failed start: one traceback for the job, one line on every other rank.

When a job cannot start, every rank usually meets the same error: too few
ranks, a setting that cannot work, the scheduler's failure passed on through
its file, a deadline run out. Python would print the same traceback on each
rank, and the job's output would repeat it once per rank. So a
:class:`~dask_runners.RunnerError` that leaves a synchronous runner's start
(``with SLURMRunner() as runner:``) is printed, if nothing in the script
catches it:

* in full, as Python would, on the scheduler rank (rank 0 unless
  ``scheduler_rank`` says otherwise, and rank 0 in a job too small to have
  it), and on a rank that does not know its rank;
* in one line on every other rank, its rank and the error::

      rank 1: dask_runners.exceptions.WorldTooSmallError: SLURM_NTASKS=2 but at least 3 are needed ...

The message names the values found and the fix, so that line is the whole
story. The error is raised as before: ``except WorldTooSmallError`` catches
it on every rank, and an uncaught one still ends the rank with status 1.
:class:`~dask_runners.MPIRunner`, which ends the whole job at the first
failing rank, prints that rank's failure by the same rule before it aborts.

An error of any other type, such as one raised by your own ``worker_setup``
or hook, keeps its traceback on every rank: it may differ from rank to rank.
So does every error of an asynchronous runner, which leaves its process's
output to the code that owns the process.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

from .exceptions import RunnerError

#: The attribute that marks an error to print in one line, holding its rank.
_ONE_LINE_RANK = "_dask_runners_one_line_rank"
#: The attribute that marks the excepthook that prints marked errors.
_HOOK = "_dask_runners_prints_marked_errors"


def traceback_rank(world_size: int | None, scheduler_rank: int) -> int:
    """The rank that prints a failed start's traceback: the scheduler's, or 0 when the job is smaller."""
    return scheduler_rank if world_size is None or scheduler_rank < world_size else 0


def in_one_line(exc: BaseException, rank: int | None, world_size: int | None, scheduler_rank: int) -> bool:
    """Whether rank ``rank``'s failed start ``exc`` is printed in one line."""
    return isinstance(exc, RunnerError) and rank is not None and rank != traceback_rank(world_size, scheduler_rank)


def print_start_failure(exc: BaseException, rank: int | None, world_size: int | None, scheduler_rank: int) -> None:
    """Print rank ``rank``'s failed start ``exc`` now: in one line, or with its traceback."""
    if in_one_line(exc, rank, world_size, scheduler_rank):
        _print_in_one_line(exc, rank)
    else:
        traceback.print_exception(exc)


@contextlib.contextmanager
def one_traceback_per_job(rank: int | None, world_size: int | None, scheduler_rank: int):
    """Have a :class:`RunnerError` that leaves the block printed by :func:`print_start_failure`'s rule if uncaught."""
    try:
        yield
    except RunnerError as e:
        if in_one_line(e, rank, world_size, scheduler_rank):
            setattr(e, _ONE_LINE_RANK, rank)
            if not getattr(sys.excepthook, _HOOK, False):
                sys.excepthook = _printing_marked_errors_in_one_line(sys.excepthook)
        raise


def _print_in_one_line(exc: BaseException, rank: int) -> None:
    error = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    print(f"rank {rank}: {error}", file=sys.stderr, flush=True)


def _printing_marked_errors_in_one_line(previous):
    def excepthook(exc_type, exc, tb):
        rank = getattr(exc, _ONE_LINE_RANK, None)
        if rank is None:
            previous(exc_type, exc, tb)
            return
        from .at_exit import note_uncaught  # a runner started without `with` closes with this error

        note_uncaught(exc)
        _print_in_one_line(exc, rank)

    setattr(excepthook, _HOOK, True)
    return excepthook
