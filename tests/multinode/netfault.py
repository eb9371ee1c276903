"""Network faults on the emulated 4-node Slurm (ci/start-multinode-slurm.sh), and their undoing.

Each node is a network namespace ``mn-nodeK`` joined to the bridge ``mnbr0`` by a veth pair whose
host side is ``mnv-nodeK``. The faults act on that host side, so the node's own view is untouched:

* :meth:`NodeFault.silence` sets the bridge port to ``disabled``: every frame to and from the node
  is dropped, the links stay up on both sides, and no peer gets a reset or an ICMP error. This is
  a partition, or a node hung in the kernel: connections stay open and simply go quiet.
* :meth:`NodeFault.unplug` takes the host side of the link down (the node sees no carrier).
* :meth:`NodeFault.stop_task` stops one task with ``SIGSTOP``: its connections stay open and quiet.
* :meth:`NodeFault.kill_tasks` kills (``SIGKILL``) every process of one job on the node, as the
  OOM killer or a crash would; ``slurmd`` and ``slurmstepd`` stay.

:meth:`NodeFault.heal` undoes all of it and brings the node back into Slurm if Slurm marked it
down meanwhile; :func:`network_is_whole` checks that nothing is left changed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import psutil

MULTINODE_CONF = "/etc/slurm-multinode/slurm.conf"
SLURM_ENV = {**os.environ, "SLURM_CONF": MULTINODE_CONF}
FORWARDING = "forwarding"


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20, env=SLURM_ENV).stdout


def port_state(node: str) -> str:
    """The bridge port state of ``node``'s link (``forwarding`` when whole)."""
    out = _run("bridge", "link", "show", "dev", f"mnv-{node}")
    return out.split(" state ", 2)[-1].split()[0] if " state " in out else "unknown"


def link_is_up(node: str) -> bool:
    return "UP" in _run("ip", "-br", "link", "show", f"mnv-{node}").split()[1]


def slurm_state(node: str) -> str:
    """What Slurm says of ``node``: ``idle``, ``alloc``, ``down*``, ``comp``..."""
    return _run("sinfo", "-h", "-n", node, "-o", "%t").strip()


def network_is_whole(nodes) -> list[str]:
    """What is still changed on ``nodes`` (empty when every link is up and forwarding)."""
    changed = []
    for node in nodes:
        if port_state(node) != FORWARDING:
            changed.append(f"{node}: bridge port {port_state(node)}")
        if not link_is_up(node):
            changed.append(f"{node}: link down")
    return changed


def processes_of_job(node: str, job_id: str) -> list[psutil.Process]:
    """Every process of Slurm job ``job_id`` on ``node`` but slurmstepd (its tasks and their children)."""
    found = []
    pids = _run("ip", "netns", "pids", f"mn-{node}").split()
    for pid in map(int, pids):
        try:
            proc = psutil.Process(pid)
            if proc.name() != "slurmstepd" and proc.environ().get("SLURM_JOB_ID") == job_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


class NodeFault:
    """One fault on one emulated node; :meth:`heal` (or leaving the ``with``) undoes it."""

    def __init__(self, node: str):
        self.node = node
        self.at: float | None = None  # time.monotonic() of the fault
        self.wall: float | None = None  # time.time() of the fault, to compare with the job's stamps
        self.stopped: list[psutil.Process] = []

    def __enter__(self) -> NodeFault:
        return self

    def __exit__(self, *exc) -> None:
        self.heal()

    def silence(self) -> None:
        """Drop every frame to and from the node, links up: nobody gets a reset."""
        _run("bridge", "link", "set", "dev", f"mnv-{self.node}", "state", "0")
        self.at, self.wall = time.monotonic(), time.time()

    def unplug(self) -> None:
        """Take the node's link down."""
        _run("ip", "link", "set", f"mnv-{self.node}", "down")
        self.at, self.wall = time.monotonic(), time.time()

    def kill_tasks(self, job_id: str) -> int:
        """SIGKILL every process of ``job_id`` on the node; returns how many."""
        victims = processes_of_job(self.node, job_id)
        self.at, self.wall = time.monotonic(), time.time()
        for proc in victims:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        return len(victims)

    def stop_task(self, job_id: str, rank: int) -> None:
        """SIGSTOP task ``rank`` of ``job_id`` on the node: its connections stay open, it says nothing."""
        for proc in processes_of_job(self.node, job_id):
            if proc.environ().get("SLURM_PROCID") == str(rank) and "python" in proc.name():
                proc.send_signal(signal.SIGSTOP)
                self.stopped.append(proc)
        assert self.stopped, f"no task {rank} of job {job_id} on {self.node}"
        self.at, self.wall = time.monotonic(), time.time()

    def reconnect(self) -> None:
        """Restore the link and continue stopped tasks (Slurm may still count the node as not responding)."""
        for proc in self.stopped:
            try:
                proc.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass
        _run("ip", "link", "set", f"mnv-{self.node}", "up")
        _run("bridge", "link", "set", "dev", f"mnv-{self.node}", "state", "3")

    def heal(self, timeout: float = 120.0) -> None:
        """Reconnect, and make sure Slurm counts the node as up again."""
        self.reconnect()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = slurm_state(self.node)
            if state.startswith("down") or state.startswith("drain"):
                subprocess.run(["scontrol", "update", f"nodename={self.node}", "state=resume"],
                               env=SLURM_ENV, capture_output=True, timeout=20)
            elif not state.endswith("*"):
                return
            time.sleep(0.5)
        raise AssertionError(f"{self.node} is still {slurm_state(self.node)!r} {timeout:.0f} s after healing")
