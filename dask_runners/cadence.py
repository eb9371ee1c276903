"""How often a worker rank's worker does its periodic work, spaced out for packed nodes.

A ``distributed.Worker`` with nothing to do still wakes its event loop about
a hundred times a second: it samples its threads for the task profiler every
``distributed.worker.profile.interval`` (10 ms) and checks that its loop is
not blocked every ``distributed.admin.tick.interval`` (20 ms). Alone on a
node, nobody notices; with dozens of worker ranks on a node, the idle
workers take whole cores from the ranks that start, compute and stop
(measured in docs/benchmarks-history.rst, "Worker ranks' periodic work spaced out").

A worker rank's worker is made with these two intervals spaced out (the
dask config keys ``runners.worker-cadence.*``), which cuts most of what an
idle worker costs. The task profiles on the dashboard are then
coarser: a sample every 100 ms instead of every 10 ms, which still shows
where tasks of a second or more spend their time.

The user's own setting always wins: a distributed key that differs from
distributed's default is left as it is. A ``runners.worker-cadence`` key set
to ``None`` keeps distributed's value for its interval. Only the worker is
made under these settings: the scheduler, the client and everything else in
the process keep distributed's.
"""

from __future__ import annotations

import math

import dask.config
import distributed.config  # noqa: F401  (registers distributed's defaults, which tell a user's setting apart)
from dask.utils import parse_timedelta

from .exceptions import ConfigurationError

#: Each ``runners.worker-cadence`` key, and the distributed key it sets.
DISTRIBUTED_KEYS: dict[str, str] = {
    "profile": "distributed.worker.profile.interval",
    "tick": "distributed.admin.tick.interval",
}


def worker_cadence() -> dict[str, object]:
    """The distributed config a worker rank's worker is made under.

    Returns
    -------
    dict
        The distributed keys to set, with the value of their
        ``runners.worker-cadence`` key; a key the user has set (to anything
        but distributed's default), or whose ``runners.worker-cadence`` key
        is ``None``, is left out.

    Raises
    ------
    ConfigurationError
        A ``runners.worker-cadence`` key is not a time above 0.
    """
    shipped = dask.config.merge(*dask.config.defaults)
    settings = {}
    for name, key in DISTRIBUTED_KEYS.items():
        ours = dask.config.get(f"runners.worker-cadence.{name}")
        user_set = _milliseconds(dask.config.get(key)) != _milliseconds(dask.config.get(key, config=shipped))
        if ours is None or user_set:
            continue
        _check_interval(ours, f"runners.worker-cadence.{name}")
        settings[key] = ours
    return settings


def _milliseconds(value) -> float:
    """A distributed interval in milliseconds: a bare number is milliseconds, as distributed reads these keys."""
    try:
        return float(parse_timedelta(value, default="ms")) * 1000
    except (ValueError, TypeError, KeyError, AttributeError):
        return math.nan


def _check_interval(value, key: str) -> None:
    milliseconds = _milliseconds(value)
    if not math.isfinite(milliseconds) or milliseconds <= 0:
        raise ConfigurationError(
            f"the dask config key {key} is {value!r}: it must be a time above 0 with a unit, "
            "such as '100ms' (a bare number is milliseconds), or None for distributed's own value"
        )
