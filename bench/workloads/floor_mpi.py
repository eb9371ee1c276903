"""The MPI floor: the import floor, and ``MPI_Init`` (``import mpi4py.MPI``).

Every runner that finds its scheduler over MPI (ours, dask-mpi) pays both
before its first result; ``ready`` is when this rank has. Then the rank
calls ``MPI_Finalize`` and leaves at once, as the floor does: the time from
the last ``ready`` to the launcher's return is the least an MPI job that
imported distributed takes to end.
"""

import _bench  # noqa: F401  (first: stamps the process start)
import distributed  # noqa: F401
from mpi4py import MPI

_bench.ready()
MPI.Finalize()
_bench.leave()
