"""Per-worker environments and parallel_for under real launchers."""

import json
from pathlib import Path

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, write_script

pytestmark = [pytest.mark.timeout(180)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "batch_inference.py"

SCRIPT = """\
import json, os
from dask.distributed import Client
from dask_runners import {runner}, parallel_for

def setup():
    os.write(1, f"SETUP pid {{os.getpid()}}\\n".encode())  # one write: two workers' lines must not interleave
    return {{"pid": os.getpid(), "offset": 100}}

def shift(item, *, pid, offset):
    return [item + offset, pid]

with {runner}(worker_setup=setup{options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        results = list(parallel_for(shift, range(200)))
        print("RESULT", json.dumps(results), flush=True)
"""


def environment_run(result, n_workers):
    """Check the results of SCRIPT: in order, from every worker, built once per worker."""
    result.assert_clean_success()
    [line] = [line for line in result.stdout.splitlines() if line.startswith("RESULT")]
    results = json.loads(line.split(" ", 1)[1])
    assert [value for value, _ in results] == [i + 100 for i in range(200)]
    pids = {pid for _, pid in results}
    setups = [line for line in result.stdout.splitlines() if line.startswith("SETUP")]
    assert len(setups) == n_workers, result.report()  # once per worker, not per task
    assert pids <= {int(line.split()[-1]) for line in setups}
    return pids


@pytest.fixture
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


@pytest.mark.slurm
@pytest.mark.parametrize("options", ["", ', worker_class="distributed.Nanny"'], ids=["worker", "nanny"])
def test_environment_is_built_once_per_worker_under_srun(job_dir, slurm, options):
    script = write_script(job_dir, SCRIPT.format(runner="SLURMRunner", options=options))
    result = launch(["srun", "-n", "5", PYTHON, script], job_dir)
    environment_run(result, n_workers=3)


@pytest.mark.mpi
def test_environment_is_built_once_per_worker_under_mpirun(job_dir, open_mpi):
    prefix, env = open_mpi
    script = write_script(job_dir, SCRIPT.format(runner="MPIRunner", options=""))
    result = launch([*prefix, "4", PYTHON, script], job_dir, env=env)
    environment_run(result, n_workers=2)


@pytest.mark.slurm
def test_a_failing_setup_stops_the_job_at_once_with_the_cause(job_dir, slurm):
    script = write_script(job_dir, """\
from dask.distributed import Client
from dask_runners import SLURMRunner

def setup():
    raise OSError("model.pt not found")

with SLURMRunner(worker_setup=setup) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
""")
    result = launch(["srun", "-n", "4", PYTHON, script], job_dir)
    assert result.returncode != 0, result.report()
    assert result.seconds < 20, result.report()  # not the 300 s workers deadline
    assert "could not start its worker: OSError: model.pt not found" in result.stderr
    assert "client rank 1: the cluster was stopped" in result.stderr
    assert result.leftovers == []
    assert list(job_dir.glob("scheduler-*.json")) == []


def test_example_runs_in_this_process(job_dir):
    result = launch([PYTHON, EXAMPLE, "--local", "--items", "500"], job_dir, timeout=60)
    result.assert_clean_success()
    assert "classified 500 items" in result.stdout and "on this process" in result.stdout


def test_example_runs_on_local_workers_with_shards(job_dir):
    output = job_dir / "shards"
    result = launch(
        [PYTHON, "-m", "dask_runners", "launch", "-n", "4", EXAMPLE, "--items", "500", "--output", output],
        job_dir,
    )
    result.assert_clean_success()
    assert "classified 500 items" in result.stdout and "on 2 workers (local)" in result.stdout
    accuracy = float(result.stdout.rsplit("accuracy", 1)[1])
    assert accuracy > 0.9
    records = [json.loads(line) for path in output.glob("shard-*.jsonl") for line in path.open()]
    assert sorted(record["index"] for record in records) == list(range(500))
