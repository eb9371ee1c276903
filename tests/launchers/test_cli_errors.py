"""Every dask-runner command, given a mistake, says what is wrong and what to do: one message, no traceback.

:data:`MISTAKES` holds, for each command of the group, wrong command lines and
what the message must name: the value it saw and the fix. The commands run as
real processes (``python -m dask_runners``), outside any job: every
launcher's variable and every ``DASK_*`` variable is removed from their
environment.
"""

import os
import shutil

import pytest

from dask_runners.cli import main

from ..launch import PYTHON, launch, write_script

pytestmark = [pytest.mark.timeout(120)]

#: Variables some launcher or our config reads; none is set outside a job.
JOB_VARIABLE_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "RUNNERS_", "DASK_", "MV2_", "PALS_", "JSM_", "FLUX_",
                         "PBS_", "TORCHELASTIC_")
JOB_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

LS = shutil.which("ls")


def mistake(*argv, shows, env=None, status=2):
    """A wrong command line, the fragments its message must hold, and the exit status."""
    return pytest.param(list(argv), shows, env or {}, status, id=" ".join(argv)[:60])


MISTAKES = {
    "launch": [
        mistake("launch", "-n", "2", "missing.py", shows=["missing.py", "check the path"]),
        mistake("launch", "-n", "2", LS, shows=[LS, "compiled program", "dask-runner launch python3 job.py"]),
        mistake("launch", "-n", "2", "job.sh",
                shows=["job.sh", "/bin/bash", "not Python", "dask-runner launch job.py"]),
        mistake("launch", "-n", "2", "python9.9", "job.py", shows=["'python9.9'", "no such program on PATH"]),
        mistake("launch", "-n", "2", "python", shows=["python needs something to run", "python job.py"]),
        mistake("launch", "-n", "2", "python", "missing.py", shows=["missing.py", "check the path"]),
        mistake("launch", "-n", "2", "-m", "no_such_module", shows=["'no_such_module'", "PYTHONPATH"]),
        mistake("launch", "-n", "0", "job.py", shows=["0 is not in the range", "x>=1"]),
        mistake("launch", "--log-level", "loud", "job.py", shows=["'loud'", "debug, info"]),
        mistake("launch", "job.py", env={"DASK_RUNNERS__LAUNCH__RANKS": "many"},
                shows=["'many'", "DASK_RUNNERS__LAUNCH__RANKS", "runners.launch.ranks"]),
    ],
    "run": [
        mistake("run", "missing.py", shows=["missing.py", "check the path"]),
        mistake("run", "python", "job.py", "--epochs", "3", shows=["'python'", "leave it out",
                                                                  "dask-runner run job.py --epochs 3"]),
        mistake("run", "-m", "no_such_module", shows=["'no_such_module'", "PYTHONPATH"]),
        mistake("run", "--launcher", "slurm", "job.py", status=1, shows=["'slurm'", "SLURM_JOB_ID", "srun -n"]),
    ],
    "info": [
        mistake("info", status=1, shows=["No launcher found", "SLURM_JOB_ID", "srun -n 4"]),
        mistake("info", "--launcher", "bogus", status=1, shows=["'bogus'", "known launchers: flux"]),
    ],
    "serve": [
        mistake("serve", "--memory-limit", "lots", shows=["'lots'", "'4GB'"]),
        mistake("serve", "--worker-class", "no_such_module.Worker", shows=["no_such_module", "distributed.Nanny"]),
        mistake("serve", "--protocol", "carrier-pigeon", shows=["'carrier-pigeon'", "tcp, tls"]),
        mistake("serve", "--interface", "bogus0", shows=["'bogus0'", "use one of", "lo"]),
        mistake("serve", "--worker-options", "[1]", shows=["'[1]'", "not an object"]),
        mistake("serve", "--scheduler-port", "99999", shows=["99999", "0<=x<=65535"]),
        mistake("serve", env={"DASK_RUNNERS__SERVE__NTHREADS": "zero"},
                shows=["'zero'", "DASK_RUNNERS__SERVE__NTHREADS"]),
        mistake("serve", "--no-scheduler", shows=["--no-scheduler", "--scheduler-file PATH"]),
        mistake("serve", "--no-scheduler", "--scheduler-file", "gone.json",
                shows=["gone.json", "start the cluster first"]),
        mistake("serve", "--launcher", "slurm", status=1, shows=["'slurm'", "SLURM_JOB_ID", "srun -n"]),
        # Three ranks, each of which finds the mistake and says so.
        mistake("launch", "-n", "3", "-m", "dask_runners", "serve", "--scheduler-file", "no/such/dir/c.json",
                status=1, shows=["no/such/dir does not exist", "create the directory"]),
    ],
    "stop": [
        mistake("stop", shows=["--scheduler-file", "as given to `serve`"]),
        mistake("stop", "--scheduler-file", "gone.json", status=1, shows=["gone.json", "the path is wrong"]),
        mistake("stop", "--scheduler-file", "c.json", "--timeout", "-1", shows=["-1", "x>=0"]),
    ],
}


def outside_any_job(**extra) -> dict:
    """Changes to this environment that leave no launcher's variable and no ``DASK_*`` one, plus ``extra``.

    ``python`` on the ``PATH`` is the tests' interpreter.
    """
    removed = {name: None for name in os.environ if name.startswith(JOB_VARIABLE_PREFIXES) or name in JOB_VARIABLES}
    path = os.pathsep.join([os.path.dirname(PYTHON), os.environ.get("PATH", "")])
    return {**removed, "PATH": path, **extra}


def test_every_command_has_its_mistakes():
    assert sorted(MISTAKES) == sorted(main.commands)


@pytest.mark.parametrize("argv, shows, env, status", [case for cases in MISTAKES.values() for case in cases])
def test_a_mistake_gives_one_message_naming_the_value_and_the_fix(job_dir, argv, shows, env, status):
    write_script(job_dir, "print('a script')\n", name="job.py")
    write_script(job_dir, "#!/bin/bash\necho a shell script\n", name="job.sh")
    result = launch([PYTHON, "-m", "dask_runners", *argv], job_dir, env=outside_any_job(**env), timeout=90)
    output = result.stdout + result.stderr
    assert result.returncode == status, result.report()
    assert "Traceback" not in output, result.report()
    assert "Error: " in result.stderr, result.report()
    for fragment in shows:
        assert fragment in output, f"{fragment!r} not in the message\n{result.report()}"
    assert result.leftovers == [], result.report()


def test_the_users_own_error_under_run_keeps_its_traceback(job_dir):
    """A RunnerError raised by the script itself is the script's: its traceback shows, as `python` would."""
    script = write_script(job_dir, """\
        from dask_runners import ConfigurationError

        def check():
            raise ConfigurationError("the script's own check failed")

        check()
    """, name="own.py")
    argv = [PYTHON, "-m", "dask_runners", "launch", "-n", "3", "-m", "dask_runners", "run", script]
    result = launch(argv, job_dir, env=outside_any_job())
    assert result.returncode == 1, result.report()
    assert result.tracebacks == 1, result.report()
    assert 'own.py", line 4, in check' in result.stderr, result.report()
    assert "ConfigurationError: the script's own check failed" in result.stderr, result.report()

