"""The ``dask-runner`` command (also ``python -m dask_runners``)."""

from __future__ import annotations

import sys

import click


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
    from .run import run as run_client_code

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

    from .job import detect

    job = detect(launcher=launcher)
    click.echo(f"{socket.gethostname()} pid={os.getpid()} {job.describe()}")
