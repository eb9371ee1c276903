"""The MPI floor: the import floor, and ``MPI_Init`` (``import mpi4py.MPI``).

Every runner that finds its scheduler over MPI (ours, dask-mpi) pays both
before its first result; ``ready`` is when this rank has. Then the rank
calls ``MPI_Finalize`` and leaves at once, as the floor does: the time from
the last ``ready`` to the launcher's return is the least an MPI job that
imported distributed takes to end. With ``BENCH_CLIENT_EXITS=1`` rank 1 ends
as a script ends (see ``_bench.leave``), as every runner's client rank does.
"""

import os

import _bench  # noqa: F401  (first: stamps the process start)
import distributed  # noqa: F401
from mpi4py import MPI

_bench.ready()
if not os.environ.get("BENCH_CLIENT_EXITS") or _bench._rank() != "1":
    MPI.Finalize()  # else mpi4py's exit hook finalizes, as in a script that ends
_bench.leave()
