"""Start a Dask cluster inside a batch job: one script, every rank.

Every public name is imported from its module on first use (PEP 562), so
that a rank loads only what its role needs: ``from dask_runners import
SLURMRunner`` does not load the MPI runner, the batch maps or the CLI.
"""

from importlib import import_module

from .config import load_defaults

# The dask convention for a package's config defaults (dask-jobqueue, dask-cuda do the same).
load_defaults()

__version__ = "0.1.0"

#: Each public name, and the module that defines it.
_HOMES = {
    "BaseRunner": "base",
    "Timeouts": "config",
    "JobContext": "job",
    "current_job": "launchers",
    "MPIRunner": "mpi_runner",
    "ItemFailure": "parallel",
    "ParallelFor": "parallel",
    "parallel_for": "parallel",
    "stop_maps": "parallel",
    "Runner": "registry",
    "register_runner": "registry",
    "Role": "roles",
    "SchedulerFileRunner": "scheduler_file_runner",
    "JobCredentials": "security",
    "SLURMRunner": "slurm",
    "connect": "transport.scheduler_file",
    "WorkerEnvironment": "worker_setup",
    "worker_environment": "worker_setup",
    **{
        name: "exceptions"
        for name in (
            "ClusterNotFoundError",
            "ClusterStoppedError",
            "CredentialsRequiredError",
            "ConfigurationError",
            "DiscoveryTimeoutError",
            "JobInterrupted",
            "LauncherEnvironmentError",
            "MapStopped",
            "ParallelForError",
            "RunnerError",
            "SchedulerFileError",
            "SchedulerLostError",
            "SchedulerStartError",
            "ShutdownTimeoutError",
            "WorkersTimeoutError",
            "WorldTooSmallError",
            "WorldTooSmallException",
        )
    },
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
