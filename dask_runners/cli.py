"""The ``dask-runner`` command (also ``python -m dask_runners``, and ``dask runner``).

Options that a site may want to preset take their default from a dask config
key when the command runs (``runners.launch.ranks``, ``runners.serve.*``), so
the dask config files and ``DASK_RUNNERS__…`` variables set them. The group is
also registered as the ``runner`` command of dask's own ``dask`` command (the
``dask_cli`` entry point), which is how ``dask config get runners`` sees the
package's defaults.

A mistake ends a command with one message and no traceback, click's way: a
bad option value, a TARGET that cannot run, or a :class:`RunnerError` (no
launcher, no cluster, ...) gives ``Error: ...`` and a non-zero status (2 for
the command line itself, 1 otherwise). A traceback is left only to what is
not a mistake of that kind: an error of the CLI itself, or one raised by the
user's own code under ``dask-runner run``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from functools import reduce
from importlib.machinery import PathFinder

import click

from . import __version__
from .config import DEFAULTS, config_value, env_variable
from .exceptions import RunnerError

#: The file names of Python interpreters, as ``launch`` tells them from scripts:
#: python, python3, python3.11, python3.13t, pypy3.
INTERPRETER_NAME = re.compile(r"(python|pypy)[0-9.]*t?")
ELF_MAGIC = b"\x7fELF"


class RunnerCommands(click.Group):
    """The ``dask-runner`` group: a :class:`RunnerError` ends any command with its message.

    The error becomes a ``click.ClickException`` (``Error: ...``, status 1),
    unless the user's code under ``dask-runner run`` raised it: that
    traceback is the code's to show, as ``python script.py`` would.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RunnerError as e:
            if _raised_in_user_code(e):
                raise
            raise click.ClickException(str(e)) from e


def _raised_in_user_code(error: BaseException) -> bool:
    """Whether ``error`` came out of the script or module that ``dask-runner run`` ran."""
    from .client_code import run_as_main

    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code is run_as_main.__code__:
            return True
        frame = frame.tb_next
    return False


class ConfigOption(click.Option):
    """An option whose default is a dask config key; a bad configured value names the key."""

    def __init__(self, param_decls, *, config_key: str, **kwargs):
        super().__init__(param_decls, **kwargs)
        self.config_key = config_key

    def handle_parse_result(self, ctx, opts, args):
        try:
            return super().handle_parse_result(ctx, opts, args)
        except click.BadParameter as e:
            if self.name not in opts:  # not on the command line: the value is the configured one
                e.message += (f" (the value of the dask config key {self.config_key}: set "
                              f"{env_variable(self.config_key)} or the dask YAML file right, or give the option)")
            raise


class JsonObject(click.ParamType):
    """A JSON object on the command line, or a mapping from the dask config."""

    name = "json"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            options = json.loads(value)
        except ValueError as e:
            self.fail(f"{value!r} is not JSON ({e}); e.g. '{{\"resources\": {{\"GPU\": 1}}}}'", param, ctx)
        if not isinstance(options, dict):
            self.fail(f"{value!r} is JSON but not an object; e.g. '{{\"nthreads\": 4}}'", param, ctx)
        return options


class MemoryLimit(click.ParamType):
    """Bytes as distributed takes them: '4GB', an integer, a fraction of the node (0.5) or 'auto'; kept as given."""

    name = "bytes"

    def convert(self, value, param, ctx):
        from dask.utils import parse_bytes

        if value is None or str(value).lower() == "auto":
            return value
        try:
            float(value)
            return value
        except (TypeError, ValueError):
            pass
        try:
            parse_bytes(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an amount of memory; use bytes ('4GB', '512MiB', 4000000000), "
                      "a fraction of the node (0.5) or 'auto'", param, ctx)
        return value


class LogLevel(click.ParamType):
    """``auto`` or a logging level's name."""

    name = "level"

    def convert(self, value, param, ctx):
        from .logs import parse_level

        if value in (None, "auto"):
            return value
        try:
            parse_level(value)
        except ValueError:
            self.fail(f"{value!r} is no level; use auto, debug, info, warning, error or critical", param, ctx)
        return value


class ImportableClass(click.ParamType):
    """A class named ``module.Class`` that imports here."""

    name = "class"

    def convert(self, value, param, ctx):
        from distributed.utils import import_term

        if not isinstance(value, str):
            return value
        try:
            import_term(value)
        except (ImportError, AttributeError, ValueError) as e:
            self.fail(f"{value!r} does not import ({e}); name a class as module.Class, like distributed.Nanny",
                      param, ctx)
        return value


