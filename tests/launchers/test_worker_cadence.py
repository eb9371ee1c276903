"""Under real srun, a worker rank's worker runs distributed's periodic work at the runner's cadence."""

import json

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, task_ends, write_script

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]

SCRIPT = """\
import json
from dask.distributed import Client
from dask_runners import SLURMRunner

def intervals(dask_worker):
    return {{name: dask_worker.periodic_callbacks[name].callback_time for name in ("tick", "profile")}}

def scheduler_tick(dask_scheduler):
    return dask_scheduler.periodic_callbacks["tick"].callback_time

with SLURMRunner({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        found = {{"workers": list(client.run(intervals).values()), "scheduler": client.run_on_scheduler(scheduler_tick)}}
        print("INTERVALS", json.dumps(found), flush=True)
"""


@pytest.fixture(autouse=True)
def _slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def intervals_of(job_dir, options="", env=None):
    script = write_script(job_dir, SCRIPT.format(options=options))
    result = launch(["srun", "-n", "4", PYTHON, str(script)], job_dir, env=env)
    result.assert_clean_success()
    [line] = [line for line in result.stdout.splitlines() if line.startswith("INTERVALS ")]
    return json.loads(line.split(" ", 1)[1])


def test_worker_ranks_space_out_their_periodic_work_and_the_scheduler_keeps_distributeds(job_dir):
    found = intervals_of(job_dir)
    assert found["workers"] == [{"tick": 200, "profile": 100}] * 2, found
    assert found["scheduler"] == 20, found


def test_a_distributed_key_the_user_set_wins(job_dir):
    found = intervals_of(job_dir, env={"DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "50ms"})
    assert found["workers"] == [{"tick": 50, "profile": 100}] * 2, found


def test_none_restores_distributeds_interval(job_dir):
    found = intervals_of(job_dir, env={"DASK_RUNNERS__WORKER_CADENCE__PROFILE": "None"})
    assert found["workers"] == [{"tick": 200, "profile": 10}] * 2, found


def test_a_nannys_worker_runs_at_the_same_cadence(job_dir):
    found = intervals_of(job_dir, options='worker_class="distributed.Nanny"')
    assert found["workers"] == [{"tick": 200, "profile": 100}] * 2, found


def test_a_bad_interval_ends_every_rank_with_exit_1_and_names_the_key(job_dir):
    script = write_script(job_dir, SCRIPT.format(options=""))
    result = launch(["srun", "-n", "4", PYTHON, str(script)], job_dir,
                    env={"DASK_RUNNERS__WORKER_CADENCE__TICK": "soon"})
    assert result.returncode == 1, result.report()
    ends = task_ends(result.stderr)
    assert set(ends) == {0, 1, 2, 3} and set(ends.values()) == {"Exited with exit code 1"}, result.report()
    assert "the dask config key runners.worker-cadence.tick is 'soon'" in result.stderr, result.report()
    assert result.seconds < 30, result.report()
    assert result.leftovers == [], result.report()
