"""A busy cluster shuts down cleanly: the soak workload under real srun and mpirun.

``bench/workloads/soak.py`` maps small tasks, shuffles blocks between every
pair of workers, holds more data than the workers' memory limit (so that it
spills to disk), and leaves the ``with`` block with more tasks and transfers
in flight; or leaves while half the workers are still joining. Every run must
end with exit status 0 on every rank, the right results, no traceback, no
ERROR line and no process left behind. ``bench/soak.py`` runs the long
version and counts.
"""

import logging
import shutil
from pathlib import Path

import pytest

from dask_runners.logs import drop_reports_to_departed_clients, shorten_lost_task_lists

from ..launch import PYTHON, launch, need, slurm_is_up

pytestmark = pytest.mark.timeout(180)

WORKLOAD = Path(__file__).resolve().parents[2] / "bench" / "workloads" / "soak.py"
#: Small enough for CI: the 16-rank busy run takes about 15 s on 2 cores.
TASKS = 1000
#: (ranks, case) for each launcher: the nanny case at 8 ranks, where it is quicker.
RUNS = [(8, "busy"), (8, "nanny"), (8, "early"), (16, "busy"), (16, "early")]


@pytest.fixture
def srun_prefix():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")
    return ["srun", "-n"], {}


def soak_fields(stdout: str) -> dict[str, str]:
    """The ``SOAK key=value`` fields the client rank printed, merged."""
    fields = {}
    for line in stdout.splitlines():
        if line.startswith("SOAK "):
            fields.update(item.split("=", 1) for item in line.split()[1:] if "=" in item)
    return fields


def run_soak(job_dir: Path, prefix: list[str], env: dict, runner: str, n: int, case: str):
    # A copy in the job's directory, so that a process left behind is found by its command line.
    script = shutil.copy(WORKLOAD, job_dir / "soak.py")
    argv = [*prefix, str(n), PYTHON, script, "--runner", runner, "--case", case, "--tasks", str(TASKS)]
    result = launch(argv, job_dir, env, timeout=150)
    result.assert_clean_success()
    fields = soak_fields(result.stdout)
    assert fields.get("ok") == "1" and fields.get("done") == "1", result.report()
    if case == "early":
        assert int(fields["joined"]) < int(fields["workers"]), result.report()  # some were still joining
    else:
        assert int(fields["tasks"]) > TASKS, result.report()
        assert int(fields["spilled"]) > 0 and int(fields["in_flight"]) > 0, result.report()
    return result


@pytest.mark.slurm
@pytest.mark.parametrize(("n", "case"), RUNS)
def test_busy_cluster_shuts_down_clean_under_srun(job_dir, srun_prefix, n, case):
    prefix, env = srun_prefix
    run_soak(job_dir, prefix, env, "slurm", n, case)


@pytest.mark.mpi
@pytest.mark.parametrize(("n", "case"), RUNS)
def test_busy_cluster_shuts_down_clean_under_mpirun(job_dir, open_mpi, n, case):
    prefix, env = open_mpi
    run_soak(job_dir, prefix, env, "mpi", n, case)


def record(msg, args=(), level=logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord("distributed.scheduler", level, __file__, 1, msg, args, None)


def test_the_lost_task_list_becomes_a_count():
    keys = {f"inc-{i}" for i in range(2000)} | {("x", 1)}
    entry = record(
        f"Removing worker 'tcp://10.0.0.1:4000' caused the cluster to lose already computed task(s), "
        f"which will be recomputed elsewhere: {keys} (stimulus_id='handle-worker-cleanup-1.5')"
    )
    assert shorten_lost_task_lists(entry)
    assert entry.getMessage() == (
        "Removing worker 'tcp://10.0.0.1:4000' caused the cluster to lose 2001 already computed task(s), "
        "which will be recomputed elsewhere (stimulus_id='handle-worker-cleanup-1.5')"
    )


def test_only_reports_to_a_departed_client_are_dropped():
    class Comm:
        def __init__(self, name):
            self.name = name

    class Stream:
        def __init__(self, name):
            self.comm = Comm(name)

    message = "Closed comm %r while trying to write %s"
    assert not drop_reports_to_departed_clients(record(message, (Stream("Scheduler->Client"), {}), logging.CRITICAL))
    assert drop_reports_to_departed_clients(record(message, (Stream("Scheduler->Worker"), {}), logging.CRITICAL))
    assert drop_reports_to_departed_clients(record("something else"))
