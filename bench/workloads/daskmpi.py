"""Standard workload: dask-mpi ``initialize()`` under `mpirun -n N`.

Rank 0 is the scheduler, rank 1 runs this code, the rest are workers. The
cluster is shut down by the atexit hook dask-mpi registers on the client rank,
so the body ends where the script ends.
"""

import _bench  # noqa: F401  (first: stamps the process start)
from dask_mpi import initialize
from distributed import Client
from mpi4py import MPI

initialize()

client = Client()
client.wait_for_workers(MPI.COMM_WORLD.Get_size() - 2)
assert client.submit(lambda x: x + 1, 10).result() == 11
_bench.first_result()
_bench.body_exit()
