"""Which runner serves which launcher, and :func:`Runner`, which picks one.

A launcher name is a key of :data:`dask_runners.launchers.PARSERS` (``slurm``,
``openmpi``, ``pbs``, ``torchrun``, ...) or a name a third party registered.
Lookup order for a name:

1. runners registered with :func:`register_runner`;
2. runners advertised by installed packages under the entry-point group
   ``dask_runners.runners`` (name = launcher, value = ``module:Class``),
   loaded the first time a name is not found;
3. the built-in choice: :class:`~dask_runners.SLURMRunner` for ``slurm``;
   :class:`~dask_runners.MPIRunner` for launchers that start MPI programs
   (:attr:`LaunchFacts.starts_mpi <dask_runners.launchers.LaunchFacts>`) when
   mpi4py is installed; :class:`~dask_runners.SchedulerFileRunner` for every
   other launcher :mod:`dask_runners.launchers` knows.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

from .exceptions import LauncherEnvironmentError
from .launchers import PARSERS, chosen_launcher, detect, launch_facts
from .local import run_here_locally
from .mpi_runner import MPIRunner
from .scheduler_file_runner import SchedulerFileRunner
from .slurm import SLURMRunner

ENTRY_POINT_GROUP = "dask_runners.runners"

_registered: dict[str, type] = {}
_entry_points_loaded = False


def register_runner(name: str, cls: type) -> None:
    """Serve launcher ``name`` with the runner class ``cls``.

    Registering the same class again is harmless; registering another class
    under a taken name is an error.
    """
    existing = _registered.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"launcher {name!r} is already served by {existing.__module__}.{existing.__qualname__}; "
            f"not replacing it with {cls.__module__}.{cls.__qualname__}"
        )
    _registered[name] = cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        register_runner(entry_point.name, entry_point.load())


def known_launchers() -> list[str]:
    """Every launcher name a runner can be found for."""
    _load_entry_points()
    return sorted(set(PARSERS) | set(_registered))


def runner_class(name: str) -> type:
    """The runner class that serves launcher ``name``."""
    if name not in _registered:
        _load_entry_points()
    if name in _registered:
        return _registered[name]
    if name == "slurm":
        return SLURMRunner
    if launch_facts(name).starts_mpi and importlib.util.find_spec("mpi4py") is not None:
        return MPIRunner
    if name in PARSERS:
        return SchedulerFileRunner
    raise LauncherEnvironmentError(f"unknown launcher {name!r}; known launchers: {', '.join(known_launchers())}")


def Runner(launcher: str | None = None, *, environ=None, **kwargs):
    """Make the right runner for the launcher that started this process.

    Parameters
    ----------
    launcher : str, optional
        The launcher's name. By default the dask config key
        ``runners.launcher`` (``DASK_RUNNERS__LAUNCHER``), else the launcher
        detected from the environment (see
        :func:`dask_runners.launchers.chosen_launcher` and
        :func:`~dask_runners.launchers.detect`).
    environ : mapping, optional
        The environment to read; default ``os.environ``.
    **kwargs
        Passed to the runner class.

    Notes
    -----
    With no launcher at all (``python script.py`` on a laptop) and no
    ``environ`` given, this process becomes a local launcher: it starts the
    same command again as a scheduler, a client and one worker per core
    (:func:`dask_runners.local.run_here_locally`), says so in one line, and
    exits with the client's status. The code before ``Runner()`` runs in this
    process too. ``runners.local.fallback: false`` in dask config turns this
    off.

    Examples
    --------
    The same script under ``srun``, ``mpirun``, ``flux run`` or ``torchrun``::

        with Runner() as runner:
            with Client(runner) as client:
                ...
    """
    env = os.environ if environ is None else environ
    name = chosen_launcher(env, launcher)
    if name is None:
        try:
            name = detect(env).launcher
        except LauncherEnvironmentError as e:
            if environ is not None:
                raise
            run_here_locally(str(e))
    return runner_class(name).for_launcher(name, environ, **kwargs)
