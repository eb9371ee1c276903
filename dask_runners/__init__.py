"""Start a Dask cluster inside a batch job: one script, every rank."""

from .base import BaseRunner
from .config import Timeouts, load_defaults
from .exceptions import (
    ClusterNotFoundError,
    ClusterStoppedError,
    CredentialsRequiredError,
    ConfigurationError,
    DiscoveryTimeoutError,
    JobInterrupted,
    LauncherEnvironmentError,
    MapStopped,
    ParallelForError,
    RunnerError,
    SchedulerFileError,
    SchedulerLostError,
    SchedulerStartError,
    ShutdownTimeoutError,
    WorkersTimeoutError,
    WorldTooSmallError,
    WorldTooSmallException,
)
from .job import JobContext
from .launchers import current_job
from .mpi_runner import MPIRunner
from .parallel import ItemFailure, ParallelFor, parallel_for, stop_maps
from .registry import Runner, register_runner
from .roles import Role
from .scheduler_file_runner import SchedulerFileRunner
from .security import JobCredentials
from .slurm import SLURMRunner
from .transport.scheduler_file import connect
from .worker_setup import WorkerEnvironment, worker_environment

# The dask convention for a package's config defaults (dask-jobqueue, dask-cuda do the same).
load_defaults()

__version__ = "0.1.0"

__all__ = [
    "BaseRunner",
    "ClusterNotFoundError",
    "ClusterStoppedError",
    "CredentialsRequiredError",
    "ConfigurationError",
    "DiscoveryTimeoutError",
    "JobContext",
    "JobCredentials",
    "ItemFailure",
    "JobInterrupted",
    "LauncherEnvironmentError",
    "MPIRunner",
    "MapStopped",
    "ParallelFor",
    "ParallelForError",
    "Role",
    "Runner",
    "RunnerError",
    "SLURMRunner",
    "SchedulerFileRunner",
    "SchedulerFileError",
    "SchedulerLostError",
    "SchedulerStartError",
    "ShutdownTimeoutError",
    "Timeouts",
    "WorkerEnvironment",
    "WorkersTimeoutError",
    "WorldTooSmallError",
    "WorldTooSmallException",
    "connect",
    "current_job",
    "parallel_for",
    "stop_maps",
    "register_runner",
    "worker_environment",
]
