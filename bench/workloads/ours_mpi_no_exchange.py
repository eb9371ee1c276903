"""ours_mpi.py with MPIRunner's host exchange left out, for ``bench/host_exchange.py --startup``.

The same package, the same workload: the only difference from ``ours_mpi.py``
is that ``runner.job`` is the environment's alone, as before the exchange.
"""

import _bench  # noqa: F401  (first: stamps the process start)
from distributed import Client

from dask_runners import MPIRunner

MPIRunner._exchange_hosts = lambda self, job: job

with MPIRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        _bench.first_result()
        _bench.body_exit()
