"""Drop-in compatibility with dask-mpi and dask-jobqueue's runners; rank layouts; the local fallback."""

import inspect
import json
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from distributed import Client

from dask_runners import (
    LauncherEnvironmentError,
    Role,
    SLURMRunner,
    WorldTooSmallError,
    local,
)
from dask_runners import mpi as compat_mpi
from dask_runners.cli import main
from dask_runners.flags import runner_options_from_flags
from dask_runners.inprocess import InProcessRunner, InProcessWorld

from .launch import need_module
from .test_inprocess import run_world

FIXTURES = Path(__file__).parent / "fixtures" / "env"
SRUN = json.loads((FIXTURES / "srun.json").read_text())["environ"]
EMPTY = inspect.Parameter.empty


def parameters(*functions) -> dict:
    """Named parameters and their defaults, first function first."""
    found = {}
    for function in functions:
        for p in inspect.signature(function).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found.setdefault(p.name, p.default)
    return found


@pytest.fixture
def jobqueue_runner():
    """dask-jobqueue 0.9's SLURMRunner and BaseRunner (its import sets a SIGINT handler: undone)."""
    before = signal.getsignal(signal.SIGINT)
    try:
        slurm = need_module("dask_jobqueue.slurm")
        runner = need_module("dask_jobqueue.runner")
    finally:
        signal.signal(signal.SIGINT, before)
    return slurm.SLURMRunner, runner.BaseRunner


# -- dask-jobqueue's SLURMRunner --------------------------------------------------------------
def test_slurm_runner_takes_every_argument_of_dask_jobqueues_with_its_default(jobqueue_runner):
    theirs = parameters(*(cls.__init__ for cls in jobqueue_runner))
    # SLURMRunner passes **kwargs on: collect the parameters along its bases
    ours_defaults = parameters(*(c.__init__ for c in SLURMRunner.__mro__ if "__init__" in vars(c)))
    assert set(theirs) <= set(ours_defaults), set(theirs) - set(ours_defaults)
    for name, default in theirs.items():
        if name == "scheduler_file":
            # Same meaning ({job_id} is filled in); ours also names the step, so
            # two steps of one job never share a file.
            assert ours_defaults[name] == "scheduler-{job_id}.{step_id}.json"
            continue
        assert ours_defaults[name] == default, name
    inspect.signature(SLURMRunner).bind(**theirs)  # every argument by keyword


def test_scheduler_file_from_scheduler_options_as_dask_jobqueue_reads_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scheduler_options = {"scheduler_file": "my-{job_id}.json", "dashboard": False}
    worker_options = {"scheduler_file": "my-{job_id}.json", "nthreads": 2}
    runner = SLURMRunner(
        scheduler_file=None, scheduler_options=scheduler_options, worker_options=worker_options, environ=SRUN
    )
    assert runner.scheduler_file == tmp_path / f"my-{SRUN['SLURM_JOB_ID']}.json"
    assert runner.scheduler_options == {"dashboard": False}  # the runner writes the file itself
    assert runner.worker_options["nthreads"] == 2 and "scheduler_file" not in runner.worker_options
    assert scheduler_options["scheduler_file"] == "my-{job_id}.json"  # the caller's dicts are left alone


# -- dask-mpi's functions and CLI ----------------------------------------------------------------
@pytest.mark.parametrize("name", ["initialize", "execute", "send_close_signal"])
def test_dask_mpi_functions_take_its_parameters_with_its_defaults(name):
    dask_mpi = need_module("dask_mpi")
    theirs = parameters(getattr(dask_mpi, name))
    ours = parameters(getattr(compat_mpi, name))
    assert theirs == {k: ours[k] for k in theirs}


def test_serve_has_every_dask_mpi_cli_flag():
    cli = need_module("dask_mpi.cli")
    theirs = {opt for p in cli.main.params for opt in p.opts + p.secondary_opts if opt.startswith("--")}
    ours = {opt for p in main.commands["serve"].params for opt in p.opts + p.secondary_opts}
    # --nanny/--no-nanny is deprecated in dask-mpi itself: --worker-class distributed.Nanny
    assert theirs - ours == {"--nanny", "--no-nanny"}


def test_dask_mpi_options_translate_to_runner_options():
    options = runner_options_from_flags(
        interface="ib0", protocol="tcp", nthreads=2, memory_limit="2GB", local_directory="",
        dashboard=False, dashboard_address=":0", scheduler_port=8786, worker_options={"nthreads": 3},
    )
    assert options["interface"] == "ib0"
    assert options["security"] is False  # a protocol other than tls
    assert options["scheduler_options"] == {"dashboard": False, "dashboard_address": ":0", "port": 8786, "protocol": "tcp"}
    assert options["worker_options"] == {"nthreads": 3, "memory_limit": "2GB", "protocol": "tcp"}
    assert "security" not in runner_options_from_flags(protocol="tls://")


def test_serve_rejects_bad_worker_options_and_a_missing_file_to_join(tmp_path):
    cli = CliRunner()
    result = cli.invoke(main, ["serve", "--worker-options", "{nope"])
    assert result.exit_code == 2 and "is not JSON" in result.output
    result = cli.invoke(main, ["serve", "--no-scheduler"])
    assert result.exit_code == 2 and "--scheduler-file PATH" in result.output
    result = cli.invoke(main, ["serve", "--no-scheduler", "--scheduler-file", str(tmp_path / "x.json")])
    assert result.exit_code == 2 and f"no scheduler file at {tmp_path / 'x.json'}" in result.output


