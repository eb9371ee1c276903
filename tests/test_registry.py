import json
from pathlib import Path

import pytest

from dask_runners import (
    LauncherEnvironmentError,
    MPIRunner,
    Runner,
    SchedulerFileRunner,
    SLURMRunner,
    register_runner,
    registry,
)
from dask_runners.services.worker import gpu_for_rank, node_local_directory

FIXTURES = Path(__file__).parent / "fixtures" / "env"


def environ(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())["environ"]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_registered", {})
    monkeypatch.setattr(registry, "_entry_points_loaded", False)


def test_runner_under_srun_is_a_slurm_runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = Runner(environ=environ("srun"))
    assert type(runner) is SLURMRunner
    assert runner.job.launcher == "slurm"


def test_runner_under_torchrun_uses_the_scheduler_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = Runner(environ=environ("torchrun_in_srun"))
    assert type(runner) is SchedulerFileRunner
    assert (runner.job.launcher, runner.rank, runner.world_size) == ("torchrun", 5, 8)
    assert runner.scheduler_file.name == "scheduler-7001.job42.json"


def test_mpi_launchers_are_served_by_mpi_runner():
    assert registry.runner_class("openmpi") is MPIRunner
    assert registry.runner_class("mpich") is MPIRunner
    assert registry.runner_class("pbs") is SchedulerFileRunner


@pytest.mark.filterwarnings("ignore:DASK_RUNNERS_.* is deprecated:FutureWarning")  # the old names still work
def test_explicit_launcher_and_environment_variable_override_detection(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {**environ("torchrun_in_srun"), "DASK_RUNNERS_LAUNCHER": "slurm"}
    assert type(Runner(environ=env)) is SLURMRunner
    assert type(Runner("torchrun", environ=env)) is SchedulerFileRunner


def test_unknown_launcher_lists_the_known_ones():
    with pytest.raises(LauncherEnvironmentError, match="known launchers: .*slurm"):
        registry.runner_class("qsub-of-the-future")


def test_nothing_detected_says_what_was_looked_for():
    with pytest.raises(LauncherEnvironmentError, match="slurm: SLURM_JOB_ID"):
        Runner(environ={})


def test_register_runner_is_idempotent_but_never_silently_replaces():
    class MyRunner(SchedulerFileRunner):
        pass

    class Other(SchedulerFileRunner):
        pass

    register_runner("mine", MyRunner)
    register_runner("mine", MyRunner)
    assert registry.runner_class("mine") is MyRunner
    with pytest.raises(ValueError, match="already served"):
        register_runner("mine", Other)


def test_runners_from_entry_points(monkeypatch):
    class Plugged(SchedulerFileRunner):
        pass

    class EntryPoint:
        name = "plugged"

        def load(self):
            return Plugged

    monkeypatch.setattr(registry.importlib.metadata, "entry_points", lambda group: [EntryPoint()])
    assert registry.runner_class("plugged") is Plugged
    assert "plugged" in registry.known_launchers()


@pytest.mark.parametrize(
    "gpus, local_rank, chosen",
    [((), 0, None), (("0",), 3, "0"), (("0", "1", "2", "3"), 1, "1"), (("4", "5"), 3, "5")],
)
def test_gpu_pinning_by_local_rank(gpus, local_rank, chosen):
    assert gpu_for_rank(gpus, local_rank) == chosen


def test_worker_scratch_space_is_node_local():
    assert node_local_directory({"SLURM_TMPDIR": "/local/job1", "TMPDIR": "/tmp/x"}) == "/local/job1"
    assert node_local_directory({"TMPDIR": "/scratch/me"}) == "/scratch/me"
    assert node_local_directory({}).startswith("/")


def test_a_launcher_without_a_job_id_needs_an_explicit_file():
    env = {"RANK": "1", "WORLD_SIZE": "4", "TORCHELASTIC_RUN_ID": ""}
    with pytest.raises(LauncherEnvironmentError):
        Runner("torchrun", environ=env)


def test_interface_goes_to_scheduler_and_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = Runner(environ=environ("srun"), interface="ib0", worker_options={"interface": "eth1"})
    assert runner.scheduler_options["interface"] == "ib0"
    assert runner.worker_options["interface"] == "eth1"