class Protocol(click.ParamType):
    """A comm protocol distributed knows, like ``tcp``."""

    name = "protocol"

    def convert(self, value, param, ctx):
        from distributed.comm.registry import backends, get_backend

        try:
            get_backend(str(value).rstrip(":/"))
        except ValueError:
            self.fail(f"{value!r} is no protocol distributed knows; use one of {', '.join(sorted(backends))}",
                      param, ctx)
        return value


class NetworkInterface(click.ParamType):
    """A network interface of this node, like ``ib0``."""

    name = "interface"

    def convert(self, value, param, ctx):
        import socket

        import psutil

        known = sorted(psutil.net_if_addrs())
        if value not in known:
            self.fail(f"{value!r} is no network interface of {socket.gethostname()}; use one of "
                      f"{', '.join(known)}", param, ctx)
        return value


def _option(*names, key: str, help: str, **kwargs):
    """An option whose default is the dask config key ``key``, read when the command runs.

    The help names the key and its environment variable; the default shown
    is the packaged one (``runners.yaml``).
    """
    packaged = reduce(lambda section, part: section[part], key.split("."), DEFAULTS)
    if isinstance(packaged, bool):  # name the flag that is the default
        shown = names[0].split("/")[0 if packaged else 1].strip()
    else:
        shown = str(packaged) if packaged is not None else False
    return click.option(
        *names,
        cls=ConfigOption,
        config_key=key,
        default=lambda: config_value(key),
        show_default=shown,
        help=f"{help}  [config: {key}; env var: {env_variable(key)}]",
        **kwargs,
    )


# -- TARGET: what `launch` and `run` are asked to run ---------------------------------------------


def _bad_target(message: str) -> click.BadParameter:
    return click.BadParameter(message, param_hint="TARGET")


def _check_script(path: str) -> None:
    """Raise a usage error unless ``python`` could run ``path``: a Python file, or a directory with ``__main__.py``."""
    command = click.get_current_context().command_path
    if not os.path.exists(path):
        raise _bad_target(f"no such file: {os.path.abspath(path)}; check the path (relative to {os.getcwd()})")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "__main__.py")):
            raise _bad_target(f"{path} is a directory with no __main__.py; name the script in it")
        return
    try:
        with open(path, "rb") as file:
            first_line = file.readline(200)
    except OSError as e:
        raise _bad_target(f"cannot read {path}: {e.strerror}") from e
    if first_line.startswith(ELF_MAGIC):
        by_name = ""
        if command.endswith("launch"):
            by_name = f" (an interpreter is known by its name: `{command} python3 job.py`)"
        raise _bad_target(f"{path} is a compiled program, not a Python script; give the script: "
                          f"`{command} job.py`{by_name}")
    if first_line.startswith(b"#!") and b"python" not in first_line and not path.endswith(".py"):
        shebang = first_line[2:].decode(errors="replace").strip()
        raise _bad_target(f"{path} is a script for {shebang}, not Python; give the Python script it runs: "
                          f"`{command} job.py`")


