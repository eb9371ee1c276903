"""The jobs the fault-injection tests run; ``{runner}`` is SLURMRunner or MPIRunner."""

HEADER = """\
import asyncio, os, signal, sys, time
from dask.distributed import Client
from dask_runners import {runner}, SchedulerLostError

def inc(x):
    return x + 1
"""

CLIENT_KILLED = HEADER + """
with {runner}() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("KILLING the client rank", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
"""

SCHEDULER_KILLED = HEADER + """
with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        pid = client.run_on_scheduler(os.getpid)
        start = time.monotonic()
        try:
            os.kill(pid, signal.SIGKILL)
            client.submit(time.sleep, 30).result()
        except SchedulerLostError:
            print(f"LOST after {{time.monotonic() - start:.2f}} s", flush=True)
            raise
"""

WORKER_KILLED = HEADER + """
with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        print("KILLED worker", victim, flush=True)
        results = client.gather(client.map(inc, range(200)))
        assert results == list(range(1, 201)), results
        print("RESULTS OK", flush=True)
        client.wait_for_workers(runner.n_workers, timeout=30)
        print("WORKERS BACK", len(client.scheduler_info(n_workers=-1)["workers"]), flush=True)
"""

SCHEDULER_STUCK = HEADER + """
class Stuck({runner}):
    async def before_scheduler_start(self):
        await asyncio.sleep(3600)

print("STARTING", os.environ.get("SLURM_JOB_ID"), flush=True)
with Stuck() as runner:
    with Client(runner) as client:
        print("SHOULD NOT GET HERE", flush=True)
"""

WAITS_FOR_SIGNAL = HEADER + """
with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        try:  # READY inside: the signal it brings may arrive before the next statement
            print("READY", os.environ.get("SLURM_JOB_ID"), flush=True)
            client.submit(time.sleep, 60).result()
        finally:
            print("BODY LEFT", flush=True)
"""

PREEMPTION_CALLBACK = HEADER + """
seen = []
with {runner}(on_preemption=lambda runner: seen.append("preempted")) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("READY", flush=True)
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        print("CHECKPOINTED", seen, flush=True)
        assert client.submit(inc, 1).result() == 2
"""

WORKER_FAILS_TO_START = HEADER + """
class Broken({runner}):
    async def before_worker_start(self):
        if self.rank == 3:
            raise RuntimeError("rank 3 cannot start its worker")

with Broken() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
"""

STANDARD = HEADER + """
with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(inc, 10).result() == 11
        print("RESULT OK", flush=True)
"""


def write(directory, template, runner, options="", name="job.py"):
    path = directory / name
    path.write_text(template.format(runner=runner, options=options))
    return path
