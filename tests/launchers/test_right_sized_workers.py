"""Under real srun, the workers on a node together claim no more than the step may use there."""

import json
import os

import psutil
import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, write_script

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]

MIB = 1 << 20

SCRIPT = """\
import json
from dask.distributed import Client
from dask_runners import SLURMRunner

with SLURMRunner({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        workers = client.scheduler_info()["workers"].values()
        print("WORKERS", json.dumps([[w["memory_limit"], w["nthreads"], w["host"]] for w in workers]), flush=True)
"""


@pytest.fixture(autouse=True)
def _slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def workers_of(job_dir, argv, options=""):
    script = write_script(job_dir, SCRIPT.format(options=options))
    result = launch([*argv, PYTHON, str(script)], job_dir)
    result.assert_clean_success()
    [line] = [line for line in result.stdout.splitlines() if line.startswith("WORKERS ")]
    return json.loads(line.split(" ", 1)[1])


def assert_within_the_node(workers, node_memory):
    cpus = len(os.sched_getaffinity(0))
    assert sum(memory for memory, _, _ in workers) <= node_memory, (workers, node_memory)
    assert sum(threads for _, threads, _ in workers) <= cpus, (workers, cpus)
    assert len({host for _, _, host in workers}) == 1


def test_four_ranks_without_a_request_split_the_node(job_dir):
    workers = workers_of(job_dir, ["srun", "-n", "4"])
    total = psutil.virtual_memory().total
    assert len(workers) == 2
    assert all(memory == total // 4 for memory, _, _ in workers), workers  # 4 ranks share the node
    assert_within_the_node(workers, total)


@pytest.mark.parametrize("request_flags,node_mib", [(["--mem=4000"], 4000), (["--mem-per-cpu=500"], 4 * 500)])
def test_the_memory_the_job_asked_for_is_split_among_the_ranks(job_dir, request_flags, node_mib):
    workers = workers_of(job_dir, ["salloc", "-n", "4", *request_flags, "srun", "-n", "4"])
    assert [memory for memory, _, _ in workers] == [node_mib * MIB // 4] * 2, workers
    assert_within_the_node(workers, node_mib * MIB)


def test_cpus_per_task_do_not_oversubscribe_the_node(job_dir):
    # The test node declares 32 CPUs on a machine of 2: four ranks of -c 2 still share 2 cores.
    workers = workers_of(job_dir, ["srun", "-n", "4", "-c", "2"])
    assert_within_the_node(workers, psutil.virtual_memory().total)


def test_an_explicit_worker_option_wins(job_dir):
    workers = workers_of(job_dir, ["srun", "-n", "3"], options='worker_options={"memory_limit": "1GiB", "nthreads": 3}')
    assert workers[0][:2] == [1 << 30, 3]
