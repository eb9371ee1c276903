"""JobContext from launcher environments: tables over captured and documented fixtures."""

import dataclasses
import json
from pathlib import Path

import dask
import pytest

from dask_runners import config
from dask_runners.exceptions import LauncherEnvironmentError
from dask_runners.job import (
    JobContext,
    default_master_port,
    parse_device_list,
    visible_gpus,
)
from dask_runners.launchers import (
    DETECTION_ORDER,
    LAUNCHER_VARIABLES,
    PARSERS,
    current_job,
    detect,
    parse_pbs,
    parse_slurm,
)

FIXTURES = Path(__file__).parent / "fixtures" / "env"


def load(name: str) -> tuple[dict, dict]:
    """A fixture's environment and the files it refers to (path -> text)."""
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    return record["environ"], record.get("files", {})


def detect_fixture(name: str, launcher: str | None = None) -> JobContext:
    env, files = load(name)
    return detect(env, launcher, read_text=files.__getitem__)


def env_var(name):
    """An expectation read from the fixture itself (job ids change per capture)."""
    return lambda env: env[name]


# fixture -> the fields detect() must produce. Captured fixtures: rank 1 of 2
# on the single-node test cluster "vm" (the batch script: its only process).
EXPECTED = {
    "srun": dict(
        launcher="slurm", job_id=env_var("SLURM_JOB_ID"), step_id="0", rank=1, world_size=2,
        local_rank=1, local_world_size=2, node_rank=0, num_nodes=1, hosts=("vm",), master_addr="vm",
    ),
    # srun --mpi=pmix also sets PMIX_RANK; srun is the launcher.
    "srun_pmix": dict(launcher="slurm", step_id="0", rank=1, world_size=2, local_rank=1, local_world_size=2),
    # srun --mpi=pmi2 also sets PMI_RANK/PMI_SIZE; srun is the launcher.
    "srun_pmi2": dict(launcher="slurm", step_id="0", rank=1, world_size=2, local_rank=1, local_world_size=2),
    "openmpi": dict(
        launcher="openmpi", job_id=None, step_id=env_var("PMIX_NAMESPACE"), rank=1, world_size=2,
        local_rank=1, local_world_size=2, node_rank=None, num_nodes=None, hosts=(), master_addr=None,
    ),
    # mpirun inside salloc: Open MPI numbers the ranks; the job is Slurm's.
    "salloc_openmpi": dict(
        launcher="openmpi", job_id=env_var("SLURM_JOB_ID"), rank=1, world_size=2, local_rank=1,
        local_world_size=2, hosts=("vm",), master_addr="vm",
    ),
    "mpich": dict(
        launcher="mpich", job_id=None, step_id=None, rank=1, world_size=2, local_rank=1,
        local_world_size=2, hosts=(), master_addr=None, master_port=29500,
    ),
    # The batch script is not a task of a step: no per-task numbers.
    "sbatch": dict(
        launcher="slurm", job_id=env_var("SLURM_JOB_ID"), step_id=None, rank=None, world_size=None,
        local_rank=None, node_rank=None, num_nodes=1, hosts=("vm",),
    ),
    "torchrun_in_srun": dict(
        launcher="torchrun", job_id="7001", step_id="job42", rank=5, world_size=8, local_rank=1,
        local_world_size=4, node_rank=1, hosts=("gpu01", "gpu02"), gpus=("0", "1", "2", "3"),
        master_addr="gpu01", master_port=29400, restart_count=1,
    ),
    "mvapich2_in_slurm": dict(
        launcher="mvapich2", job_id="8123", rank=3, world_size=4, local_rank=1, local_world_size=2,
        hosts=("cn0101", "cn0102"), master_addr="cn0101",
    ),
    "pals_in_pbs": dict(
        launcher="pals", job_id="1234567.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov",
        step_id="3f2d0b8a-1c9e-4c57-9b8e-2a6a9c0e7d11", rank=6, world_size=8, local_rank=2,
        local_world_size=4, node_rank=1, gpus=("1",),
        hosts=("x3001c0s1b0n0.hsn.cm.polaris.alcf.anl.gov", "x3001c0s1b1n0.hsn.cm.polaris.alcf.anl.gov"),
    ),
    # Summit-style: the launch node "batch3" is listed first (documented limitation).
    "jsrun": dict(
        launcher="jsrun", job_id="2801234", rank=7, world_size=12, local_rank=1, local_world_size=6,
        hosts=("batch3", "a01n01", "a01n02"), gpus=("1",),
    ),
    "flux_in_slurm": dict(
        launcher="flux", job_id="\u0192Q8wCHcN7", rank=5, world_size=8, local_rank=1, num_nodes=2,
        local_world_size=None, node_rank=None,
    ),
    "pbsdsh": dict(
        launcher="pbs", job_id="4242.head", rank=3, world_size=4, local_rank=1, local_world_size=2,
        node_rank=1, num_nodes=2, hosts=("n001", "n002"), master_addr="n001",
    ),
    "local": dict(
        launcher="local", job_id="local-5f1c", rank=2, world_size=4, local_rank=2, local_world_size=4,
        node_rank=0, num_nodes=1, hosts=("localhost",), master_addr="localhost",
    ),
}


