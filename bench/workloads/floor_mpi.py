"""The MPI floor: the import floor, and ``MPI_Init`` (``import mpi4py.MPI``).

Every runner that finds its scheduler over MPI (ours, dask-mpi) pays both
before its first result; ``ready`` is when this rank has.
"""

import _bench  # noqa: F401  (first: stamps the process start)
import distributed  # noqa: F401
from mpi4py import MPI  # noqa: F401

_bench.ready()
