"""Real network faults on the emulated 4-node Slurm: the failure table's network rows.

Every test submits an 8-rank batch job over the 4 nodes (``sbatch -N4 -n8 --ntasks-per-node=2
-m cyclic``, so rank r runs on node r%4+1: the scheduler (rank 0) on node1, which is also the batch
host, the client (rank 1) on node2, worker ranks 2..7 on every node), waits until the client code is
a tenth of the way through a 900-task map, then cuts, unplugs or kills one node with
:class:`~tests.multinode.netfault.NodeFault` and measures what follows.

The lease is 6 s here (``runners.timeouts.lease``), and distributed's own TCP timeout is raised to
600 s, as users on slow networks set it: whatever is detected within seconds is detected by the
runner, not by distributed. Each rank writes its full log to the job directory
(``runners.logging.directory``), because a cut batch host cannot forward any output.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import time
from pathlib import Path

import pytest

from ..launch import PYTHON, write_script
from .netfault import SLURM_ENV, NodeFault, network_is_whole, processes_of_job, slurm_state
from .test_multinode import NODES, multinode_is_up  # noqa: F401  (multinode: the autouse skip/fail)
from .test_multinode import multinode  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(240)]

LEASE = 6.0
TASKS = 900
SCHEDULER_NODE, CLIENT_NODE, WORKER_NODE = "node1", "node2", "node3"

MAP = """\
import json, sys, time
from pathlib import Path
from dask.distributed import Client, as_completed
from dask_runners import SLURMRunner, SchedulerLostError

out = Path(sys.argv[1])

def slow_inc(x):
    time.sleep(0.04)
    return x + 1

def record(**fields):
    (out / "outcome.json").write_text(json.dumps({"at": time.time(), **fields}))

with SLURMRunner(scheduler_file=str(out / "scheduler.json")) as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        try:
            futures = client.map(slow_inc, range(%(tasks)d))
            for done, _ in enumerate(as_completed(futures), 1):
                if done == %(tasks)d // 10:
                    (out / "fault-now").write_text(str(time.time()))
            total = sum(client.gather(futures))
            record(total=total, right=total == sum(range(1, %(tasks)d + 1)),
                   workers=len(client.scheduler_info()["workers"]))
        except SchedulerLostError as e:
            record(error="SchedulerLostError", message=str(e))
            raise
""" % {"tasks": TASKS}


def submit(job_dir: Path, lease: float = LEASE) -> str:
    script = write_script(job_dir, MAP)
    env = {
        **SLURM_ENV,
        "DASK_RUNNERS__TIMEOUTS__LEASE": f"{lease}s",
        "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "600s",
        "DASK_RUNNERS__LOGGING__DIRECTORY": str(job_dir / "logs"),
    }
    out = subprocess.run(
        ["sbatch", "--parsable", "-N4", "-n8", "--ntasks-per-node=2", "-m", "cyclic", "-t", "5",
         "-o", str(job_dir / "job.out"), "--wrap", f"srun {PYTHON} {script} {job_dir}"],
        env=env, capture_output=True, text=True, timeout=30, check=True,
    )
    return out.stdout.strip().split(";")[0]


def job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=SLURM_ENV,
                         capture_output=True, text=True, timeout=20)
    return out.stdout.strip() or "GONE"


def wait_until(condition, timeout: float, interval: float = 0.5):
    """``condition()``'s first true value within ``timeout`` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def wait_for(what, condition, timeout: float, interval: float = 0.1):
    value = wait_until(condition, timeout, interval)
    if not value:
        raise AssertionError(f"{what}: not within {timeout:.0f} s")
    return value


def logs(job_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((job_dir / "logs").glob("*")))


def logged_at(job_dir: Path, text: str) -> float:
    """When the first log line containing ``text`` was written (time.time())."""
    for line in sorted(logs(job_dir).splitlines()):
        if text in line:
            return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise AssertionError(f"no log line says {text!r}")


def all_idle() -> bool:
    return all(slurm_state(node) == "idle" for node in NODES)