def test_every_fixture_has_expectations():
    names = {path.stem for path in FIXTURES.glob("*.json")}
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detect_fixture(name):
    env, _ = load(name)
    context = detect_fixture(name)
    for field, expected in EXPECTED[name].items():
        if callable(expected):
            expected = expected(env)
        assert getattr(context, field) == expected, field


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_of_the_detected_launcher_agrees(name):
    env, files = load(name)
    context = detect_fixture(name)
    assert PARSERS[context.launcher](env, files.__getitem__) == context


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_master_port_is_deterministic(name):
    env, _ = load(name)
    context = detect_fixture(name)
    if "MASTER_PORT" in env:
        assert context.master_port == int(env["MASTER_PORT"])
    else:
        assert context.master_port == default_master_port(context.job_id, context.step_id)


# -- precedence -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, launcher, rank, world_size",
    [
        # Forcing the inner interface srun served gives the same numbering.
        ("srun_pmix", "pmix", 1, None),
        ("srun_pmi2", "mpich", 1, 2),
        # Forcing Slurm under torchrun or Flux gives the outer step's numbering.
        ("torchrun_in_srun", "slurm", 1, 2),
        ("flux_in_slurm", "slurm", 1, 2),
        ("flux_in_slurm", "mpich", 5, 8),
        # The batch allocation around mpirun: no step, so no ranks.
        ("salloc_openmpi", "slurm", None, None),
        ("salloc_openmpi", "pmix", 1, None),
        ("pals_in_pbs", "mpich", 6, 8),
        ("pbsdsh", "pbs", 3, 4),
    ],
)
def test_forced_launcher(name, launcher, rank, world_size):
    context = detect_fixture(name, launcher)
    assert (context.launcher, context.rank, context.world_size) == (launcher, rank, world_size)


def test_the_launcher_config_key_forces_choice():
    env, _ = load("torchrun_in_srun")
    with dask.config.set({"runners.launcher": "slurm"}):
        assert detect(env).launcher == "slurm"
        # An explicit argument beats the key.
        assert detect(env, "torchrun").launcher == "torchrun"
        # So does our local launcher naming itself for the ranks it starts.
        local, _ = load("local")
        assert detect({**env, **local, "RUNNERS_LAUNCHER": "local"}).launcher == "local"


def test_the_deprecated_launcher_variable_still_forces_choice_with_a_warning(monkeypatch):
    monkeypatch.setattr(config, "_warned", set())
    env, _ = load("torchrun_in_srun")
    with pytest.warns(FutureWarning, match="DASK_RUNNERS_LAUNCHER is deprecated.*set DASK_RUNNERS__LAUNCHER"):
        assert detect({**env, "DASK_RUNNERS_LAUNCHER": "slurm"}).launcher == "slurm"
    assert detect({**env, "DASK_RUNNERS_LAUNCHER": "slurm"}, "torchrun").launcher == "torchrun"


