"""Releasing a Slurm allocation that a cut-off node would hold.

When a node stops answering (a network partition, a node that hangs), the
runner notices within the lease: the cluster carries on without the node, or
ends with a clear error. But the launcher cannot tell a cut-off node from a
slow one. ``srun`` waits for that node's tasks until Slurm declares the node
down (``SlurmdTimeout``, 300 s by default, plus up to a ping interval), and
only then kills the whole job (``NODE_FAIL``). Cancelling the job's step does
not make it return sooner, nor does ``scancel`` of the job for an ``srun``
that is not part of a batch job; in a batch job, ``scancel`` of the job ends
the batch script and frees every node that answers at once.

So a rank that has given up on an unreachable rank cancels its own Slurm job
as its process exits, after the cluster has closed and its own status is
settled, and says so with the outcome of the client code. Slurm would kill
the job anyway once it declares the node down, unless the job asked to be
kept (``--no-kill``); set ``runners.unreachable: wait`` for that case.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import subprocess
import time

import dask.config

logger = logging.getLogger(__name__)

#: How long ``scancel`` may take to reach the controller.
SCANCEL_TIMEOUT = 10.0
CHOICES = ("cancel-job", "wait")

#: The cancel this process will make as it exits: (job id, why, delay).
_pending: list[tuple[str, str, float]] = []


def policy() -> str:
    """``runners.unreachable``: ``cancel-job`` (the default) or ``wait``."""
    from .exceptions import ConfigurationError

    value = dask.config.get("runners.unreachable")
    if value not in CHOICES:
        raise ConfigurationError(
            f"runners.unreachable is {value!r}; use one of {', '.join(CHOICES)} "
            "(environment variable DASK_RUNNERS__UNREACHABLE)"
        )
    return value


def cancel_job_at_exit(why: str, *, delay: float = 0.0) -> bool:
    """Cancel this process's Slurm job when the process exits, because ``why``.

    Parameters
    ----------
    why : str
        What is unreachable and what the cluster's outcome was; logged with
        the ``scancel`` command.
    delay : float
        Seconds to wait before cancelling, so that ranks which decide at the
        same moment and report more (the client rank) finish first.

    Returns
    -------
    bool
        Whether a cancel was arranged: not outside a Slurm job, with
        ``runners.unreachable: wait``, or when one is already arranged.
    """
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id or _pending or policy() != "cancel-job":
        return False
    _pending.append((job_id, why, delay))
    atexit.register(cancel_pending)  # the client rank's way out; the others call it themselves
    return True


def cancel_pending() -> None:
    """Make the cancel arranged by :func:`cancel_job_at_exit`, if any (once).

    Scheduler and worker ranks leave through ``os._exit`` and call this just
    before; the client rank's interpreter calls it at exit.
    """
    while _pending:
        _cancel(*_pending.pop())


def _cancel(job_id: str, why: str, delay: float) -> None:
    # The cancel's own SIGTERM reaches this process too; it is leaving anyway.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(delay)
    command = ["scancel", "--quiet", job_id]
    logger.warning(
        "%s. Cancelling the job (%s) so that Slurm frees its nodes now: srun would wait for the "
        "unreachable tasks until Slurm declares their node down (SlurmdTimeout, 300 s by default). "
        "Set runners.unreachable: wait to keep the job.",
        why,
        " ".join(command),
    )
    for handler in logging.getLogger().handlers + logging.getLogger("dask_runners").handlers:
        handler.flush()
    try:
        subprocess.run(command, timeout=SCANCEL_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        logger.warning("could not cancel job %s: %s", job_id, e)
