"""SLURMRunner on a multi-node Slurm emulated on this machine (ci/start-multinode-slurm.sh).

Four nodes, node1..node4 at 10.77.0.11-14, each a network namespace with its own hostname; all
share the filesystem, so the job directory (and its scheduler file) is shared as on a cluster.
Every ``srun`` here runs with ``SLURM_CONF`` pointing at that instance.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path

import pytest

from ..launch import PYTHON, launch, need, slurm_is_up, srun_task_ends, write_script

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(180)]

MULTINODE_CONF = Path("/etc/slurm-multinode/slurm.conf")
NODES = ["node1", "node2", "node3", "node4"]
NODE_IP = {f"node{k}": f"10.77.0.{10 + k}" for k in range(1, 5)}
ENV = {"SLURM_CONF": str(MULTINODE_CONF)}


@functools.lru_cache(maxsize=None)  # asked once per session: a dead controller takes seconds to time out
def multinode_is_up() -> bool:
    if not MULTINODE_CONF.exists():
        return False
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"],
            capture_output=True, text=True, timeout=10, env={**os.environ, **ENV},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    usable = ("idle", "mix", "alloc", "plnd", "comp")
    up = {n for n, state in (line.split() for line in out.stdout.splitlines() if line.strip())
          if state.strip("*~#-+$@^").startswith(usable)}
    return out.returncode == 0 and up == set(NODES)


@pytest.fixture(autouse=True)
def multinode():
    need(multinode_is_up(), "the emulated multi-node Slurm (ci/start-multinode-slurm.sh)")


WHERE = """\
import json, os, signal, socket, sys, time
from dask.distributed import Client
from dask_runners import SLURMRunner, current_job

def where():
    host = socket.gethostname()
    return {
        "host": host,
        "ip": socket.gethostbyname(host),
        "nodeid": os.environ["SLURM_NODEID"],
        "procid": int(os.environ["SLURM_PROCID"]),
        "nodelist": os.environ["SLURM_JOB_NODELIST"],
        "tasks_per_node": os.environ["SLURM_TASKS_PER_NODE"],
        "job": dict(
            (field, getattr(current_job(), field))
            for field in ("launcher", "job_id", "step_id", "rank", "world_size", "local_rank",
                          "local_world_size", "node_rank", "num_nodes", "hosts", "host")
        ),
    }
"""

REPORT = WHERE + """
with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        assert client.submit(lambda x: x + 1, 10).result() == 11
        info = client.scheduler_info(n_workers=-1)
        report = {
            "scheduler_address": client.scheduler.address,
            "scheduler": client.run_on_scheduler(where),
            "scheduler_host": client.run_on_scheduler(socket.gethostname),
            "client": where(),
            "workers": client.run(where),
            "registered": {a: {"name": w["name"], "host": w["host"]} for a, w in info["workers"].items()},
            "n_workers": runner.n_workers,
        }
        print("REPORT " + json.dumps(report), flush=True)
