"""The ``dask-runner`` command (also ``python -m dask_runners``, and ``dask runner``).

Options that a site may want to preset take their default from a dask config
key when the command runs (``runners.launch.ranks``, ``runners.serve.*``), so
the dask config files and ``DASK_RUNNERS__…`` variables set them. The group is
also registered as the ``runner`` command of dask's own ``dask`` command (the
``dask_cli`` entry point), which is how ``dask config get runners`` sees the
package's defaults.
"""

from __future__ import annotations

import json
import os
import sys
from functools import reduce

import click

from .config import DEFAULTS, config_value, env_variable


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
        default=lambda: config_value(key),
        show_default=shown,
        help=f"{help}  [config: {key}; env var: {env_variable(key)}]",
        **kwargs,
    )


_LAUNCHER_HELP = ("instead of detecting one (slurm, openmpi, local, ...); "
                  "default: the dask config key runners.launcher (DASK_RUNNERS__LAUNCHER).")


@click.group(name="runner", context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Start Dask clusters inside batch jobs."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@_option("-n", "--ranks", "n_ranks", key="runners.launch.ranks", type=click.IntRange(min=1),
         help="How many ranks to start on this machine.")
@_option("--log-level", key="runners.logging.level",
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
    rank's, or that of a rank that failed on its own.

    Example: dask-runner launch -n 4 examples/array_mean.py
    """
    from .local import launch as run_local, script_command

    environ = {**os.environ, env_variable("runners.logging.level"): str(log_level)}
    if log_dir:
        environ[env_variable("runners.logging.directory")] = os.path.abspath(os.path.expanduser(str(log_dir)))
    sys.exit(run_local(script_command(target, list(args), module=module), n_ranks, environ=environ))


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

    run_client_code(target, list(args), module=module, launcher=launcher)


@main.command()
@click.option("--launcher", default=None, help="Read this launcher's variables " + _LAUNCHER_HELP)
def info(launcher):
    """Print this rank's launcher and job context, one line.

    Run it the way the job runs, e.g. `srun -n 4 dask-runner info`: the first
    thing to look at when a job misbehaves.
    """
    import os
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
@_option("--interface", key="runners.serve.interface", help="Network interface, like 'eth0' or 'ib0'.")
@_option("--protocol", key="runners.serve.protocol",
         help="Network protocol, like 'tcp'; anything but 'tls' (the default) turns the job's TLS off.")
@_option("--nthreads", key="runners.serve.nthreads", type=click.IntRange(min=1),
         help="Threads per worker; by default the rank's share of the node's CPUs.")
@_option("--memory-limit", key="runners.serve.memory-limit",
         help="Bytes per worker: an integer, '4GB', or 'auto' (the whole node); by default the rank's share of the node.")
@_option("--local-directory", key="runners.serve.local-directory",
         help="Directory for the workers' files; node-local scratch ($SLURM_TMPDIR, $TMPDIR) by default.")
@_option("--scheduler/--no-scheduler", key="runners.serve.scheduler",
         help="--no-scheduler: start no scheduler; every rank adds a worker to the cluster "
              "whose --scheduler-file exists.")
@_option("--exclusive-workers/--inclusive-workers", key="runners.serve.exclusive-workers",
         help="--inclusive-workers: the scheduler rank runs a worker too.")
@_option("--worker-class", key="runners.serve.worker-class", help="Worker class to use, like 'distributed.Nanny'.")
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
    from .exceptions import ClusterNotFoundError
    from .serve import stop as stop_cluster

    if scheduler_file is None:
        raise click.UsageError("Missing option '--scheduler-file': the file of the cluster to stop, as given to `serve`")
    try:
        stop_cluster(scheduler_file, timeout)
    except (ClusterNotFoundError, TimeoutError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped the cluster of {scheduler_file}")
