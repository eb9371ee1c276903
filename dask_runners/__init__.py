"""Start a Dask cluster inside a batch job: one script, every rank."""

from .base import BaseRunner, Role
from .config import Timeouts
from .exceptions import (
    ClusterNotFoundError,
    ClusterStoppedError,
    DiscoveryTimeoutError,
    LauncherEnvironmentError,
    RunnerError,
    SchedulerLostError,
    SchedulerStartError,
    ShutdownTimeoutError,
    WorkersTimeoutError,
    WorldTooSmallError,
)
from .environment import WorkerEnvironment, worker_environment
from .file_runner import SchedulerFileRunner
from .job import JobContext, current_job
from .mpi import MPIRunner
from .parallel import ItemFailure, ParallelFor, ParallelForError, parallel_for
from .registry import Runner, register_runner
from .security import JobCredentials, connect
from .signals import JobInterrupted
from .slurm import SLURMRunner

__version__ = "0.1.0"

__all__ = [
    "BaseRunner",
    "ClusterNotFoundError",
    "ClusterStoppedError",
    "DiscoveryTimeoutError",
    "JobContext",
    "JobCredentials",
    "ItemFailure",
    "JobInterrupted",
    "LauncherEnvironmentError",
    "MPIRunner",
    "ParallelFor",
    "ParallelForError",
    "Role",
    "Runner",
    "RunnerError",
    "SLURMRunner",
    "SchedulerFileRunner",
    "SchedulerLostError",
    "SchedulerStartError",
    "ShutdownTimeoutError",
    "Timeouts",
    "WorkerEnvironment",
    "WorkersTimeoutError",
    "WorldTooSmallError",
    "connect",
    "current_job",
    "parallel_for",
    "register_runner",
    "worker_environment",
]
