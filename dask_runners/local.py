"""A launcher of our own: N ranks of one script on this machine.

``dask-runner launch -n 4 script.py args...`` starts the script four times,
each with a rank in the environment (``RUNNERS_RANK``, ``RUNNERS_WORLD_SIZE``,
``RUNNERS_RUN_ID``), which the ``local`` launcher of
:mod:`dask_runners.launchers` reads. None of its variables starts with
``DASK_``, so none lands in the ranks' dask config. The ranks find each other
through a scheduler file in a private temporary directory, removed at the end,
so the same script runs here as under ``srun``: ``Runner()`` detects ``local``.

The launcher forwards SIGINT and SIGTERM to every rank. If a rank dies or
fails while others still run, it ends the others (SIGTERM, then SIGKILL
after a grace period) and returns that rank's status. Otherwise it returns
the client rank's (rank 1's) exit status. Every rank also asks the kernel to
send it SIGTERM if the launcher itself dies, so no rank outlives it.

:func:`run_here_locally` is ``Runner()``'s fallback when no launcher started
the process (``python script.py`` on a laptop): this process becomes the
launcher of the same command, one scheduler, one client and about one worker
per core. The number of workers is the dask config key
``runners.local.workers`` (environment: ``DASK_RUNNERS__LOCAL__WORKERS``);
``runners.local.fallback: false`` turns the fallback off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import dask.config

from .config import backoff_delays
from .exceptions import LauncherEnvironmentError
from .exit_status import exit_status
from .launchers import (
    LAUNCHER_VAR,
    LOCAL_RANK_VAR,
    LOCAL_RUN_ID_VAR,
    LOCAL_SCHEDULER_FILE_VAR,
    LOCAL_WORLD_SIZE_VAR,
)

logger = logging.getLogger(__name__)

CLIENT_RANK = 1
GRACE = 5.0  # seconds a rank has to leave after SIGTERM before SIGKILL


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the launcher dies (Linux prctl)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def launch(command: list[str], n_ranks: int, *, environ=None) -> int:
    """Run ``command`` as ``n_ranks`` ranks on this machine; return the job's status.

    Parameters
    ----------
    command : list of str
        The program and its arguments, for example
        ``[sys.executable, "script.py", "--epochs", "3"]``.
    n_ranks : int
        How many ranks to start.
    environ : mapping, optional
        The base environment; default ``os.environ``.
    """
    if n_ranks < 1:
        raise ValueError(f"n_ranks must be at least 1, not {n_ranks}")
    base = dict(os.environ if environ is None else environ)
    run_id = f"local-{os.getpid()}-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="dask-runners-") as private:
        base.update({
            LAUNCHER_VAR: "local",
            LOCAL_WORLD_SIZE_VAR: str(n_ranks),
            LOCAL_RUN_ID_VAR: run_id,
            LOCAL_SCHEDULER_FILE_VAR: os.path.join(private, "scheduler.json"),
        })
        ranks = [
            subprocess.Popen(command, env={**base, LOCAL_RANK_VAR: str(rank)}, preexec_fn=_die_with_parent)
            for rank in range(n_ranks)
        ]
        return _supervise(ranks)


def _supervise(ranks: list[subprocess.Popen]) -> int:
    received: list[int] = []

    def forward(signum, frame):
        received.append(signum)
        for proc in ranks:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed = _wait_for_all_or_a_failure(ranks, received)
        if failed is not None:
            _end(ranks)
            return exit_status(failed.returncode)
        client = ranks[CLIENT_RANK] if len(ranks) > CLIENT_RANK else ranks[0]
        return exit_status(client.returncode)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait_for_all_or_a_failure(ranks, received) -> subprocess.Popen | None:
    """Wait until every rank has exited, or one failed while others still run.

    After a forwarded signal the ranks get ``2 * GRACE`` to close; then the
    first rank still running counts as the failure and the rest are ended.
    """
    delays = backoff_delays(first=0.005, factor=1.5, cap=0.1)
    signalled_at = None
    while True:
        running = [proc for proc in ranks if proc.poll() is None]
        if not running:
            return None
        if received and signalled_at is None:
            signalled_at = time.monotonic()
        if signalled_at is not None and time.monotonic() - signalled_at > 2 * GRACE:
            return running[0]
        failures = [proc for proc in ranks if proc.returncode not in (None, 0)]
        if failures and not received:
            # A rank failed by itself; the others get a short while to finish
            # their own shutdown (the runner ends them too) before we step in.
            deadline = time.monotonic() + GRACE
            while any(proc.poll() is None for proc in ranks) and time.monotonic() < deadline:
                time.sleep(0.02)
            # Seen together, a rank killed by a signal and ranks that left
            # with status 1 because of it: report the cause, as srun reports
            # the highest status of its tasks.
            failures = [proc for proc in ranks if proc.returncode not in (None, 0)]
            return max(failures, key=lambda proc: exit_status(proc.returncode))
        time.sleep(next(delays))


def _end(ranks: list[subprocess.Popen]) -> None:
    """SIGTERM every rank still running, then SIGKILL whatever is left."""
    for proc in ranks:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + GRACE
    for proc in ranks:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def script_command(target: str, args: list[str], module: bool = False) -> list[str]:
    """The command that runs ``target`` as ``python`` would: a file, or ``-m`` a module."""
    return [sys.executable, "-m", target, *args] if module else [sys.executable, target, *args]


#: A machine with more usable cores than this is likely shared (a login node).
SHARED_MACHINE_CORES = 16


def default_workers(cores: int | None = None) -> tuple[int, str]:
    """Workers of a local fallback world, and why that many.

    ``runners.local.workers`` when set; else one per usable core, but on a
    machine of more than :data:`SHARED_MACHINE_CORES` cores, likely shared,
    only ``runners.local.max-workers-shared``.
    """
    configured = dask.config.get("runners.local.workers")
    if configured is not None:
        return int(configured), "set by runners.local.workers"
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores > SHARED_MACHINE_CORES:
        modest = int(dask.config.get("runners.local.max-workers-shared"))
        return min(cores, modest), (
            f"only {modest} on this machine of {cores} cores, which is likely shared; "
            "runners.local.workers to change"
        )
    return cores, "one per core; runners.local.workers to change"


def this_program() -> list[str] | None:
    """The command that started this process, if it can be started again.

    ``python script.py …``, ``python -m module …`` and ``python -c …`` can;
    an interactive interpreter, IPython or Jupyter, or a script read from
    standard input cannot.
    """
    interactive = hasattr(sys, "ps1") or sys.flags.interactive or "IPython" in sys.modules
    if interactive or not sys.argv or sys.argv[0] in ("", "-"):
        return None
    return [sys.executable, *sys.orig_argv[1:]]


def run_here_locally(reason: str):
    """Run this program again as a local world and exit with its status; never returns.

    Called by :func:`dask_runners.Runner` when no launcher is found. Raises
    ``LauncherEnvironmentError`` (with ``reason``) when the program cannot
    be started again or the fallback is off.
    """
    command = this_program()
    if not dask.config.get("runners.local.fallback"):
        raise LauncherEnvironmentError(f"{reason}\n(The local fallback is off: runners.local.fallback is false.)")
    if command is None:
        raise LauncherEnvironmentError(
            f"{reason}\nAn interactive session cannot be run as a local world; for a cluster "
            "on this machine use distributed.LocalCluster, or run a script."
        )
    n_workers, why = default_workers()
    n_workers = max(n_workers, 1)
    logger.warning(
        "dask_runners: no launcher found, so NOT a cluster run: running %s locally as %d ranks "
        "(scheduler, client, %d workers: %s)",
        os.path.basename(sys.argv[0]),
        n_workers + 2,
        n_workers,
        why,
    )
    sys.exit(launch(command, n_workers + 2))
