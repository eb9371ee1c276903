"""The jobs the fault-injection tests run; ``{runner}`` is SLURMRunner or MPIRunner."""

HEADER = """\
import asyncio, os, signal, sys, time
from dask.distributed import Client
from dask_runners import {runner}, SchedulerLostError

print("STARTED", flush=True)  # each rank, once its interpreter runs: a launch's clock starts here


def inc(x):
    return x + 1

def slow_inc(x):
    time.sleep(0.1)
    return x + 1

# stdout and body.txt: a launcher may drop a rank's output when it ends the job (MPICH's
# Hydra does), but not a line already in a file
def note(text):
    print(text, flush=True)
    with open("body.txt", "a") as f:
        f.write(text + "\\n")
"""

CLIENT_KILLED = HEADER + """
with {runner}() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        note(f"KILLING the client rank at {{time.time():.3f}}")
        os.kill(os.getpid(), signal.SIGKILL)
"""

SCHEDULER_KILLED = HEADER + """
with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        pid = client.run_on_scheduler(os.getpid)
        future = client.submit(time.sleep, 30)
        note(f"KILLING the scheduler rank at {{time.time():.3f}}")
        os.kill(pid, signal.SIGKILL)
        future.result()  # blocked here when the scheduler dies
        note("SHOULD NOT GET HERE")
"""

#: Every task of the step is killed at once (SIGKILL), as at the end of KillWait: nobody can clean up.
STEP_KILLED = HEADER + """
import subprocess
with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        note(f"KILLING the step at {{time.time():.3f}}")
        subprocess.run(["scancel", "--signal=KILL", os.environ["SLURM_JOB_ID"] + "." + os.environ["SLURM_STEP_ID"]])
        time.sleep(30)
        note("SHOULD NOT GET HERE")
"""

#: One worker is killed while every worker is busy with a map of 0.1 s tasks; the map's
#: result is checked in full. ``{options}`` decides Nanny or not.
WORKER_KILLED = HEADER + """
with {runner}({options}) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        futures = client.map(slow_inc, range(60), pure=False)
        deadline = time.monotonic() + 30
        while sum(f.done() for f in futures) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        busy = {{address for address, keys in client.processing().items() if keys}}
        name, pid = sorted(client.run(lambda dask_worker: (dask_worker.name, os.getpid()), workers=sorted(busy)).values())[0]
        os.kill(pid, signal.SIGKILL)
        note(f"KILLED worker {{name}} at {{time.time():.3f}} with {{sum(not f.done() for f in futures)}} tasks left")
        results = client.gather(futures)
        assert results == list(range(1, 61)), results
        note(f"RESULTS OK at {{time.time():.3f}}")
        if "Nanny" in str(runner.worker_class):  # the nanny starts a new worker process
            client.wait_for_workers(runner.n_workers, timeout=30)
        note(f"WORKERS NOW {{len(client.scheduler_info(n_workers=-1)['workers'])}}")
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
