"""dask-runner serve and stop under real launchers, and Runner()'s local fallback."""

import json
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, write_script

pytestmark = [pytest.mark.timeout(180)]

SERVE = [PYTHON, "-m", "dask_runners", "serve", "--no-dashboard"]

OUTSIDE_CLIENT = """\
import sys
import dask_runners

client = dask_runners.connect(sys.argv[1], timeout=30)
client.wait_for_workers(int(sys.argv[2]), timeout=60)
names = sorted(map(str, client.run(lambda dask_worker: dask_worker.name).values()))
print("OUTSIDE", client.submit(lambda x: x + 1, 41).result(), " ".join(names), flush=True)
client.shutdown()
"""


@pytest.fixture
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


class Outside:
    """Runs a process outside the job when the cluster announces itself."""

    def __init__(self, *argv):
        self.argv = argv
        self.result = None

    def __call__(self, line):
        self.result = subprocess.run([*self.argv], capture_output=True, text=True, timeout=90)


WAIT_FOR_WORKERS = """\
import sys
import dask_runners

with dask_runners.connect(sys.argv[1], timeout=30) as client:
    client.wait_for_workers(int(sys.argv[2]), timeout=60)
"""


def once_workers_are_up(scheduler_file, n_workers, action):
    """Do ``action`` once the cluster has its workers: a rank that is still
    importing Python has no handler yet, and a signal would kill it."""

    def wait_then_act(line):
        waiter = scheduler_file.with_name("wait_for_workers.py")
        waiter.write_text(WAIT_FOR_WORKERS)
        subprocess.run([PYTHON, waiter, scheduler_file, str(n_workers)], check=True, timeout=90)
        action(line)

    return wait_then_act


def assert_served_and_stopped(result, scheduler_file):
    result.assert_clean_success()
    assert f"scheduler file {scheduler_file}" in result.stdout
    assert f"dask_runners.connect('{scheduler_file}')" in result.stdout
    assert not scheduler_file.exists()


def test_an_outside_client_works_then_shuts_the_cluster_down(job_dir, slurm):
    scheduler_file = job_dir / "cluster.json"
    client = write_script(job_dir, OUTSIDE_CLIENT, name="outside.py")
    outside = Outside(PYTHON, client, scheduler_file, "2")
    command = ["srun", "-n", "3", *SERVE, "--scheduler-file", scheduler_file, "--name", "w"]
    result = launch(command, job_dir, when="dask-runner serve:", send=[outside])
    assert outside.result.returncode == 0, outside.result.stderr
    assert "OUTSIDE 42 w-1 w-2" in outside.result.stdout
    assert_served_and_stopped(result, scheduler_file)