def test_hydra_proxies_started_by_srun_keep_mpich_ranks():
    """mpiexec inside sbatch starts one proxy per node with srun: SLURM_PROCID numbers proxies."""
    env = {
        "PMI_RANK": "3", "PMI_SIZE": "4", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2",
        "SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_NODEID": "1", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_JOB_NODELIST": "n[1-2]",
    }
    context = detect(env)
    assert (context.launcher, context.rank, context.world_size, context.job_id) == ("mpich", 3, 4, "77")
    assert context.hosts == ("n1", "n2")


def test_pmix_alone_is_pmix():
    env = {"PMIX_RANK": "2", "PMIX_NAMESPACE": "prterun-host-1234@1"}
    context = detect(env)
    assert (context.launcher, context.rank, context.world_size, context.step_id) == (
        "pmix", 2, None, "prterun-host-1234@1"
    )


def test_rank_and_size_exported_by_hand_are_not_torchrun():
    env, _ = load("srun")
    env = {**env, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "vm", "MASTER_PORT": "1234"}
    context = detect(env)
    assert context.launcher == "slurm"
    assert (context.master_addr, context.master_port) == ("vm", 1234)


def test_order_and_registry_agree():
    assert set(DETECTION_ORDER) == set(PARSERS) == set(LAUNCHER_VARIABLES)
    assert DETECTION_ORDER.index("torchrun") < DETECTION_ORDER.index("slurm")
    assert DETECTION_ORDER.index("openmpi") < DETECTION_ORDER.index("pmix") < DETECTION_ORDER.index("slurm")
    assert all(spec.source for spec in LAUNCHER_VARIABLES.values())


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_parsers_return_none_without_their_variables(name):
    assert PARSERS[name]({"PATH": "/usr/bin", "HOME": "/root"}) is None


# -- errors -------------------------------------------------------------------------


def test_nothing_detected_lists_what_was_looked_for():
    with pytest.raises(LauncherEnvironmentError) as info:
        detect({"PATH": "/usr/bin"})
    message = str(info.value)
    for name in DETECTION_ORDER:
        assert f"  {name}: " in message
    assert "openmpi: OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE" in message
    assert "slurm: SLURM_JOB_ID" in message
    assert "torchrun: RANK and WORLD_SIZE and LOCAL_RANK and TORCHELASTIC_RUN_ID" in message
    assert "runners.launcher (DASK_RUNNERS__LAUNCHER=...)" in message


def test_unknown_launcher_lists_known_ones():
    with pytest.raises(LauncherEnvironmentError, match="unknown launcher 'sge'.*flux.*slurm"):
        detect({}, "sge")


def test_forced_launcher_without_its_variables_says_what_it_needs():
    env, _ = load("srun")
    with pytest.raises(LauncherEnvironmentError, match="'flux' was chosen.*FLUX_TASK_RANK and FLUX_JOB_SIZE"):
        detect(env, "flux")


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"SLURM_PROCID": "one"}, ["SLURM_PROCID='one'", "not an integer"]),
        ({"SLURM_STEP_NODELIST": "vm[1-"}, ["SLURM_STEP_NODELIST", "never closed"]),
        ({"SLURM_STEP_TASKS_PER_NODE": "2(x"}, ["SLURM_STEP_TASKS_PER_NODE"]),
        ({"SLURM_PROCID": "5"}, ["contradict", "rank=5 is outside world_size=2"]),
        ({"MASTER_PORT": "http"}, ["MASTER_PORT='http'"]),
    ],
)
def test_malformed_values_are_named(changes, words):
    env, _ = load("srun")
    with pytest.raises(LauncherEnvironmentError) as info:
        detect({**env, **changes})
    for word in words:
        assert word in str(info.value)


# -- torch.distributed ---------------------------------------------------------------


def test_torch_env_from_srun():
    context = detect_fixture("srun")
    assert context.torch_distributed_env(environ={}) == {
        "MASTER_ADDR": "vm",
        "MASTER_PORT": str(context.master_port),
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "NODE_RANK": "0",
    }