def survivors(job_id: str, cut: str) -> list[str]:
    return [f"{node}:{p.pid}" for node in NODES if node != cut for p in processes_of_job(node, job_id)]


class Run:
    """One submitted job and one fault on it."""

    def __init__(self, job_dir: Path, node: str, lease: float = LEASE):
        self.job_dir, self.node = job_dir, node
        wait_for("every node idle", all_idle, 120, 0.5)  # an earlier test's cut node may be completing (Slurm took over 60 s once under load)
        self.job_id = submit(job_dir, lease)
        wait_for("the map a tenth done", (job_dir / "fault-now").exists, 120)
        self.fault = NodeFault(node)

    def outcome(self) -> dict:
        path = self.job_dir / "outcome.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def others_gone_after(self, timeout: float) -> float:
        """Seconds from the fault until no rank is left on the other nodes and the job is not running."""
        wait_for("every rank on the other nodes gone", lambda: not survivors(self.job_id, self.node), timeout)
        wait_for("the job no longer running", lambda: job_state(self.job_id) != "RUNNING", timeout)
        return time.monotonic() - self.fault.at

    def finish(self) -> None:
        """Heal, and leave no job, process, file or network change behind.

        A job whose end came while a node was cut stays COMPLETING until Slurm has pinged the
        node again and resent it the job's TERMINATE_JOB, each once a minute or so (slurmctld
        logged "completion process took 145 seconds" in one CI run, 2026-12-05). Once every
        process of the job is gone, marking the node DOWN and resuming it ends both waits at once.
        """
        self.fault.reconnect()
        if not wait_until(self._job_gone, 5) and job_state(self.job_id) == "COMPLETING":
            wait_for("every process of the job gone", lambda: not survivors(self.job_id, ""), 30, 0.5)
            subprocess.run(["scontrol", "update", f"nodename={self.node}", "state=down", "reason=healed by the test"],
                           env=SLURM_ENV, capture_output=True, timeout=20, check=True)
        self.fault.heal()  # resumes a node marked down, and waits until Slurm counts it as up
        wait_for("the job gone", self._job_gone, 60, 0.5)
        assert network_is_whole(NODES) == []
        assert survivors(self.job_id, "") == []
        assert not (self.job_dir / "scheduler.json").exists()

    def _job_gone(self) -> bool:
        return job_state(self.job_id) == "GONE"


@pytest.fixture
def run(job_dir):
    runs = []

    def start(node, lease=LEASE):
        runs.append(Run(job_dir, node, lease))
        return runs[-1]

    yield start
    for r in runs:
        r.finish()


@pytest.mark.parametrize("fault", ["silence", "unplug"])
def test_worker_node_cut_mid_map_the_map_finishes_on_the_others(run, fault):
    r = run(WORKER_NODE)
    getattr(r.fault, fault)()
    outcome = wait_for("the client's result", r.outcome, 60)
    assert outcome["right"] and outcome["workers"] == 4, outcome
    # Detected by the lease, not by distributed's TCP timeout (600 s here): a lease after the
    # last beat, which came up to a quarter lease before the cut: 5.1-5.2 s measured (2026-12-02).
    detected = logged_at(r.job_dir, f"sent no heartbeat for {LEASE:.0f} s") - r.fault.wall
    assert LEASE * 3 / 4 - 0.5 <= detected <= LEASE + 1.5, detected
    # The rest of the map (about 5 s of work on 4 workers) follows: 8.7 s after the cut, measured.
    assert outcome["at"] - r.fault.wall <= LEASE + 7, outcome["at"] - r.fault.wall
    text = logs(r.job_dir)
    assert "carrying on with the remaining workers" in text
    # The ranks that can be reached leave; the job is cancelled so that its other nodes are free.
    after = r.others_gone_after(30)
    assert "could not be reached; the cluster stopped with exit code 0" in logs(r.job_dir)
    assert all(slurm_state(n) in ("idle", "mix") for n in NODES if n != r.node), after
    print(f"MEASURED worker node {fault}: detected {detected:.1f} s, result "
          f"{outcome['at'] - r.fault.wall:.1f} s, others gone {after:.1f} s")


