"""The dask-runner command: run unmodified client code, info, an interpreter as launch's TARGET, `dask runner`."""

import shutil
import sys
from pathlib import Path

import pytest

import dask_runners

from ..launch import PYTHON, launch, need, slurm_is_up, write_script
from .test_cli_errors import outside_any_job

pytestmark = [pytest.mark.timeout(120)]

PLAIN = """\
import sys
from dask.distributed import Client

def inc(x):
    return x + 1

if __name__ == "__main__":
    client = Client()                      # no address: the job's own scheduler
    client.wait_for_workers(2)
    print("RESULT", client.submit(inc, 41).result(), sys.argv, flush=True)
    client.close()
    if "--fail" in sys.argv:
        sys.exit(3)
"""


@pytest.fixture
def slurm():
    need(slurm_is_up(), "a running Slurm (ci/start-slurm.sh)")


def test_run_unmodified_client_code_under_srun(job_dir, slurm):
    script = write_script(job_dir, PLAIN, name="plain.py")
    result = launch(["srun", "-n", "4", PYTHON, "-m", "dask_runners", "run", script, "--epochs", "3"], job_dir)
    result.assert_clean_success()
    assert f"RESULT 42 ['{script}', '--epochs', '3']" in result.stdout
    assert list(job_dir.glob("scheduler*.json")) == []


def test_the_scripts_exit_status_is_the_jobs(job_dir, slurm):
    script = write_script(job_dir, PLAIN, name="plain.py")
    result = launch(["srun", "-n", "4", PYTHON, "-m", "dask_runners", "run", script, "--fail"], job_dir)
    assert result.returncode == 3, result.report()
    assert result.tracebacks == 0, result.report()


def test_run_a_module_under_the_local_launcher(job_dir):
    write_script(job_dir, PLAIN, name="plainmod.py")
    command = [PYTHON, "-m", "dask_runners", "launch", "-n", "4", "-m", "dask_runners", "run", "-m", "plainmod", "x"]
    result = launch(command, job_dir, env={"PYTHONPATH": str(job_dir)})
    result.assert_clean_success()
    assert "RESULT 42" in result.stdout and "'x'" in result.stdout


def test_info_prints_one_line_per_rank(job_dir, slurm):
    result = launch(["srun", "-n", "3", PYTHON, "-m", "dask_runners", "info"], job_dir)
    assert result.returncode == 0, result.report()
    lines = sorted(line for line in result.stdout.splitlines() if "JobContext(slurm" in line)
    assert len(lines) == 3
    assert [line.split("rank=")[1].split()[0] for line in lines] == ["0/3", "1/3", "2/3"]


WHO_AM_I = """\
import os, sys
# One write: print() writes its pieces apart, and two ranks' pieces can interleave on the shared pipe.
sys.stdout.write(f"RANK {os.environ['RUNNERS_RANK']} {sys.executable} {sys.argv[1:]}\\n")
sys.stdout.flush()
"""


@pytest.mark.parametrize("interpreter", ["python", f"python{sys.version_info[0]}",
                                         f"python{sys.version_info[0]}.{sys.version_info[1]}", PYTHON])
def test_launch_takes_an_interpreter_as_target_as_mpirun_is_typed(job_dir, interpreter):
    env = outside_any_job()
    found = shutil.which(interpreter, path=env["PATH"])
    need(found is not None and Path(found).parent == Path(PYTHON).parent, f"{interpreter} beside {PYTHON}")
    write_script(job_dir, WHO_AM_I, name="job.py")
    argv = [PYTHON, "-m", "dask_runners", "launch", "-n", "2", interpreter, "job.py", "a", "--b"]
    result = launch(argv, job_dir, env=env)
    assert result.returncode == 0, result.report()
    assert sorted(result.stdout.splitlines()) == [f"RANK {rank} {found} ['a', '--b']" for rank in (0, 1)]


def test_launch_runs_an_interpreters_module_as_a_job(job_dir):
    script = write_script(job_dir, PLAIN, name="plain.py")
    argv = [PYTHON, "-m", "dask_runners", "launch", "-n", "4", "python", "-m", "dask_runners", "run", script, "x"]
    result = launch(argv, job_dir, env=outside_any_job())
    result.assert_clean_success()
    assert f"RESULT 42 ['{script}', 'x']" in result.stdout


@pytest.mark.parametrize("command", [["dask-runner"], ["dask", "runner"]])
def test_the_installed_commands_say_their_version_and_run(tmp_path, command):
    """`dask runner` is the group found through dask's `dask_cli` entry point, as installed (not this checkout)."""
    program = Path(PYTHON).with_name(command[0])
    need(program.exists(), f"{program} (pip install -e .)")
    argv = [str(program), *command[1:]]
    version = launch([*argv, "--version"], tmp_path, env=outside_any_job())
    assert version.returncode == 0, version.report()
    assert version.stdout.strip() == f"dask-runner, version {dask_runners.__version__}", version.report()
    listed = launch([*argv, "--help"], tmp_path, env=outside_any_job())
    assert listed.returncode == 0 and "launch" in listed.stdout and "serve" in listed.stdout, listed.report()
    info = launch([*argv, "info"], tmp_path, env=outside_any_job())
    assert info.returncode == 1 and info.tracebacks == 0, info.report()
    assert "Error: No launcher found" in info.stderr, info.report()
