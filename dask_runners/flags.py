"""Cluster options in command-line form (``--nthreads``, ``--protocol``, ...), as runner options."""

from __future__ import annotations

import warnings


def runner_options_from_flags(
    *, interface=None, protocol=None, nthreads=None, memory_limit=None, local_directory=None,
    nanny=False, dashboard=True, dashboard_address=None, scheduler_port=None,
    worker_class="distributed.Worker", worker_options=None, **runner_options,
) -> dict:
    """Command-line style cluster options as runner options.

    The options are dask-mpi's (its functions' and its CLI's), which
    ``dask-runner serve`` shares: one translation for it and for
    :mod:`dask_runners.mpi`'s ``initialize`` and ``execute``. Options left
    ``None`` are not passed, so distributed's own defaults and dask config
    apply. A ``protocol`` other
    than ``tls`` turns the job's TLS off (``security=False``). Without a
    dashboard, the scheduler's HTTP server takes any free port unless
    ``dashboard_address`` says otherwise.
    """
    if nanny:
        warnings.warn(
            "nanny=True is deprecated (as in dask-mpi); use worker_class='distributed.Nanny'",
            DeprecationWarning,
            stacklevel=3,
        )
        worker_class = "distributed.Nanny"
    if not dashboard and dashboard_address is None:
        dashboard_address = ":0"  # the scheduler's HTTP server (/health, /metrics) takes any free port
    scheduler = {"dashboard": dashboard, "dashboard_address": dashboard_address, "port": scheduler_port}
    worker = {"nthreads": nthreads, "memory_limit": memory_limit, "local_directory": local_directory or None}
    if protocol is not None:
        scheduler["protocol"] = worker["protocol"] = protocol
        if protocol.rstrip(":/") != "tls":
            runner_options.setdefault("security", False)
    return {
        "interface": interface,
        "scheduler_options": {k: v for k, v in scheduler.items() if v is not None},
        "worker_class": worker_class,
        "worker_options": {**{k: v for k, v in worker.items() if v is not None}, **(worker_options or {})},
        **runner_options,
    }
