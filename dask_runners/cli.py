"""The ``dask-runner`` command (also ``python -m dask_runners``)."""

from __future__ import annotations

import json
import sys

import click


def _json_object(ctx, param, value):
    if value is None:
        return None
    try:
        options = json.loads(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not JSON ({e}); e.g. '{{\"resources\": {{\"GPU\": 1}}}}'") from e
    if not isinstance(options, dict):
        raise click.BadParameter(f"{value!r} is JSON but not an object; e.g. '{{\"nthreads\": 4}}'")
    return options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Start Dask clusters inside batch jobs."""


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("-n", "--ranks", "n_ranks", type=click.IntRange(min=1), default=4, show_default=True,
              envvar="DASK_RUNNERS_RANKS", help="How many ranks to start on this machine.")
@click.option("-m", "module", is_flag=True, help="TARGET is a module, run as `python -m TARGET`.")
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def launch(n_ranks, module, target, args):
    """Run TARGET (a script, or with -m a module) as N ranks on this machine.

    Every rank runs the same program, as under `srun -n N`: in it, `Runner()`
    finds this launcher, rank 0 runs the scheduler, rank 1 the client code,
    the others workers. Signals are forwarded; the exit status is the client
    rank's, or that of a rank that failed on its own.

    Example: dask-runner launch -n 4 examples/array_mean.py
    """
    from .local import launch as run_local, script_command

    sys.exit(run_local(script_command(target, list(args), module=module), n_ranks))


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--launcher", default=None, envvar="DASK_RUNNERS_LAUNCHER",
              help="Use this launcher instead of detecting one (slurm, openmpi, local, ...).")
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
@click.option("--launcher", default=None, envvar="DASK_RUNNERS_LAUNCHER",
              help="Read this launcher's variables instead of detecting one.")
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


def _option(*names, envvar, default=None, **kwargs):
    """A ``serve`` option: from the command line, else the environment variable
    ``DASK_RUNNERS_{envvar}``, else the dask config key ``runners.serve.{key}``
    (``SCHEDULER_FILE`` -> ``scheduler-file``), else ``default``."""
    import dask.config

    key = f"runners.serve.{envvar.lower().replace('_', '-')}"
    if isinstance(default, bool):  # name the flag that is the default
        shown = names[0].split("/")[0 if default else 1].strip()
    else:
        shown = str(default) if default is not None else False
    return click.option(
        *names,
        envvar=f"DASK_RUNNERS_{envvar}",
        show_envvar=True,
        default=lambda: dask.config.get(key, default),
        show_default=shown,
        **kwargs,
    )


@main.command()
@_option("--scheduler-file", envvar="SCHEDULER_FILE", type=click.Path(dir_okay=False),
         help="Where the scheduler rank writes the scheduler file (with the job's TLS credentials), "
              "for `dask_runners.connect(FILE)`; {job_id} and {step_id} are filled in. With "
              "--no-scheduler: the file of the cluster to join.  [default: scheduler-{job_id}.{step_id}.json]")
@_option("--scheduler-port", envvar="SCHEDULER_PORT", type=click.IntRange(0, 65535), default=None,
         help="The scheduler's port; random by default.")
@_option("--scheduler-rank", envvar="SCHEDULER_RANK", type=click.IntRange(min=0), default=0,
         help="The rank that runs the scheduler.")
@_option("--interface", envvar="INTERFACE", default=None, help="Network interface, like 'eth0' or 'ib0'.")
@_option("--protocol", envvar="PROTOCOL", default=None,
         help="Network protocol, like 'tcp'; anything but 'tls' (the default) turns the job's TLS off.")
@_option("--nthreads", envvar="NTHREADS", type=click.IntRange(min=1), default=None,
         help="Threads per worker; by default the task's CPUs (Slurm) or distributed's default.")
@_option("--memory-limit", envvar="MEMORY_LIMIT", default="auto",
         help="Bytes per worker before spilling to disk: an integer, a fraction of memory, '4GB' or 'auto'.")
@_option("--local-directory", envvar="LOCAL_DIRECTORY", default=None,
         help="Directory for the workers' files; node-local scratch ($SLURM_TMPDIR, $TMPDIR) by default.")
@_option("--scheduler/--no-scheduler", envvar="SCHEDULER", default=True,
         help="--no-scheduler: start no scheduler; every rank adds a worker to the cluster "
              "whose --scheduler-file exists.")
@_option("--exclusive-workers/--inclusive-workers", envvar="EXCLUSIVE_WORKERS", default=True,
         help="--inclusive-workers: the scheduler rank runs a worker too.")
@_option("--worker-class", envvar="WORKER_CLASS", default="distributed.Worker",
         help="Worker class to use, like 'distributed.Nanny'.")
@_option("--worker-options", envvar="WORKER_OPTIONS", default=None, callback=_json_object,
         help="JSON object of keyword arguments for the worker class.")
@_option("--dashboard/--no-dashboard", envvar="DASHBOARD", default=True, help="Serve the scheduler's dashboard.")
@_option("--dashboard-address", envvar="DASHBOARD_ADDRESS", default=None,
         help="Address of the dashboard, like ':8787'.")
@_option("--name", envvar="WORKER_NAME", default=None,
         help="Prefix of the workers' names, each named NAME-RANK; by default the rank alone.")
@_option("--launcher", envvar="LAUNCHER", default=None,
         help="Use this launcher instead of detecting one (slurm, openmpi, local, ...).")
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
@click.option("--scheduler-file", required=True, envvar="DASK_RUNNERS_SCHEDULER_FILE", show_envvar=True,
              type=click.Path(dir_okay=False), help="The cluster's scheduler file, as given to `serve`.")
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

    try:
        stop_cluster(scheduler_file, timeout)
    except (ClusterNotFoundError, TimeoutError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"stopped the cluster of {scheduler_file}")