def _check_module(name: str, also_in: str | None = None) -> None:
    """Raise a usage error unless the top-level package of module ``name`` is found (nothing is imported).

    ``also_in`` is one more directory to look in: where a ``python -m`` started there looks first.
    """
    top = name.partition(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    if not found and also_in and top:
        found = PathFinder.find_spec(top, [also_in]) is not None
    if not found:
        where = f"{also_in} or this Python's path" if also_in else "this Python's path"
        raise _bad_target(f"no module named {top!r} in {where}; install it, or add the directory that holds it "
                          "to PYTHONPATH")


def _check_target(target: str, module: bool, also_in: str | None = None) -> None:
    """Raise a usage error unless ``target`` is a script (or with ``module``, a module) that can run."""
    if module:
        _check_module(target, also_in)
    else:
        _check_script(target)


def _looks_like_interpreter(target: str) -> bool:
    return INTERPRETER_NAME.fullmatch(os.path.basename(target)) is not None


def _rank_command(target: str, args: list[str], module: bool) -> list[str]:
    """The command every rank of ``launch`` runs.

    ``python TARGET ARGS`` (``-m TARGET`` with ``module``) with this
    interpreter, or, when TARGET is a Python interpreter's name or path,
    ``TARGET ARGS`` as given: ``python3 job.py``, ``python -m pkg.module``.
    """
    from .local import script_command

    if module or not _looks_like_interpreter(target):
        _check_target(target, module, also_in=os.getcwd())
        return script_command(target, args, module=module)
    command = click.get_current_context().command_path
    interpreter = shutil.which(target)
    if interpreter is None:
        where = "at that path" if os.sep in target else "on PATH"
        raise _bad_target(f"{target!r} names a Python interpreter, but there is no such program {where}; give one "
                          f"that is, or the script alone: `{command} job.py` runs it with {sys.executable}")
    if not args:
        raise click.BadParameter(f"{target} needs something to run: `{command} {target} job.py ARGS` "
                                 f"or `{command} {target} -m package.module ARGS`", param_hint="ARGS")
    if not args[0].startswith("-"):
        _check_script(args[0])
    return [interpreter, *args]


# -- the commands ---------------------------------------------------------------------------------

_LAUNCHER_HELP = ("instead of detecting one (slurm, openmpi, local, ...); "
                  "default: the dask config key runners.launcher (DASK_RUNNERS__LAUNCHER).")


@click.group(name="runner", cls=RunnerCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="dask-runner")
def main():
    """Start Dask clusters inside batch jobs."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_option("-n", "--ranks", "n_ranks", key="runners.launch.ranks", type=click.IntRange(min=1),
         help="How many ranks to start on this machine.")
@_option("--log-level", key="runners.logging.level", type=LogLevel(),
         help="What the ranks print: auto (short), or a level (debug, info, warning, ...) for every rank.")
@_option("--log-dir", key="runners.logging.directory",
         help="Also write each rank's full log to DIR/rank-N.log.")
@click.option("-m", "module", is_flag=True, help="TARGET is a module, run as `python -m TARGET`.")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch(n_ranks, log_level, log_dir, module, target, args):
    """Run TARGET (a script, or with -m a module) as N ranks on this machine.

    Every rank runs the same program, as under `srun -n N`: in it, `Runner()`
    finds this launcher, rank 0 runs the scheduler, rank 1 the client code,
    the others workers. Signals are forwarded; the exit status is the client
    rank's, or that of a rank that failed on its own. TARGET may also be a
    Python interpreter (python, python3.11, a path), followed by what it
    runs, as typed after `mpirun -n N`.

    Example: dask-runner launch -n 4 examples/array_mean.py
    """
    from .local import launch as run_local

    command = _rank_command(target, list(args), module)
    environ = {**os.environ, env_variable("runners.logging.level"): str(log_level)}
    if log_dir:
        environ[env_variable("runners.logging.directory")] = os.path.abspath(os.path.expanduser(str(log_dir)))
    sys.exit(run_local(command, n_ranks, environ=environ))


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--launcher", default=None, help="Use this launcher " + _LAUNCHER_HELP)
@click.option("-m", "module", is_flag=True, help="TARGET is a module, run as `python -m TARGET`.")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(launcher, module, target, args):
    """Run unmodified Dask client code (TARGET) on the client rank.

    Start it under a launcher, one process per rank; the other ranks become
    the scheduler and the workers. In TARGET, `Client()` with no arguments
    connects to this job's scheduler. TARGET's exit status is the job's.

    Example: srun -n 16 dask-runner run train.py --epochs 3
    """
    from .client_code import run_client_code

    if not module and _looks_like_interpreter(target):
        command = click.get_current_context().command_path
        raise _bad_target(f"{target!r} is a Python interpreter, but `run` runs TARGET in its own Python "
                          f"({sys.executable}); leave it out: `{command} {' '.join(args) or 'job.py'}`")
    _check_target(target, module)
    run_client_code(target, list(args), module=module, launcher=launcher)


@main.command()
@click.option("--launcher", default=None, help="Read this launcher's variables " + _LAUNCHER_HELP)
def info(launcher):
    """Print this rank's launcher and job context, one line.

    Run it the way the job runs, e.g. `srun -n 4 dask-runner info`: the first
    thing to look at when a job misbehaves.
    """
    import socket

    from .launchers import detect

    job = detect(launcher=launcher)
    click.echo(f"{socket.gethostname()} pid={os.getpid()} {job.describe()}")


@main.command()
@_option("--scheduler-file", key="runners.serve.scheduler-file", type=click.Path(dir_okay=False),
         help="Where the scheduler rank writes the scheduler file (with the job's TLS credentials), "
              "for `dask_runners.connect(FILE)`; {job_id} and {step_id} are filled in. With "
              "--no-scheduler: the file of the cluster to join.  [default: scheduler-{job_id}.{step_id}.json]")
@_option("--scheduler-port", key="runners.serve.scheduler-port", type=click.IntRange(0, 65535),
         help="The scheduler's port; random by default.")
@_option("--scheduler-rank", key="runners.serve.scheduler-rank", type=click.IntRange(min=0),
         help="The rank that runs the scheduler.")
@_option("--interface", key="runners.serve.interface", type=NetworkInterface(),
         help="Network interface, like 'eth0' or 'ib0'.")
@_option("--protocol", key="runners.serve.protocol", type=Protocol(),
         help="Network protocol, like 'tcp'; anything but 'tls' (the default) turns the job's TLS off.")
@_option("--nthreads", key="runners.serve.nthreads", type=click.IntRange(min=1),
         help="Threads per worker; by default the rank's share of the node's CPUs.")
@_option("--memory-limit", key="runners.serve.memory-limit", type=MemoryLimit(),
         help="Bytes per worker: an integer, '4GB', or 'auto' (the whole node); by default the rank's share of the node.")
@_option("--local-directory", key="runners.serve.local-directory",
         help="Directory for the workers' files; node-local scratch ($SLURM_TMPDIR, $TMPDIR) by default.")
@_option("--scheduler/--no-scheduler", key="runners.serve.scheduler",
         help="--no-scheduler: start no scheduler; every rank adds a worker to the cluster "
              "whose --scheduler-file exists.")
@_option("--exclusive-workers/--inclusive-workers", key="runners.serve.exclusive-workers",
         help="--inclusive-workers: the scheduler rank runs a worker too.")
@_option("--worker-class", key="runners.serve.worker-class", type=ImportableClass(),
         help="Worker class to use, like 'distributed.Nanny'.")
@_option("--worker-options", key="runners.serve.worker-options", type=JsonObject(),
         help="JSON object of keyword arguments for the worker class.")
@_option("--dashboard/--no-dashboard", key="runners.serve.dashboard", help="Serve the scheduler's dashboard.")
@_option("--dashboard-address", key="runners.serve.dashboard-address", help="Address of the dashboard, like ':8787'.")
@_option("--name", key="runners.serve.worker-name",
         help="Prefix of the workers' names, each named NAME-RANK; by default the rank alone.")
@click.option("--launcher", default=None, help="Use this launcher " + _LAUNCHER_HELP)
def serve(launcher, scheduler_file, scheduler, name, **options):
    """Serve a Dask cluster for clients outside the job: a scheduler and workers, no client rank.

    Start it the way the job runs, one process per rank, e.g. in a batch
    script: `srun -n 16 dask-runner serve --scheduler-file $HOME/cluster.json`.
    Connect from a notebook or the login node with
    `dask_runners.connect("$HOME/cluster.json")`. The cluster stops, every
    rank exits 0 and the file is removed when a client calls
    `client.shutdown()`, on `dask-runner stop --scheduler-file FILE`, or on
    SIGTERM / SIGINT.
    """
    from pathlib import Path

    from .serve import serve as serve_cluster

    if not scheduler:
        if scheduler_file is None:
            raise click.UsageError(
                "--no-scheduler adds workers to an existing cluster: name its file with --scheduler-file PATH"
            )
        if not Path(scheduler_file).exists():
            raise click.UsageError(
                f"--no-scheduler: no scheduler file at {Path(scheduler_file).absolute()}; start the "
                f"cluster first (dask-runner serve --scheduler-file {scheduler_file}) or check the path"
            )
    serve_cluster(launcher, scheduler_file=scheduler_file, scheduler=scheduler, worker_name=name, **options)


@main.command()
@_option("--scheduler-file", key="runners.serve.scheduler-file", type=click.Path(dir_okay=False),
         help="The cluster's scheduler file, as given to `serve` (required).")
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to wait for the scheduler to answer, and then for the cluster to stop.")
def stop(scheduler_file, timeout):
    """Shut down the cluster of a `dask-runner serve` job.

    Connects with the job's credentials from the scheduler file and asks the
    scheduler to shut the cluster down; returns once the scheduler rank has
    removed its file.
    """
    from .serve import stop as stop_cluster

    if scheduler_file is None:
        raise click.UsageError("Missing option '--scheduler-file': the file of the cluster to stop, as given to `serve`")
    try:
        stop_cluster(scheduler_file, timeout)
    except TimeoutError as e:  # a ClusterNotFoundError is a RunnerError: the group says it
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped the cluster of {scheduler_file}")
