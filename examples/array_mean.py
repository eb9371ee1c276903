"""A small real workload: the mean of a random 4000 x 4000 array, computed by the job's workers.

Run it with any of:

    srun -n 4 python examples/array_mean.py
    mpirun -n 4 python examples/array_mean.py --mpi
"""

import sys

import dask.array as da
from dask.distributed import Client

from dask_runners import MPIRunner, SLURMRunner

Runner = MPIRunner if "--mpi" in sys.argv else SLURMRunner

with Runner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        x = da.random.default_rng(42).random((4000, 4000), chunks=(500, 500))
        mean = x.mean().compute()
        workers = {w for w in client.run(lambda: 1)}
        print(f"mean = {mean:.6f}, computed by {len(workers)} workers")
