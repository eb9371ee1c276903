"""Start a Dask cluster inside a batch job: one script, every rank."""

from .base import BaseRunner, Role
from .config import Timeouts
from .exceptions import (
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
from .file_runner import SchedulerFileRunner
from .job import JobContext, current_job
from .mpi import MPIRunner
from .registry import Runner, register_runner
from .security import JobCredentials, connect
from .signals import JobInterrupted
from .slurm import SLURMRunner

__version__ = "0.1.0"

__all__ = [
    "BaseRunner",
    "ClusterStoppedError",
    "DiscoveryTimeoutError",
    "JobContext",
    "JobCredentials",
    "JobInterrupted",
    "LauncherEnvironmentError",
    "MPIRunner",
    "Role",
    "Runner",
    "RunnerError",
    "SLURMRunner",
    "SchedulerFileRunner",
    "SchedulerLostError",
    "SchedulerStartError",
    "ShutdownTimeoutError",
    "Timeouts",
    "WorkersTimeoutError",
    "WorldTooSmallError",
    "connect",
    "current_job",
    "register_runner",
]
