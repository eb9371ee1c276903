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
from .mpi import MPIRunner
from .security import JobCredentials, connect
from .signals import JobInterrupted
from .slurm import SLURMRunner

__version__ = "0.1.0"

__all__ = [
    "BaseRunner",
    "ClusterStoppedError",
    "DiscoveryTimeoutError",
    "JobCredentials",
    "JobInterrupted",
    "LauncherEnvironmentError",
    "MPIRunner",
    "Role",
    "RunnerError",
    "SLURMRunner",
    "SchedulerLostError",
    "SchedulerStartError",
    "ShutdownTimeoutError",
    "Timeouts",
    "WorkersTimeoutError",
    "WorldTooSmallError",
    "connect",
]
