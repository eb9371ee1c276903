"""A small real workload: the mean of a random 4000 x 4000 array, computed by the job's workers.

The same script runs under any launcher; ``Runner()`` finds out which:

    dask-runner launch -n 4 examples/array_mean.py     # this machine
    srun -n 4 python examples/array_mean.py            # Slurm
    mpirun -n 4 python examples/array_mean.py          # Open MPI (MPIRunner)
    python examples/array_mean.py                      # no launcher: a local world, one worker per core
"""

import dask.array as da
from dask.distributed import Client

from dask_runners import Runner

with Runner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        x = da.random.default_rng(42).random((4000, 4000), chunks=(500, 500))
        mean = x.mean().compute()
        workers = client.run(lambda: 1)
        print(f"mean = {mean:.6f}, on {len(workers)} workers ({type(runner).__name__}, {runner.job.launcher})")
