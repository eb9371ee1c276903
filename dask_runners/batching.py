"""How :func:`~dask_runners.parallel_for` groups items into tasks.

A task costs the scheduler and the network about a millisecond whatever it
does, so a map of tiny items sent one item per task is paced by the round
trips, not the work. A map of slow items (seconds each) packed many to a
task leaves workers idle while one works through its batch. So the batch
size follows the measured time per item:

* the first tasks carry one item each, two per worker thread, to measure;
* from then on a task carries about :data:`TARGET_TASK_SECONDS` of work,
  between 1 and :data:`MAX_BATCH` items;
* when the number of items is known, a batch is never larger than an even
  share of what is left over two tasks per thread, so that the end of the map
  still spreads over every thread, but never smaller than
  :data:`MIN_TASK_SECONDS` of work, as a task costs a round trip;
* about two tasks per thread are kept in flight, so a thread that finishes
  finds the next task waiting; by default the items in flight (submitted, or
  done and waiting for their turn in input order) are bounded by what that
  needs, at least :data:`MIN_WINDOW` and at most :data:`MAX_WINDOW`; an
  explicit ``max_in_flight`` is a hard bound.
"""

from __future__ import annotations

import math

#: About how long one task should work: long against a task's round trip (about 1 ms).
TARGET_TASK_SECONDS = 0.2
#: The least work a task carries at the end of a map, when batches shrink.
MIN_TASK_SECONDS = 0.05
#: Tasks in flight per worker thread.
TASKS_PER_THREAD = 2
MAX_BATCH = 10_000
MIN_WINDOW = 128
MAX_WINDOW = 100_000
#: Weight of the newest measurement in the running estimate of an item's time.
SMOOTHING = 0.3


class BatchSizer:
    """Batch sizes and the in-flight bound, from the time per item measured so far.

    Parameters
    ----------
    threads : int
        Worker threads of the cluster.
    total : int or None
        How many items the map has, if known.
    max_in_flight : int or None
        A hard bound on the items in flight, if given.
    """

    def __init__(self, threads: int, total: int | None = None, max_in_flight: int | None = None):
        self.threads = max(threads, 1)
        self.total = total
        self.max_in_flight = max_in_flight
        #: Seconds per item, once measured.
        self.item_seconds: float | None = None

    def observe(self, items: int, seconds: float) -> None:
        """Take in that a task of ``items`` items worked ``seconds``."""
        if items < 1:
            return
        measured = max(seconds, 0.0) / items
        if self.item_seconds is None:
            self.item_seconds = measured
        else:
            self.item_seconds += SMOOTHING * (measured - self.item_seconds)

    def batch_size(self, submitted: int) -> int:
        """How many items the next task carries, after ``submitted`` items went out."""
        if self.item_seconds is None:
            size = 1
        elif self.item_seconds <= 0:
            size = MAX_BATCH
        else:
            size = min(MAX_BATCH, max(1, round(TARGET_TASK_SECONDS / self.item_seconds)))
        if self.total is not None:
            left = max(self.total - submitted, 1)
            share = math.ceil(left / (self.threads * TASKS_PER_THREAD))
            # Shrink towards the end so every thread finishes at about the same
            # time, but not below MIN_TASK_SECONDS of work: each task costs a round trip.
            floor = 1 if not self.item_seconds else max(1, round(MIN_TASK_SECONDS / self.item_seconds))
            size = min(size, max(share, floor))
        if self.max_in_flight is not None:
            size = min(size, max(1, self.max_in_flight // (self.threads * TASKS_PER_THREAD)))
        return size

    def window(self, batch_size: int) -> int:
        """How many items may be in flight, with batches of ``batch_size``."""
        if self.max_in_flight is not None:
            return self.max_in_flight
        wanted = 2 * batch_size * self.threads * TASKS_PER_THREAD
        return min(MAX_WINDOW, max(MIN_WINDOW, 8 * self.threads, wanted))