def test_worker_node_tasks_killed_mid_map_the_map_finishes_at_once(run):
    r = run(WORKER_NODE)
    assert r.fault.kill_tasks(r.job_id) == 2
    outcome = wait_for("the client's result", r.outcome, 60)
    assert outcome["right"] and outcome["workers"] == 4, outcome
    # Closed connections: no lease to wait for (0.1-0.3 s measured).
    detected = logged_at(r.job_dir, "vanished without leaving the cluster") - r.fault.wall
    assert detected <= 1.5, detected
    assert outcome["at"] - r.fault.wall <= 11, outcome["at"] - r.fault.wall
    print(f"MEASURED worker node killed: detected {detected:.1f} s, result {outcome['at'] - r.fault.wall:.1f} s")


def test_client_node_cut_ends_every_other_rank_within_the_lease(run):
    r = run(CLIENT_NODE)
    r.fault.silence()
    after = r.others_gone_after(LEASE + 20)
    assert after <= LEASE + 8, after
    text = logs(r.job_dir)
    assert f"the client rank (rank 1) sent no heartbeat for {LEASE:.0f} s" in text
    assert "could not be reached; the cluster stopped with exit code 1" in text
    detected = logged_at(r.job_dir, "the client rank (rank 1) sent no heartbeat") - r.fault.wall
    print(f"MEASURED client node cut: detected {detected:.1f} s, others gone {after:.1f} s")


def test_scheduler_node_cut_raises_scheduler_lost_in_the_client_code(run):
    r = run(SCHEDULER_NODE)
    r.fault.silence()
    outcome = wait_for("the client's SchedulerLostError", r.outcome, LEASE + 20)
    assert outcome["error"] == "SchedulerLostError" and "no word from the scheduler" in outcome["message"]
    after = r.others_gone_after(LEASE + 20)
    assert after <= LEASE + 10, after
    assert "client rank: no word from the scheduler" in logs(r.job_dir)
    print(f"MEASURED scheduler node cut: SchedulerLostError {outcome['at'] - r.fault.wall:.1f} s, "
          f"others gone {after:.1f} s")


def test_cut_healed_within_the_lease_loses_nothing(run, job_dir):
    r = run(WORKER_NODE)
    r.fault.silence()
    time.sleep(LEASE / 2)
    r.fault.heal()
    outcome = wait_for("the client's result", r.outcome, 60)
    assert outcome["right"] and outcome["workers"] == 6, outcome
    wait_for("the job done", lambda: job_state(r.job_id) == "GONE", 30)
    text = logs(job_dir)
    assert "could not be reached" not in text and "sent no heartbeat" not in text
    output = (job_dir / "job.out").read_text()
    assert "Traceback" not in output and " ERROR " not in output and "srun: error" not in output, output


@pytest.mark.parametrize("rank, role", [(2, "worker"), (1, "client")])
def test_a_stopped_rank_counts_as_gone_after_the_lease(run, rank, role):
    """SIGSTOP keeps the rank's connections open: only the lease can tell."""
    node = NODES[rank % 4]
    r = run(node)
    r.fault.stop_task(r.job_id, rank)
    after = r.others_gone_after(LEASE + 20)
    detected = logged_at(r.job_dir, f"sent no heartbeat for {LEASE:.0f} s") - r.fault.wall
    assert LEASE * 3 / 4 - 0.5 <= detected <= LEASE + 1.5, detected
    text = logs(r.job_dir)
    if role == "worker":
        assert r.outcome()["right"], r.outcome()
        assert "worker rank 2 sent no heartbeat" in text
        assert "rank(s) [2] could not be reached; the cluster stopped with exit code 0" in text
    else:
        assert "the client rank (rank 1) sent no heartbeat" in text
        assert "rank(s) [1] could not be reached; the cluster stopped with exit code 1" in text
    # The cancel ends the stopped task too (Slurm sends SIGCONT with SIGTERM, then SIGKILL).
    wait_for("the stopped task gone", lambda: not processes_of_job(node, r.job_id), 15)
    print(f"MEASURED stopped {role}: detected {detected:.1f} s, others gone {after:.1f} s")
