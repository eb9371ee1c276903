"""dask-mpi's ``initialize``, ``execute`` and ``send_close_signal``, on :class:`~dask_runners.MPIRunner`.

Moving from dask-mpi is an import change; the names are imported from
:mod:`dask_runners.mpi`, as they were from ``dask_mpi``::

    from dask_runners.mpi import initialize   # was: from dask_mpi import initialize

The functions take dask-mpi's parameters with its meaning, plus the runner's
own options by keyword (``timeouts=``, ``security=``, ...). What differs, on
purpose:

* the cluster runs on mutual TLS with credentials made for the job, unless a
  ``protocol`` other than ``tls`` is asked for;
* an exception in ``execute``'s client function, or in the client code after
  ``initialize()``, prints its traceback once and ends every rank with a
  non-zero status, instead of leaving the job hanging;
* a job too small for its layout fails at once with
  :class:`~dask_runners.WorldTooSmallError` (also importable as
  ``WorldTooSmallException``), which says what to run. The sizes are
  dask-mpi's: ``initialize`` needs 3 ranks; ``execute`` needs
  ``1 + max(client_rank, scheduler_rank, exclusive_workers)``, so that
  ``mpirun -n 1`` with ``exclusive_workers=False`` is a whole cluster in one
  process, and ``client_rank == scheduler_rank`` runs the scheduler beside
  the client function.
"""

from __future__ import annotations

import logging

import dask.config

from ..at_exit import close_at_exit
from ..client_code import client_config
from ..exceptions import WorldTooSmallException
from ..flags import runner_options_from_flags
from ..mpi_runner import MPIRunner
from ..roles import Role

__all__ = ["WorldTooSmallException", "execute", "initialize", "send_close_signal"]

logger = logging.getLogger(__name__)

#: The client rank's runner while the client code runs after ``initialize()``.
_active: MPIRunner | None = None


class _DaskMPIRunner(MPIRunner):
    """An MPIRunner whose service ranks may keep their process (``exit=False``).

    A rank whose service ended with a failure status leaves all the same, so
    that a failed job ends non-zero everywhere. ``min_workers`` relaxes the
    layout's size check to dask-mpi's (see :class:`~dask_runners.roles.RankLayout`).
    """

    def __init__(self, *, exit: bool = True, min_workers: int = 1, **kwargs):
        super().__init__(**kwargs)
        self._exit = exit
        self.layout = self.layout._replace(min_workers=min_workers)

    def exit_process(self, exit_code: int):
        if self._exit or exit_code != 0:
            super().exit_process(exit_code)


def initialize(
    interface=None,
    nthreads=1,
    local_directory=None,
    memory_limit="auto",
    nanny=False,
    dashboard=True,
    dashboard_address=":8787",
    protocol=None,
    worker_class="distributed.Worker",
    worker_options=None,
    comm=None,
    exit=True,
    **runner_options,
):
    """Start a Dask cluster on the ranks of ``comm``; return on the client rank.

    Rank 0 runs the scheduler, rank 1 returns and runs the rest of the script
    (where ``Client()`` connects to this cluster, with its credentials), every
    other rank runs a worker. When the script ends on rank 1 the cluster shuts
    down, with a failure status if the script raised.

    Parameters are dask-mpi's: ``interface``, ``nthreads``,
    ``local_directory``, ``memory_limit``, ``nanny`` (deprecated),
    ``dashboard``, ``dashboard_address``, ``protocol``, ``worker_class``,
    ``worker_options``, ``comm`` (default ``MPI.COMM_WORLD``), and:

    Parameters
    ----------
    exit : bool
        ``True``: the scheduler and worker ranks leave the process when the
        cluster closes. ``False``: they return ``False`` then (the client
        rank returns ``True`` at once), and the client rank calls
        :func:`send_close_signal` when its Dask work is done (else the
        cluster shuts down when the script ends).
    **runner_options
        More options for :class:`~dask_runners.MPIRunner` (``timeouts``, ...).

    Returns
    -------
    bool
        Whether this rank is the client rank.
    """
    global _active
    runner = _DaskMPIRunner(exit=exit, comm=comm, **runner_options_from_flags(
        interface=interface, protocol=protocol, nthreads=nthreads, memory_limit=memory_limit,
        local_directory=local_directory, nanny=nanny, dashboard=dashboard,
        dashboard_address=dashboard_address, worker_class=worker_class,
        worker_options=worker_options, **runner_options,
    ))
    runner.__enter__()  # a service rank returns only with exit=False, after the cluster closed
    if runner.role is not Role.client:
        return False
    dask.config.set(client_config(runner))
    _active = runner
    # At the end of the script the cluster shuts down, failed if the script
    # raised; with exit=False only if send_close_signal() was not called.
    close_at_exit(runner)
    return True