print("AFTER rank", runner.rank, flush=True)
"""

CLIENT_KILLED = WHERE + """
with SLURMRunner() as runner:
    with Client(runner) as client:
        client.wait_for_workers(runner.n_workers)
        print("KILLING the client rank on", where()["host"], flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
"""

DISTRIBUTIONS = {
    "block": ["-N4", "-n8"],                                    # Slurm packs node1 first: 4,2,1,1
    "block-2-per-node": ["-N4", "-n8", "--ntasks-per-node=2"],  # ranks 0,1 on node1; 2,3 on node2 ...
    "cyclic-2-per-node": ["-N4", "-n8", "--ntasks-per-node=2", "-m", "cyclic"],  # rank r on node r%4+1
}


def tasks_per_node(text: str) -> list[int]:
    """Slurm's SLURM_TASKS_PER_NODE, such as ``4,2,1(x2)``, one count per node."""
    counts = []
    for item in text.split(","):
        count, _, repeat = item.partition("(x")
        counts += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
    return counts


def placement(distribution: str, counts: list[int]) -> list[str]:
    """The node of each rank, as Slurm places tasks by block or cyclic distribution."""
    if distribution.startswith("block"):
        return [NODES[i] for i, count in enumerate(counts) for _ in range(count)]
    left, nodes = list(counts), []
    while any(left):
        for i in range(len(left)):
            if left[i]:
                left[i] -= 1
                nodes.append(NODES[i])
    return nodes


def host_of(address: str) -> str:
    return address.split("://", 1)[1].rsplit(":", 1)[0]


def report_of(result) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert len(lines) == 1, result.report()
    return json.loads(lines[0][len("REPORT "):])


def srun(options, script, cwd, env=ENV, **kwargs):
    return launch(["srun", *options, PYTHON, script], cwd, env=env, **kwargs)


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_cluster_spans_the_nodes_slurm_chose(job_dir, distribution):
    script = write_script(job_dir, REPORT)
    result = srun(DISTRIBUTIONS[distribution], script, job_dir)
    result.assert_clean_success()
    assert result.stdout.count("AFTER rank") == 1, result.report()
    assert list(job_dir.glob("scheduler*.json")) == []
    report = report_of(result)
    counts = tasks_per_node(report["client"]["tasks_per_node"])
    assert len(counts) == 4 and sum(counts) == 8, report
    if "2-per-node" in distribution:
        assert counts == [2, 2, 2, 2]
    expected = placement(distribution, counts).__getitem__

    # Scheduler (rank 0) and client (rank 1) sit where Slurm put those ranks.
    assert report["scheduler"]["procid"] == 0 and report["scheduler"]["host"] == expected(0), report
    assert report["scheduler_host"] == expected(0)
    assert host_of(report["scheduler_address"]) == NODE_IP[expected(0)], report
    assert report["client"]["procid"] == 1 and report["client"]["host"] == expected(1), report
    for side in (report["scheduler"], report["client"]):
        assert side["ip"] == NODE_IP[side["host"]]
        assert side["nodeid"] == str(NODES.index(side["host"]))
        assert side["nodelist"] == "node[1-4]"

    # Six workers, ranks 2..7, each on the node Slurm placed it, registered with that node's IP.
    assert report["n_workers"] == 6
    assert sorted(report["workers"]) == sorted(report["registered"]), report
    ranks = sorted(w["procid"] for w in report["workers"].values())
    assert ranks == [2, 3, 4, 5, 6, 7], report
    for address, seen in report["workers"].items():
        node = expected(seen["procid"])
        assert seen["host"] == node, (address, seen)
        assert seen["nodeid"] == str(NODES.index(node)), (address, seen)
        assert host_of(address) == NODE_IP[node] == seen["ip"], (address, seen)
        assert report["registered"][address]["host"] == NODE_IP[node]
        assert int(report["registered"][address]["name"]) == seen["procid"]
    hosts = {w["host"] for w in report["workers"].values()}
    assert hosts == {expected(rank) for rank in range(2, 8)}

    # Every rank's JobContext says what Slurm says.
    for seen in [report["scheduler"], report["client"], *report["workers"].values()]:
        job = seen["job"]
        assert job["launcher"] == "slurm" and job["rank"] == seen["procid"] and job["world_size"] == 8, seen
        assert job["node_rank"] == int(seen["nodeid"]) and job["num_nodes"] == 4, seen
        assert job["hosts"] == NODES and job["host"] == seen["host"], seen
        assert job["local_world_size"] == counts[int(seen["nodeid"])], seen
        assert 0 <= job["local_rank"] < job["local_world_size"], seen
    if distribution == "block-2-per-node":
        # the scheduler and the client share node1; the workers fill node2..node4
        assert report["scheduler"]["host"] == report["client"]["host"] == "node1"
        assert hosts == {"node2", "node3", "node4"}
    if distribution == "cyclic-2-per-node":
        # scheduler on node1, client on node2, two workers on node3 and node4, one on node1 and node2
        assert (report["scheduler"]["host"], report["client"]["host"]) == ("node1", "node2")
        assert hosts == set(NODES)


def test_same_script_on_one_node_gives_the_same_cluster(job_dir):
    """The very script of the multi-node test, under the single-node Slurm (no SLURM_CONF)."""
    need(slurm_is_up(), "a running single-node Slurm (ci/start-slurm.sh)")
    script = write_script(job_dir, REPORT)
    multi = srun(DISTRIBUTIONS["cyclic-2-per-node"], script, job_dir)
    multi.assert_clean_success()
    single = srun(["-n8"], script, job_dir, env={"SLURM_CONF": None})
    single.assert_clean_success()
    assert list(job_dir.glob("scheduler*.json")) == []
    m, s = report_of(multi), report_of(single)
    for report in (m, s):
        assert report["n_workers"] == 6
        assert sorted(w["procid"] for w in report["workers"].values()) == [2, 3, 4, 5, 6, 7]
        assert sorted(report["workers"]) == sorted(report["registered"])
    # one node: every rank on the same host, and on the same address as the scheduler
    one_host = {s["scheduler"]["host"], s["client"]["host"], *(w["host"] for w in s["workers"].values())}
    assert one_host == {os.uname().nodename}, s
    assert {host_of(a) for a in s["workers"]} == {host_of(s["scheduler_address"])}, s
    # four nodes: four hosts, four addresses
    assert {host_of(a) for a in m["workers"]} == set(NODE_IP.values()), m
    assert m["scheduler_address"].split("://")[0] == s["scheduler_address"].split("://")[0]  # same protocol


def test_killed_client_rank_on_another_node_ends_every_rank(job_dir):
    script = write_script(job_dir, CLIENT_KILLED)
    # cyclic: the client (rank 1) is on node2, the scheduler on node1, workers everywhere
    result = srun(DISTRIBUTIONS["cyclic-2-per-node"], script, job_dir, when="KILLING", send=[lambda line: None], timeout=60)
    assert "KILLING the client rank on node2" in result.stdout, result.report()
    assert result.returncode != 0, result.report()
    assert result.after_signal is not None and result.after_signal < 10, result.report()
    assert result.leftovers == [], result.report()
    assert list(job_dir.glob("scheduler*.json")) == [], result.report()
    assert result.tracebacks == 0, result.report()
    # srun reports each task that ended badly, e.g. "srun: error: node1: tasks 0,4: Exited with
    # exit code 1": every one of the 8 tasks must be there, the client's as killed.
    ended = srun_task_ends(result.stderr)
    assert sorted(ended) == list(range(8)), result.report()
    assert ended[1] == ("node2", "Killed"), result.report()
    for task, (node, how) in ended.items():
        assert node == f"node{task % 4 + 1}", result.report()
        assert task == 1 or how.startswith("Exited with exit code ") and not how.endswith(" 0"), result.report()


def test_single_node_slurm_still_answers_beside_it():
    need(slurm_is_up(), "a running single-node Slurm (ci/start-slurm.sh)")
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    out = subprocess.run(["srun", "-n2", "hostname"], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [os.uname().nodename] * 2
    out = subprocess.run(["srun", "-N4", "-n4", "hostname"], capture_output=True, text=True, timeout=60,
                         env={**env, **ENV})
    assert out.returncode == 0, out.stderr
    assert sorted(out.stdout.split()) == NODES


#: The scheduler is told to listen on an address that no node has.
UNLISTENABLE = """\
from dask_runners import SLURMRunner

with SLURMRunner(scheduler_options={"host": "10.77.0.99"}):
    print("SHOULD NOT GET HERE", flush=True)
"""


def test_a_failed_start_at_64_ranks_prints_rank_0s_traceback_and_a_line_per_rank(job_dir):
    """The log a person reads when 64 ranks on four nodes cannot start: rank 0's traceback, 63 lines."""
    script = write_script(job_dir, UNLISTENABLE)
    result = srun(["-N4", "-n64", "--overcommit"], script, job_dir, timeout=150)
    assert result.returncode == 1, result.report()
    ended = srun_task_ends(result.stderr)
    assert sorted(ended) == list(range(64)), result.report()
    assert {how for node, how in ended.values()} == {"Exited with exit code 1"}, result.report()
    # rank 0's: the operating system's error, then the runner's raised from it
    assert result.tracebacks == 2, result.report()
    said = "the scheduler cannot listen on 10.77.0.99"
    briefly = [line for line in result.stderr.splitlines() if line.startswith("rank ")]
    assert sorted(int(line.split(":")[0].split()[1]) for line in briefly) == list(range(1, 64)), result.report()
    assert all("SchedulerStartError: " in line and said in line for line in briefly), result.report()
    assert "SHOULD NOT GET HERE" not in result.stdout
    assert result.leftovers == [], result.report()
    # left for the ranks that start late: the failure, yours alone, with no address and no key
    (record,) = job_dir.glob("scheduler*.json")
    assert oct(record.stat().st_mode & 0o777) == "0o600", record.stat()
    content = json.loads(record.read_text())
    assert (content["address"], "credentials" in content) == (None, False), content
    assert said in content["error"], content
