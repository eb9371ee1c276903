"""Run unmodified Dask client code on the client rank, as ``python`` would.

``dask-runner run script.py args...`` (or ``-m module``) starts a runner for
the detected launcher; on the client rank it runs the script through
:mod:`runpy` with ``__name__ == "__main__"``, ``sys.argv`` and ``sys.path[0]``
as ``python script.py args...`` would set them. ``Client()`` with no
arguments connects to the runner's scheduler, with the job's TLS
credentials. The other ranks serve. The script's exit status becomes the
job's.
"""

from __future__ import annotations

import os
import runpy
import sys

import dask.config

from .at_exit import close_clients_left_open
from .registry import Runner


def client_config(runner) -> dict:
    """dask config under which ``Client()`` connects to ``runner``'s scheduler."""
    config = {"scheduler-address": runner.scheduler_address}
    credentials = runner.credentials
    if credentials is not None:
        config.update({
            "distributed.comm.require-encryption": True,
            "distributed.comm.tls.ca-file": credentials.certificate,
            "distributed.comm.tls.client.cert": credentials.certificate,
            "distributed.comm.tls.client.key": credentials.key,
        })
    return config


def run_as_main(target: str, args: list[str], module: bool = False) -> None:
    """Run a script or module as ``__main__`` with ``args`` as its arguments."""
    if module:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
        return
    sys.argv = [target, *args]
    sys.path[0] = os.path.dirname(os.path.abspath(target))
    runpy.run_path(target, run_name="__main__")


def run_client_code(
    target: str, args: list[str], *, module: bool = False, launcher: str | None = None, **runner_options
) -> None:
    """Serve on every rank; run ``target`` on the client rank.

    Parameters
    ----------
    target : str
        A script path, or with ``module=True`` a module name.
    args : list of str
        The script's arguments.
    launcher : str, optional
        Force a launcher instead of detecting one.
    **runner_options
        Passed to :func:`dask_runners.Runner`.
    """
    with Runner(launcher, **runner_options) as runner:
        with dask.config.set(client_config(runner)):
            try:
                run_as_main(target, args, module=module)
            finally:
                close_clients_left_open()