def test_torch_env_keeps_what_the_user_set():
    context = detect_fixture("srun")
    user = {"MASTER_ADDR": "login1", "MASTER_PORT": "12345"}
    result = context.torch_distributed_env(environ=user)
    assert "MASTER_ADDR" not in result and "MASTER_PORT" not in result
    assert result["RANK"] == "1"
    assert context.torch_distributed_env(overwrite=True, environ=user)["MASTER_ADDR"] == "vm"


def test_torch_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "99")
    assert "WORLD_SIZE" not in detect_fixture("srun").torch_distributed_env()


def test_torch_env_under_torchrun_adds_only_node_rank():
    env, _ = load("torchrun_in_srun")
    assert detect(env).torch_distributed_env(environ=env) == {"NODE_RANK": "1"}


def test_torch_env_leaves_out_unknown_optional_values():
    result = detect_fixture("salloc_openmpi").torch_distributed_env(environ={})
    assert "NODE_RANK" not in result
    assert result["MASTER_ADDR"] == "vm"


def test_torch_env_without_a_host_says_what_to_set():
    context = detect_fixture("mpich")
    with pytest.raises(LauncherEnvironmentError, match="MASTER_ADDR"):
        context.torch_distributed_env(environ={})
    assert "MASTER_ADDR" not in context.torch_distributed_env(environ={"MASTER_ADDR": "head"})


# -- GPUs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0", ("0",)),
        ("0,1,2,3", ("0", "1", "2", "3")),
        (" 2, 3 ", ("2", "3")),
        ("", ()),
        ("NoDevFiles", ()),
        ("GPU-8f3a2b1c-0000-1111-2222-333344445555", ("GPU-8f3a2b1c-0000-1111-2222-333344445555",)),
        ("0.0,0.1", ("0.0", "0.1")),
    ],
)
def test_parse_device_list(text, expected):
    assert parse_device_list(text) == expected


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, ()),
        ({"CUDA_VISIBLE_DEVICES": "1", "ROCR_VISIBLE_DEVICES": "0,1"}, ("1",)),
        ({"ROCR_VISIBLE_DEVICES": "2,3"}, ("2", "3")),
        ({"ZE_AFFINITY_MASK": "0.1"}, ("0.1",)),
        # Set to nothing means none, even when Slurm allocated some.
        ({"CUDA_VISIBLE_DEVICES": "", "SLURM_STEP_GPUS": "4,5"}, ()),
    ],
)
def test_visible_gpus(env, expected):
    assert visible_gpus(env, ("SLURM_STEP_GPUS",)) == expected


def test_slurm_gpus_fall_back_to_step_gpus():
    env, _ = load("srun")
    assert parse_slurm({**env, "SLURM_STEP_GPUS": "4,5"}).gpus == ("4", "5")
    assert parse_slurm({**env, "SLURM_STEP_GPUS": "4,5", "CUDA_VISIBLE_DEVICES": "0"}).gpus == ("0",)


# -- Slurm details ------------------------------------------------------------------------


@pytest.mark.parametrize("node_id, local_world_size", [(0, 2), (2, 2), (3, 1)])
def test_slurm_tasks_per_node(node_id, local_world_size):
    env = {
        "SLURM_JOB_ID": "5", "SLURM_STEP_ID": "1", "SLURM_PROCID": "6", "SLURM_STEP_NUM_TASKS": "7",
        "SLURM_NODEID": str(node_id), "SLURM_LOCALID": "0", "SLURM_STEP_TASKS_PER_NODE": "2(x3),1",
        "SLURM_STEP_NODELIST": "n[1-4]", "SLURM_STEP_NUM_NODES": "4", "SLURM_CPUS_PER_TASK": "8",
        "SLURM_RESTART_COUNT": "2",
    }
    context = parse_slurm(env)
    assert context.local_world_size == local_world_size
    assert context.host == f"n{node_id + 1}"
    assert (context.cpus_per_task, context.restart_count, context.num_nodes) == (8, 2, 4)


