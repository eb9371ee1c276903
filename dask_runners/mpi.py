"""MPI for dask_runners: :class:`~dask_runners.MPIRunner` and dask-mpi's functions.

``from dask_runners.mpi import initialize`` (or ``execute``,
``send_close_signal``) replaces ``from dask_mpi import ...``; see
:mod:`dask_runners.compat.dask_mpi`. Nothing in the package imports this
module: it is the drop-in's front door.
"""

from .compat.dask_mpi import WorldTooSmallException, execute, initialize, send_close_signal
from .mpi_runner import MPIRunner

__all__ = ["MPIRunner", "WorldTooSmallException", "execute", "initialize", "send_close_signal"]
