"""Timestamps a workload prints for bench/run.py, one ``BENCH key=value ...`` line each.

Imported first by every workload script, before anything heavy, so the
``rank_start`` stamp is close to when the process began.
"""

import os
import sys
import time

_STARTED = time.time()


def _rank() -> str:
    for name in ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if name in os.environ:
            return os.environ[name]
    return "?"


def emit(**fields) -> None:
    """Print one machine-readable line on stdout, flushed at once."""
    text = " ".join(f"{key}={value}" for key, value in fields.items())
    # One write call per line: print() writes the newline separately, and
    # with unbuffered output mpirun may then interleave another rank's line.
    sys.stdout.write(f"BENCH {text}\n")
    sys.stdout.flush()


def rank_start() -> None:
    """Say which process this is (run.py uses the pid to find stragglers)."""
    emit(
        rank_start=_STARTED,
        rank=_rank(),
        pid=os.getpid(),
        job_id=os.environ.get("SLURM_JOB_ID", "-"),
    )


def ready() -> None:
    """The floors: this rank has done what every implementation must do first."""
    emit(ready=time.time())


def leave() -> None:
    """End the process now, as a runner's service ranks do: no interpreter teardown.

    With ``BENCH_CLIENT_EXITS=1`` rank 1 instead returns, and its process
    ends as a script's does, its last garbage collections skipped as a
    runner's client rank skips them (``gc.freeze()`` at exit): the client
    code's process belongs to the script, and no runner may cut its exit short.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if os.environ.get("BENCH_CLIENT_EXITS") and _rank() == "1":
        import atexit
        import gc

        atexit.register(gc.freeze)
        return
    os._exit(0)


def first_result() -> None:
    emit(first_result=time.time())


def body_exit() -> None:
    emit(body_exit=time.time())


rank_start()