def test_slurm_step_falls_back_to_job_variables():
    env = {
        "SLURM_JOB_ID": "5", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "3",
        "SLURM_NODEID": "0", "SLURM_TASKS_PER_NODE": "3", "SLURM_NODELIST": "a[7-8]",
    }
    context = parse_slurm(env)
    assert (context.world_size, context.local_world_size, context.hosts, context.num_nodes) == (
        3, 3, ("a7", "a8"), 2
    )


def test_master_addr_prefers_the_environment():
    env, _ = load("srun")
    assert detect({**env, "MASTER_ADDR": "10.0.0.1"}).master_addr == "10.0.0.1"


# -- PBS node file ---------------------------------------------------------------------------


def test_pbs_nodefile_read_from_disk(tmp_path):
    nodefile = tmp_path / "4242.head"
    nodefile.write_text("n001\nn001\nn002\nn002\n\n")
    env = {"PBS_JOBID": "4242.head", "PBS_NODEFILE": str(nodefile), "PBS_VNODENUM": "2", "PBS_NODENUM": "1"}
    context = parse_pbs(env)
    assert (context.rank, context.world_size, context.local_rank, context.local_world_size) == (2, 4, 0, 2)
    assert (context.node_rank, context.num_nodes, context.hosts) == (1, 2, ("n001", "n002"))


def test_pbs_unreadable_nodefile_names_the_path(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(LauncherEnvironmentError, match=f"PBS_NODEFILE={missing} cannot be read"):
        parse_pbs({"PBS_JOBID": "1", "PBS_NODEFILE": str(missing)})


def test_pbs_batch_script_without_pbsdsh_has_no_rank():
    context = parse_pbs({"PBS_JOBID": "1.head"})
    assert (context.rank, context.world_size, context.hosts) == (None, None, ())


def test_mpi_inside_pbs_borrows_job_and_hosts():
    env = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4", "PBS_JOBID": "9.head", "PBS_NODEFILE": "/nf"}
    context = detect(env, read_text={"/nf": "a\na\nb\nb\n"}.__getitem__)
    assert (context.launcher, context.job_id, context.hosts) == ("openmpi", "9.head", ("a", "b"))


# -- the context itself -----------------------------------------------------------------------


def test_describe_is_one_readable_line():
    context = JobContext(
        launcher="slurm", job_id="123", step_id="0", rank=2, world_size=16, local_rank=0,
        local_world_size=4, node_rank=0, num_nodes=4, hosts=("node01", "node02", "node03", "node04"),
        gpus=("0",),
    )
    expected = "JobContext(slurm job=123.0 rank=2/16 local=0/4 node=0/4 host=node01 gpus=0)"
    assert context.describe() == repr(context) == expected


def test_describe_marks_unknowns():
    assert repr(JobContext(launcher="mpich", rank=1, world_size=2)) == (
        "JobContext(mpich job=? rank=1/2 local=?/? node=?/? host=? gpus=none)"
    )


def test_context_is_frozen_and_checked():
    context = JobContext(launcher="x", rank=0, world_size=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        context.rank = 1
    with pytest.raises(ValueError, match="rank=1 is outside world_size=1"):
        JobContext(launcher="x", rank=1, world_size=1)
    with pytest.raises(ValueError, match="local_rank=-1"):
        JobContext(launcher="x", local_rank=-1)


def test_default_master_port():
    assert default_master_port(None) == 29500
    port = default_master_port("123", "0")
    assert 20000 <= port < 30000
    assert port == default_master_port("123", "0")
    assert {default_master_port("123", str(step)) for step in range(20)} != {port}
    assert default_master_port("123") != default_master_port("124")


def test_current_job_reads_os_environ_each_time(monkeypatch):
    monkeypatch.setenv("RUNNERS_LAUNCHER", "local")
    monkeypatch.setenv("RUNNERS_RANK", "0")
    monkeypatch.setenv("RUNNERS_WORLD_SIZE", "3")
    assert (current_job().launcher, current_job().rank) == ("local", 0)
    monkeypatch.setenv("RUNNERS_RANK", "2")
    assert current_job().rank == 2
