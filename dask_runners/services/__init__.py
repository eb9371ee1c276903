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

import dataclasses
from collections.abc import Awaitable, Callable

from ..callbacks import emit


@dataclasses.dataclass(frozen=True)
class Hooks:
    """The runner's hooks, as the services call them (see :doc:`/writing-runners`)."""

    before_scheduler_start: Callable[[], Awaitable]
    set_scheduler_address: Callable[[object], Awaitable]
    on_scheduler_start: Callable[[object], Awaitable]
    on_scheduler_close: Callable[[], Awaitable]
    before_worker_start: Callable[[], Awaitable]
    get_worker_name: Callable[[], Awaitable]
    on_worker_start: Callable[[object], Awaitable]
    before_client_start: Callable[[], Awaitable]

    @classmethod
    def of(cls, runner) -> Hooks:
        """The hooks of ``runner``, bound."""
        return cls(**{field.name: getattr(runner, field.name) for field in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class Notifier:
    """Tells the lifecycle callbacks of events on this rank (see :mod:`dask_runners.callbacks`)."""

    callbacks: tuple = ()
    job: object = None

    def __call__(self, event: str, **details) -> None:
        emit(self.callbacks, event, self.job, **details)
