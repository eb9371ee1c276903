"""Deadlines and polling schedules, from one place.

Every wait in dask_runners takes its deadline from :class:`Timeouts`. A value
comes from, in order: the argument given to the runner, the dask config key
``runners.timeouts.<name>``, and the default below.

========================================  ========  ===============================================
dask config key                           default   what waits for it
========================================  ========  ===============================================
``runners.timeouts.discovery``            300 s     a rank waiting for the scheduler address
``runners.timeouts.workers``              300 s     ``runner.wait_for_workers()`` with no timeout
``runners.timeouts.shutdown``             30 s      the scheduler waiting for ranks to leave
``runners.timeouts.lease``                60 s      silence after which a rank counts as gone
========================================  ========  ===============================================

The discovery default is generous on purpose: on a large allocation, starting
Python and importing ``distributed`` from a busy shared filesystem can take
minutes. The scheduler rank has the same deadline to start and publish its
address.

A rank that dies is noticed at once: its connection to the scheduler closes.
The lease covers what does not close a connection (a node that loses power, a
network partition): every rank sends a heartbeat every quarter lease, and a
rank silent for a whole lease counts as gone. It is long by default so that a
busy but healthy rank is never declared dead.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import dask.config
from dask.utils import parse_timedelta

from .exceptions import ConfigurationError

DEFAULT_TIMEOUTS = {"discovery": 300.0, "workers": 300.0, "shutdown": 30.0, "lease": 60.0}


@dataclasses.dataclass(frozen=True)
class Timeouts:
    """Deadlines, in seconds, for each kind of wait.

    Parameters
    ----------
    discovery : float
        How long a rank waits for the scheduler address.
    workers : float
        Default deadline of :meth:`BaseRunner.wait_for_workers`.
    shutdown : float
        How long the scheduler waits for the other ranks to leave.
    lease : float
        How long a rank may stay silent before the scheduler counts it gone.
    """

    discovery: float = DEFAULT_TIMEOUTS["discovery"]
    workers: float = DEFAULT_TIMEOUTS["workers"]
    shutdown: float = DEFAULT_TIMEOUTS["shutdown"]
    lease: float = DEFAULT_TIMEOUTS["lease"]

    @classmethod
    def resolve(cls, overrides: dict | None = None) -> Timeouts:
        """Build timeouts from ``overrides``, then dask config, then defaults.

        Values may be numbers of seconds or strings such as ``"2 minutes"``.
        """
        overrides = dict(overrides or {})
        unknown = set(overrides) - set(DEFAULT_TIMEOUTS)
        if unknown:
            raise ValueError(
                f"unknown timeout name(s) {sorted(unknown)}; "
                f"known names are {sorted(DEFAULT_TIMEOUTS)}"
            )
        values = {}
        for name, default in DEFAULT_TIMEOUTS.items():
            value = overrides.get(name)
            where = f"timeouts={{{name!r}: ...}}"
            if value is None:
                value = dask.config.get(f"runners.timeouts.{name}", default)
                where = f"the dask config key runners.timeouts.{name} (DASK_RUNNERS__TIMEOUTS__{name.upper()})"
            values[name] = _seconds(value, where)
        return cls(**values)


def _seconds(value, where: str) -> float:
    """``value`` as a finite number of seconds above 0, or a :class:`ConfigurationError` naming ``where``."""
    try:
        seconds = float(parse_timedelta(value, default="s"))
    except (ValueError, TypeError, KeyError, AttributeError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(
            f"{where} is {value!r}: a deadline must be a finite time above 0, "
            "in seconds or with a unit, such as 60 or '2 minutes'"
        )
    return seconds


def backoff_delays(
    first: float = 0.005, factor: float = 1.5, cap: float = 0.5
) -> Iterator[float]:
    """Yield sleep intervals that start short and grow to ``cap``.

    The first look happens at once (the caller looks before the first sleep);
    later looks come quickly while the answer is likely to arrive soon, then
    settle at ``cap`` so that many waiting ranks put little load on a shared
    filesystem: with the defaults, at most 2 looks per second per rank after
    the first second.
    """
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)
