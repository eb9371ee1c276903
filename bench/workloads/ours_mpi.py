"""Standard workload: dask_runners.MPIRunner under `mpirun -n N`."""

import _bench  # noqa: F401  (first: stamps the process start)
from distributed import Client

from dask_runners import MPIRunner

with MPIRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        _bench.first_result()
        _bench.body_exit()
