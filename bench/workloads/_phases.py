"""Run a workload with each rank's milestones stamped: wall time since launch and CPU time.

bench/phases.py runs ``python _phases.py WORKLOAD.py`` under the launcher. This
wraps, by their public names, the calls every rank passes through (the
import of distributed, MPI's initialization, the scheduler's contact, the
worker's construction, start and close) and writes each rank's stamps as
one JSON line to ``$PHASES_OUT/rank-<rank>.json`` as the process ends (at
``os._exit`` too, which service ranks leave by: for ``MPIRunner`` that is
after ``MPI_Finalize``, while a rank that ends as Python does stamps its exit
in an ``atexit`` handler, before mpi4py finalizes). The cost of a stamp is a
``getrusage`` call; nothing else in the workload changes.
"""

import functools
import inspect
import json
import os
import resource
import runpy
import sys
import time

import _bench  # first, as in every workload: stamps the process start

LAUNCHED = float(os.environ["PHASES_LAUNCHED"])
OUT = os.environ["PHASES_OUT"]
RANK = _bench._rank()

stamps: dict[str, tuple[float, float]] = {}


def stamp(name: str) -> None:
    """Wall seconds since launch and CPU seconds of this process, the first time ``name`` is reached."""
    if name not in stamps:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        stamps[name] = (time.time() - LAUNCHED, usage.ru_utime + usage.ru_stime)


def write(how: str) -> None:
    stamp(how)
    with open(os.path.join(OUT, f"rank-{RANK}.json"), "w") as file:
        json.dump({"rank": int(RANK), "stamps": stamps}, file)


def at(owner, name: str, label: str, on_entry: bool = False) -> None:
    """Stamp ``label`` when ``owner.name`` (a function or coroutine function) returns, or, with
    ``on_entry``, when it is entered; a call that raises stamps nothing after it."""
    original = getattr(owner, name)
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapped(*args, **kwargs):
            if on_entry:
                stamp(label)
            result = await original(*args, **kwargs)
            if not on_entry:
                stamp(label)
            return result
    else:

        @functools.wraps(original)
        def wrapped(*args, **kwargs):
            if on_entry:
                stamp(label)
            result = original(*args, **kwargs)
            if not on_entry:
                stamp(label)
            return result

    setattr(owner, name, wrapped)


def instrument(family: str) -> None:
    from distributed import Scheduler, Worker

    stamp("distributed imported")
    at(Scheduler, "start_unsafe", "scheduler listening")
    at(Worker, "__init__", "worker built")
    at(Worker, "start_unsafe", "worker started")
    at(Worker, "close", "worker closing", on_entry=True)
    if family == "ours" and os.environ["PHASES_RUNNER"] == "MPIRunner":
        from dask_runners import mpi_runner
        from dask_runners.transport import broadcast

        stamp("runner imported")
        # MPI_Init is done when the host exchange begins; the runner is made after it.
        at(mpi_runner.MPIRunner, "_exchange_hosts", "MPI ready", on_entry=True)
        at(mpi_runner.MPIRunner, "__init__", "runner made")
        at(broadcast.BroadcastTransport, "discover", "contact")
        at(broadcast.BroadcastTransport, "publish", "contact")
    elif family == "ours":
        from dask_runners import slurm
        from dask_runners.transport import scheduler_file

        stamp("runner imported")
        at(slurm.SLURMRunner, "__init__", "runner made")
        at(scheduler_file.SchedulerFileTransport, "discover", "contact")
        at(scheduler_file.SchedulerFileTransport, "publish", "contact")
    elif os.environ.get("BENCH_BARE_MPI") == "1":
        from mpi4py import MPI  # noqa: F401  (MPI_Init, where the workload would do it)

        stamp("MPI ready")


def main() -> None:
    stamp("started")
    real_exit = os._exit

    def exit_stamped(code):
        write("exit")
        real_exit(code)

    os._exit = exit_stamped
    import atexit

    atexit.register(write, "exit")
    instrument(os.environ["PHASES_FAMILY"])
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name="__main__")


main()