def test_dask_runner_stop(job_dir, slurm):
    scheduler_file = job_dir / "cluster.json"
    stop = Outside(PYTHON, "-m", "dask_runners", "stop", "--scheduler-file", scheduler_file)
    result = launch(["srun", "-n", "3", *SERVE, "--scheduler-file", scheduler_file], job_dir,
                    when="dask-runner serve:", send=[stop])
    assert stop.result.returncode == 0, stop.result.stderr
    assert f"stopped the cluster of {scheduler_file}" in stop.result.stdout
    assert_served_and_stopped(result, scheduler_file)
    stale = subprocess.run([PYTHON, "-m", "dask_runners", "stop", "--scheduler-file", scheduler_file],
                           capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and f"no scheduler file at {scheduler_file}" in stale.stderr


def scancel(scheduler_file, *options):
    """Signal the serving job's tasks as scancel would; the job id is in the file's stamp."""

    def cancel(line):
        job_id = json.loads(scheduler_file.read_text())["dask_runners"]["stamp"]["job_id"]
        subprocess.run(["scancel", *options, job_id], check=True, timeout=10)

    return cancel


@pytest.mark.parametrize("options", [["--signal=TERM"], ["--signal=INT"]], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_tasks_stops_the_cluster_with_exit_status_0(job_dir, slurm, options):
    scheduler_file = job_dir / "cluster.json"
    result = launch(["srun", "-n", "3", *SERVE, "--scheduler-file", scheduler_file], job_dir,
                    when="dask-runner serve:", send=[once_workers_are_up(scheduler_file, 2, scancel(scheduler_file, *options))])
    assert_served_and_stopped(result, scheduler_file)
    assert result.stderr.count(f"received SIG{options[0][9:]}") == 3, result.report()
    assert result.after_signal < 10, result.report()


def test_sigterm_to_every_rank_under_mpirun_stops_the_cluster_with_exit_status_0(job_dir, open_mpi):
    """As a batch system signals a job's processes (mpirun itself, signalled, always fails)."""
    prefix, env = open_mpi
    scheduler_file = job_dir / "cluster.json"

    def terminate_the_ranks(line):
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if str(scheduler_file) in cmdline and cmdline[0] == PYTHON:
                proc.terminate()

    result = launch([*prefix, "3", *SERVE, "--scheduler-file", scheduler_file], job_dir, env,
                    when="dask-runner serve:", send=[once_workers_are_up(scheduler_file, 2, terminate_the_ranks)])
    assert_served_and_stopped(result, scheduler_file)
    assert result.stderr.count("received SIGTERM; closing (exit code 0)") == 3, result.report()
    assert result.after_signal < 10, result.report()


def test_more_workers_join_an_existing_cluster(job_dir, slurm):
    scheduler_file = job_dir / "cluster.json"
    client = write_script(job_dir, OUTSIDE_CLIENT, name="outside.py")
    joined = {}

    def join_then_use(line):
        # dask-mpi's --no-scheduler: a second launch adds two workers to the first's cluster
        joined["proc"] = subprocess.Popen(
            ["srun", "-n", "2", *SERVE, "--no-scheduler", "--scheduler-file", scheduler_file, "--name", "extra"],
            cwd=job_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        joined["client"] = subprocess.run([PYTHON, client, scheduler_file, "3"], capture_output=True, text=True, timeout=90)
        joined["out"], joined["err"] = joined["proc"].communicate(timeout=60)

    result = launch(["srun", "-n", "2", *SERVE, "--scheduler-file", scheduler_file], job_dir,
                    when="dask-runner serve:", send=[join_then_use])
    assert joined["client"].returncode == 0, joined["client"].stderr
    assert "OUTSIDE 42 1 extra-0 extra-1" in joined["client"].stdout
    assert joined["proc"].returncode == 0, joined["err"]
    assert "Traceback" not in joined["err"]
    assert_served_and_stopped(result, scheduler_file)


def test_serve_under_mpirun_writes_the_file_for_outside_clients(job_dir, open_mpi):
    prefix, env = open_mpi
    scheduler_file = job_dir / "cluster.json"
    client = write_script(job_dir, OUTSIDE_CLIENT, name="outside.py")
    outside = Outside(PYTHON, client, scheduler_file, "3")
    command = [*prefix, "3", *SERVE, "--scheduler-file", scheduler_file, "--inclusive-workers"]
    result = launch(command, job_dir, env, when="dask-runner serve:", send=[outside])
    assert outside.result.returncode == 0, outside.result.stderr
    assert "OUTSIDE 42 0 1 2" in outside.result.stdout  # the scheduler rank runs a worker too
    assert_served_and_stopped(result, scheduler_file)


LAPTOP = """\
from dask.distributed import Client
from dask_runners import Runner

print("BEFORE", flush=True)
with Runner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("RESULT", client.submit(lambda x: x + 1, 41).result(), "WORKERS", runner.n_workers,
              runner.job.launcher, flush=True)
"""


def test_plain_python_falls_back_to_a_local_world(job_dir):
    script = write_script(job_dir, LAPTOP, name="laptop.py")
    no_launcher = {"SLURM_JOB_ID": None, "SLURM_STEP_ID": None, "DASK_RUNNERS__LOCAL__WORKERS": "2"}
    result = launch([PYTHON, script], job_dir, env=no_launcher)
    result.assert_clean_success()
    assert "RESULT 42 WORKERS 2 local" in result.stdout
    notes = [line for line in result.stderr.splitlines() if "no launcher found" in line]
    assert notes == ["dask_runners: no launcher found, so NOT a cluster run: running laptop.py locally "
                     "as 4 ranks (scheduler, client, 2 workers: set by runners.local.workers)"]
    assert result.stdout.count("BEFORE") == 5  # this process, then each rank, runs the code before Runner()


def test_the_example_runs_with_plain_python(job_dir):
    example = Path(__file__).resolve().parents[2] / "examples" / "array_mean.py"
    no_launcher = {"SLURM_JOB_ID": None, "SLURM_STEP_ID": None, "DASK_RUNNERS__LOCAL__WORKERS": "2"}
    result = launch([PYTHON, example], job_dir, env=no_launcher)
    result.assert_clean_success()
    assert "on 2 workers (SchedulerFileRunner, local)" in result.stdout


EXECUTE_SERVES = """\
import sys
from dask_runners.mpi import execute

execute(None, scheduler_file=sys.argv[1], dashboard=False)   # no client function: serve
print("RETURNED", flush=True)
"""


def test_execute_without_a_client_function_serves_outside_clients(job_dir, open_mpi):
    prefix, env = open_mpi
    scheduler_file = job_dir / "cluster.json"
    script = write_script(job_dir, EXECUTE_SERVES)
    client = write_script(job_dir, OUTSIDE_CLIENT, name="outside.py")
    outside = Outside(PYTHON, client, scheduler_file, "2")

    def when_the_file_is_there():
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        outside(None)

    waiter = threading.Thread(target=when_the_file_is_there, daemon=True)
    waiter.start()
    result = launch([*prefix, "3", PYTHON, script, scheduler_file], job_dir, env)
    waiter.join(timeout=10)
    assert outside.result is not None and outside.result.returncode == 0, result.report()
    assert "OUTSIDE 42 1 2" in outside.result.stdout
    result.assert_clean_success()
    assert result.stdout.count("RETURNED") == 3
    assert not scheduler_file.exists()
