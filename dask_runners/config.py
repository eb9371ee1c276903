"""The package's dask config, deadlines and polling schedules, from one place.

Every dask config key dask_runners reads has its default in the packaged
``runners.yaml``, which :func:`load_defaults` adds to dask's defaults when the
package is imported (as dask-jobqueue and dask-cuda do): code reads
``dask.config.get("runners.…")`` with no default of its own, and ``dask config
get runners`` shows them all. In the environment a key is
``DASK_RUNNERS__<KEY>`` (:func:`env_variable`); the old single-underscore
names of a few (:data:`RENAMED_VARIABLES`) still work, with a warning.

Every wait in dask_runners takes its deadline from :class:`Timeouts`. A value
comes from, in order: the argument given to the runner, the dask config key
``runners.timeouts.<name>`` (whose default is in ``runners.yaml``).

========================================  =====================================================
dask config key                           what waits for it
========================================  =====================================================
``runners.timeouts.discovery``            a rank waiting for the scheduler address
``runners.timeouts.workers``              ``runner.wait_for_workers()`` with no timeout
``runners.timeouts.shutdown``             the scheduler waiting for ranks to leave
``runners.timeouts.lease``                silence after which a rank counts as gone
========================================  =====================================================

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

import copy
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import dask.config
import yaml
from dask.utils import parse_timedelta

from .exceptions import ConfigurationError

#: The packaged defaults, the one place they are written.
DEFAULTS_FILE = Path(__file__).with_name("runners.yaml")
#: ``runners.yaml`` as read: the defaults, not what the user set. libyaml's
#: loader when PyYAML has it: the pure-Python one costs every rank 6 ms more.
DEFAULTS: dict = yaml.load(DEFAULTS_FILE.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

_loaded = False


def load_defaults() -> None:
    """Add ``runners.yaml`` to dask's config defaults; only the first call does anything.

    Values already set (dask YAML files, ``DASK_RUNNERS__*`` variables,
    ``dask.config.set``) keep winning over these, and ``dask.config.refresh()``
    keeps them. Called once, by ``import dask_runners``.
    """
    global _loaded
    if not _loaded:
        dask.config.update_defaults(copy.deepcopy(DEFAULTS))
        _loaded = True


def env_variable(key: str) -> str:
    """The environment variable dask reads ``key`` from.

    >>> env_variable("runners.serve.scheduler-file")
    'DASK_RUNNERS__SERVE__SCHEDULER_FILE'
    """
    return "DASK_" + "__".join(part.upper().replace("-", "_") for part in key.split("."))


_SERVE_FLAGS = (
    "scheduler-file", "scheduler-port", "scheduler-rank", "interface", "protocol", "nthreads",
    "memory-limit", "local-directory", "scheduler", "exclusive-workers", "worker-class",
    "worker-options", "dashboard", "dashboard-address", "worker-name",
)
#: Deprecated single-underscore variables, and the config key each became.
#: dask reads every ``DASK_*`` variable, and these landed in its config as
#: keys like ``runners_launcher``.
RENAMED_VARIABLES: dict[str, str] = {
    "DASK_RUNNERS_LAUNCHER": "runners.launcher",
    "DASK_RUNNERS_RANKS": "runners.launch.ranks",
    **{"DASK_RUNNERS_" + flag.upper().replace("-", "_"): f"runners.serve.{flag}" for flag in _SERVE_FLAGS},
}
_OLD_NAME = {key: old for old, key in RENAMED_VARIABLES.items()}
_warned: set[str] = set()


def config_value(key: str, environ: Mapping[str, str] | None = None):
    """``dask.config.get(key)``, where the deprecated variable of ``key`` still counts.

    The old variable (``DASK_RUNNERS_NTHREADS``) is used, as the raw string,
    when it is set in ``environ`` (default ``os.environ``) and the new one
    (``DASK_RUNNERS__SERVE__NTHREADS``) is not; a ``FutureWarning`` naming the
    new variable is given once per process for each old name.
    """
    env = os.environ if environ is None else environ
    old = _OLD_NAME.get(key)
    if old is not None and env.get(old) and env_variable(key) not in env:
        if old not in _warned:
            _warned.add(old)
            warnings.warn(
                f"{old} is deprecated and will stop working: set {env_variable(key)} "
                f"(the dask config key {key}) instead",
                FutureWarning,
                stacklevel=2,
            )
        return env[old]
    return dask.config.get(key)


#: The default deadlines, in seconds, from ``runners.yaml``.
DEFAULT_TIMEOUTS: dict[str, float] = {
    name: float(parse_timedelta(value, default="s")) for name, value in DEFAULTS["runners"]["timeouts"].items()
}


class Timeouts(NamedTuple):
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
        for name in DEFAULT_TIMEOUTS:
            value = overrides.get(name)
            where = f"timeouts={{{name!r}: ...}}"
            if value is None:
                value = dask.config.get(f"runners.timeouts.{name}")
                where = f"the dask config key runners.timeouts.{name} ({env_variable(f'runners.timeouts.{name}')})"
            values[name] = parse_seconds(value, where)
        return cls(**values)


def parse_seconds(value, where: str) -> float:
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


def user_path(path) -> Path:
    """A path option as the user wrote it, with ``~`` and environment variables expanded.

    Every path a runner, map or command takes goes through here, so that
    ``scheduler_file="~/jobs/{job_id}.json"`` or ``"$SCRATCH/out"`` means
    what it means in the shell.
    """
    return Path(os.path.expanduser(os.path.expandvars(os.fspath(path))))
