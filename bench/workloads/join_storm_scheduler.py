"""The scheduler process of a join storm (``bench/join_storm.py`` starts it).

It starts one scheduler of the kind asked for and says ``ready`` with its
address. At the driver's ``go`` it notes its CPU time and open files, says
``started``, and watches (under cProfile with ``--profile``) until every
worker runs, or the deadline. It counts its open files again once the
workers' heartbeats have settled, and says ``all_running`` with what the
storm cost it. At ``close`` it closes as its kind closes a cluster, and
says ``closed``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import sys
import time

from join_storm_process import (
    cpu_seconds,
    driver_words,
    load_credentials,
    open_descriptors,
    peak_memory_mb,
    quiet_logging,
    raise_open_file_limit,
    send,
    wait_for_word,
)

#: How often the scheduler process looks at its workers during a storm, in seconds.
POLL = 0.01


class HeartbeatCounter:
    """Counts the workers' heartbeats the scheduler answers, and the CPU its handler spends on them.

    The handler's own time only: reading the message and writing the answer
    are not in it. Workers that have joined beat while the others join, so a
    longer storm holds more heartbeats.
    """

    def __init__(self, scheduler):
        self.count = 0
        self.cpu_s = 0.0
        handler = scheduler.handlers["heartbeat_worker"]

        @functools.wraps(handler)  # distributed reads the handler's signature
        def counted(*args, **kwargs):
            start = time.process_time()
            try:
                return handler(*args, **kwargs)
            finally:
                self.count += 1
                self.cpu_s += time.process_time() - start

        scheduler.handlers["heartbeat_worker"] = counted


async def watch_storm(started, n_workers: int, deadline: float) -> dict:
    """Watch the scheduler from now until ``n_workers`` run, or ``deadline`` seconds; return the costs."""
    scheduler = started.scheduler
    heartbeats = HeartbeatCounter(scheduler)
    fds_before, sockets_before = open_descriptors()
    cpu_start, start = cpu_seconds(), time.perf_counter()
    send("started")
    registered_s = cpu_registered_s = None
    while True:
        elapsed = time.perf_counter() - start
        if registered_s is None and len(scheduler.workers) >= n_workers:
            registered_s, cpu_registered_s = elapsed, cpu_seconds() - cpu_start
        if len(scheduler.running) >= n_workers or elapsed > deadline:
            break
        await asyncio.sleep(POLL)
    cpu_s = cpu_seconds() - cpu_start
    fds_after, sockets_after = open_descriptors()
    return {
        "memory_mb": peak_memory_mb(),
        "heartbeats": heartbeats.count,
        "heartbeat_cpu_s": heartbeats.cpu_s,
        "running_s": elapsed,
        "cpu_s": cpu_s,
        "registered_s": registered_s if registered_s is not None else elapsed,
        "cpu_registered_s": cpu_registered_s if cpu_registered_s is not None else cpu_s,
        "workers": len(scheduler.workers),
        "running": len(scheduler.running),
        "fds_before": fds_before,
        "fds_after": fds_after,
        "sockets_before": sockets_before,
        "sockets_after": sockets_after,
        "stream_comms": len(scheduler.stream_comms),
        "control_members": len(started.control.members) if started.control is not None else 0,
    }


async def settled_descriptors(n_workers: int) -> tuple[int, int]:
    """Open files and sockets once the workers' first heartbeats have opened their connections.

    A worker sends its heartbeats on a connection of its own, opened for
    the first one, about a second after it starts; until then the scheduler
    holds fewer connections than it will. Waits until the count of sockets
    has not changed for a second, or at most one heartbeat interval of a
    cluster this size and 5 s more.
    """
    from distributed.scheduler import heartbeat_interval

    deadline = time.perf_counter() + heartbeat_interval(n_workers) + 5
    counts = open_descriptors()
    while time.perf_counter() < deadline:
        await asyncio.sleep(1)
        latest = open_descriptors()
        if latest[1] == counts[1]:
            break
        counts = latest
    return latest


async def main(args) -> int:
    import dask_runners
    from dask_runners.config import Timeouts
    from join_storm import KIND_BY_NAME, start_scheduler

    raise_open_file_limit()
    quiet_logging()
    kind = KIND_BY_NAME[args.kind]
    started = await start_scheduler(kind, load_credentials(args.credentials), args.workers,
                                    Timeouts(shutdown=args.shutdown))
    words = await driver_words()
    send("ready", address=started.scheduler.address, package=dask_runners.__file__)
    await wait_for_word(words, "go")
    # Profiled in CPU time, not wall time: a wait in epoll costs nothing.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    if profiler is not None:
        profiler.enable()  # everything the event loop runs, until every worker runs
    costs = await watch_storm(started, args.workers, args.deadline)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    costs["fds_settled"], costs["sockets_settled"] = await settled_descriptors(args.workers)
    send("all_running", **costs)
    await wait_for_word(words, "close")
    closing = time.perf_counter()
    await started.close()
    send("closed", seconds=time.perf_counter() - closing)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--credentials")
    parser.add_argument("--deadline", type=float, required=True)
    parser.add_argument("--shutdown", type=float, required=True)
    parser.add_argument("--profile", help="write a cProfile of the storm (CPU time) to this file")
    sys.exit(asyncio.run(main(parser.parse_args())))
