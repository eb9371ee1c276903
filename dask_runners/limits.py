"""The scheduler rank's limit on open files.

The scheduler holds two connections per worker rank (the worker's own and the
runner's control channel; counted under ``srun`` by ``bench/scaling.py``), so
a job of N ranks needs about 2 N descriptors on rank 0. A soft limit of 1024,
still a common default, runs out near 500 ranks, and the symptom ("Too many
open files" on accept, workers that never register) is far from the cause.
The scheduler rank therefore raises its soft limit to the hard limit, as
``dask scheduler`` does, and says so when even that is too low.
"""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger(__name__)

DESCRIPTORS_PER_RANK = 2
#: Room for everything else the scheduler opens: its listeners, logs, the dashboard, clients.
SPARE_DESCRIPTORS = 256
#: Used instead of an unlimited hard limit, which the soft limit cannot take on Linux.
UNLIMITED_CAP = 1 << 20


def descriptors_needed(world_size: int | None) -> int | None:
    """Open files the scheduler rank of a job of ``world_size`` ranks needs, about."""
    if world_size is None:
        return None
    return DESCRIPTORS_PER_RANK * world_size + SPARE_DESCRIPTORS


def raise_open_file_limit(world_size: int | None, getrlimit=resource.getrlimit,
                          setrlimit=resource.setrlimit) -> int:
    """Raise this process's soft limit on open files to the hard one; return the soft limit.

    Logs a warning, with the numbers and the fix, when the result is still
    below what ``world_size`` ranks need.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as e:
            logger.debug("could not raise RLIMIT_NOFILE from %d to %d: %s", soft, target, e)
    needed = descriptors_needed(world_size)
    if needed is not None and soft != resource.RLIM_INFINITY and soft < needed:
        logger.warning(
            "scheduler rank: %d ranks need about %d open files on this rank, but the limit is %d "
            "(hard limit %s); workers beyond that cannot connect. Ask for more with "
            "`ulimit -n %d` in the job script, or from the cluster's administrators",
            world_size, needed, soft, "unlimited" if hard == resource.RLIM_INFINITY else hard, needed,
        )
    return soft
