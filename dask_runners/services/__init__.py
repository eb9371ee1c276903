"""What each rank serves once its role is known.

* :mod:`~dask_runners.services.scheduler`: start the scheduler, publish its
  contact, serve, run the shutdown sequence, close;
* :mod:`~dask_runners.services.worker`: the worker rank's worker, and the
  worker beside the scheduler or the client (``exclusive_workers=False``);
* :mod:`~dask_runners.services.client`: the client rank's link to the cluster,
  news of a stop while the client code runs, and the shutdown it asks for.

A service is given the state and settings it needs (a
:class:`~dask_runners.state.RankState`, a :class:`Hooks`, its options), never
the runner, so that nothing here imports the runner.
"""

from __future__ import annotations

from ..callbacks import emit


class Hooks:
    """The runner's hooks, as the services call them (see :doc:`/writing-runners`).

    Each attribute is the runner's coroutine method of the same name, bound.
    (Plain classes here and in the other per-rank records: a dataclass costs
    every rank its code generation at import.)
    """

    __slots__ = (
        "before_scheduler_start",
        "set_scheduler_address",
        "on_scheduler_start",
        "on_scheduler_close",
        "before_worker_start",
        "get_worker_name",
        "on_worker_start",
        "before_client_start",
    )

    def __init__(self, runner):
        for name in self.__slots__:
            setattr(self, name, getattr(runner, name))


class Notifier:
    """Tells the lifecycle callbacks of events on this rank (see :mod:`dask_runners.callbacks`)."""

    def __init__(self, callbacks=(), job=None):
        self.callbacks = tuple(callbacks)
        self.job = job

    def __call__(self, event: str, **details) -> None:
        emit(self.callbacks, event, self.job, **details)