def send_close_signal():
    """Shut the cluster down from the client rank; the other ranks then return or leave.

    Needed only after ``initialize(exit=False)``; with ``exit=True`` it
    happens when the script ends.
    """
    global _active
    runner, _active = _active, None
    if runner is not None:
        runner.__exit__(None, None, None)
        return
    from distributed import Client

    with Client() as client:  # a cluster this process did not start: dask-mpi's way
        client.shutdown()


def execute(
    client_function=None,
    client_args=(),
    client_kwargs=None,
    client_rank=1,
    scheduler=True,
    scheduler_rank=0,
    scheduler_address=None,
    scheduler_port=None,
    scheduler_file=None,
    interface=None,
    nthreads=1,
    local_directory="",
    memory_limit="auto",
    nanny=False,
    dashboard=True,
    dashboard_address=":8787",
    protocol=None,
    exclusive_workers=True,
    worker_class="distributed.Worker",
    worker_options=None,
    worker_name=None,
    comm=None,
    **runner_options,
):
    """Run ``client_function`` on ``client_rank`` with a Dask cluster on the other ranks.

    Every rank returns once the cluster has closed (after the client
    function returned), as in dask-mpi. If the client function raises, the
    cluster shuts down with a failure status: the client rank re-raises (one
    traceback) and every other rank leaves with exit code 1.

    Parameters are dask-mpi's. Notably: ``client_function`` not callable
    runs no client code: the cluster serves until a client shuts it down
    (give ``scheduler_file`` to reach it with :func:`dask_runners.connect`);
    ``exclusive_workers=False`` runs a worker on the scheduler and client
    ranks too; ``scheduler=False`` adds the workers to the cluster at
    ``scheduler_file`` or ``scheduler_address``; ``worker_name`` names the
    workers ``{worker_name}-{rank}``. ``**runner_options`` go to
    :class:`~dask_runners.MPIRunner`.
    """
    has_client = callable(client_function)
    if not scheduler and scheduler_address is None and scheduler_file is None:
        raise ValueError("Must provide scheduler_address or scheduler_file if executing with scheduler=False")
    # dask-mpi's size rule, 1 + max(client_rank, scheduler_rank, exclusive_workers):
    # the service ranks must exist, and exclusive workers need a second rank.
    shared_and_exclusive = exclusive_workers and client_rank == scheduler_rank
    runner = _DaskMPIRunner(exit=False, comm=comm, min_workers=int(shared_and_exclusive), **runner_options_from_flags(
        interface=interface, protocol=protocol, nthreads=nthreads, memory_limit=memory_limit,
        local_directory=local_directory, nanny=nanny, dashboard=dashboard,
        dashboard_address=dashboard_address, scheduler_port=scheduler_port,
        worker_class=worker_class, worker_options=worker_options, scheduler=scheduler,
        client=has_client, scheduler_rank=scheduler_rank, client_rank=client_rank,
        exclusive_workers=exclusive_workers, worker_name=worker_name,
        scheduler_file=scheduler_file, scheduler_address=scheduler_address, **runner_options,
    ))
    runner.__enter__()  # service ranks return here once the cluster has closed
    if runner.role is not Role.client:
        return
    if runner.n_workers == 0:
        logger.warning(
            "%s: no rank of this %d-rank job runs a worker; the client function "
            "sees only workers that join from elsewhere (run more ranks, or "
            "exclusive_workers=False)",
            runner.state.log_prefix,
            runner.world_size,
        )
    dask.config.set(client_config(runner))
    try:
        client_function(*client_args, **(client_kwargs or {}))
    except BaseException as e:
        runner.__exit__(type(e), e, e.__traceback__)
        raise
    runner.__exit__(None, None, None)
