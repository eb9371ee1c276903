"""Standard workload: dask-jobqueue 0.9 SLURMRunner under `srun -n N`.

Its ``n_workers`` is set while entering the runner (world size minus
scheduler and client), so it is read inside the ``with`` block.
"""

import _bench  # noqa: F401  (first: stamps the process start)
from dask_jobqueue.slurm import SLURMRunner
from distributed import Client

with SLURMRunner(scheduler_file="scheduler-{job_id}.json") as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        _bench.first_result()
        _bench.body_exit()
