"""ours_mpi.py with MPIRunner's host exchange left out, for ``bench/host_exchange.py --startup``.

The same package, the same workload (``ours_mpi.py`` itself runs): the only
difference is that ``runner.job`` is the environment's alone, as before the
exchange.
"""

import _bench  # noqa: F401  (first: stamps the process start)

import runpy
from pathlib import Path

from dask_runners import MPIRunner

MPIRunner._exchange_hosts = lambda self, job: job
runpy.run_path(str(Path(__file__).with_name("ours_mpi.py")), run_name="__main__")