def test_stop_names_the_missing_or_stale_file(tmp_path):
    cli = CliRunner()
    missing = tmp_path / "gone.json"
    result = cli.invoke(main, ["stop", "--scheduler-file", str(missing)])
    assert result.exit_code == 1 and f"no scheduler file at {missing}" in result.output
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"address": "tcp://127.0.0.1:9", "dask_runners": {}}))
    result = cli.invoke(main, ["stop", "--scheduler-file", str(stale), "--timeout", "2"])
    assert result.exit_code == 1 and "the file is stale" in result.output and str(stale) in result.output


# -- rank layouts in process -----------------------------------------------------------------------
LAYOUTS = [
    # scheduler_rank, client_rank, exclusive_workers, size, workers
    (1, 0, True, 4, 2),
    (3, 2, True, 4, 2),
    (0, 1, False, 3, 3),
    (2, 0, False, 4, 4),
    # a shared rank: the scheduler runs beside the client code
    (1, 1, True, 3, 2),
    (2, 2, False, 3, 3),
    (0, 0, False, 1, 1),  # one rank: scheduler, client code and one worker
]


@pytest.mark.asyncio
@pytest.mark.timeout(60)
@pytest.mark.parametrize("scheduler_rank, client_rank, exclusive, size, workers", LAYOUTS)
async def test_scheduler_and_client_on_any_rank_with_or_without_their_own_workers(
    scheduler_rank, client_rank, exclusive, size, workers
):
    async def body(runner):
        async with Client(runner, asynchronous=True) as client:
            await client.wait_for_workers(runner.n_workers)
            assert await client.submit(lambda x: x + 1, 1) == 2
            names = await client.run(lambda dask_worker: dask_worker.name)
            return sorted(map(str, names.values()))

    codes, outcome = await run_world(
        size, body, scheduler_rank=scheduler_rank, client_rank=client_rank,
        exclusive_workers=exclusive, worker_name="w",
    )
    runner = outcome["runner"]
    assert (runner.role, runner.rank, runner.n_workers) == (Role.client, client_rank, workers)
    service = set(range(size)) - {client_rank}
    assert codes == {rank: 0 for rank in service}
    named = set(range(size)) if not exclusive else service - {scheduler_rank}
    assert outcome["result"] == sorted(f"w-{rank}" for rank in named)


def test_a_world_too_small_for_the_chosen_ranks_says_what_is_needed():
    with pytest.raises(WorldTooSmallError, match=r"at least 4 are needed \(a client on rank 0, a scheduler on rank 3"):
        InProcessRunner(InProcessWorld(3), 0, scheduler_rank=3, client_rank=0)._check_can_start()
    shared = r"at least 3 are needed \(the scheduler and the client code on rank 2, one worker\)"
    with pytest.raises(WorldTooSmallError, match=shared):
        InProcessRunner(InProcessWorld(2), 0, scheduler_rank=2, client_rank=2)._check_can_start()
    InProcessRunner(InProcessWorld(2), 0, exclusive_workers=False)._check_can_start()  # workers beside them
    InProcessRunner(InProcessWorld(1), 0, client_rank=0, exclusive_workers=False)._check_can_start()  # one rank
    with pytest.raises(WorldTooSmallError, match=r"at least 2 are needed \(the scheduler and the client code on rank 0, one worker\)"):
        InProcessRunner(InProcessWorld(1), 0, client_rank=0)._check_can_start()


# -- the local fallback --------------------------------------------------------------------------
def test_interactive_sessions_cannot_be_run_again(monkeypatch):
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    assert local.this_program() is None
    with pytest.raises(LauncherEnvironmentError, match="LocalCluster"):
        local.run_here_locally("No launcher found")


def test_the_fallback_can_be_turned_off(monkeypatch):
    import dask

    with dask.config.set({"runners.local.fallback": False}):
        with pytest.raises(LauncherEnvironmentError, match="fallback is off"):
            local.run_here_locally("No launcher found")


def test_local_workers_from_dask_config_else_one_per_core_else_a_few_on_a_big_machine():
    import dask

    with dask.config.set({"runners.local.workers": 3}):
        assert local.default_workers(cores=128) == (3, "set by runners.local.workers")
    assert local.default_workers(cores=8)[0] == 8
    workers, why = local.default_workers(cores=128)  # a login node
    assert workers == 4 and "likely shared" in why and "128 cores" in why


@pytest.mark.filterwarnings("ignore:DASK_RUNNERS_.* is deprecated:FutureWarning")  # the old names still work
def test_serve_options_come_from_the_environment_then_dask_config(monkeypatch):
    import dask

    serve = main.commands["serve"]
    with dask.config.set({"runners.serve.worker-class": "distributed.Nanny", "runners.serve.nthreads": 3}):
        params = serve.make_context("serve", []).params
        assert (params["worker_class"], params["nthreads"], params["scheduler"]) == ("distributed.Nanny", 3, True)
        monkeypatch.setenv("DASK_RUNNERS_NTHREADS", "5")
        assert serve.make_context("serve", []).params["nthreads"] == 5
        assert serve.make_context("serve", ["--nthreads", "7"]).params["nthreads"] == 7
    assert serve.make_context("serve", []).params["worker_class"] == "distributed.Worker"
