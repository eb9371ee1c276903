"""A worker's share of its node: the memory and the threads its rank may use.

distributed sizes a worker as if it had the machine to itself: its
``memory_limit="auto"`` is the whole node's memory (or the memory cgroup at
the root of the hierarchy, which under Slurm is unlimited) and its threads
the whole node's cores. With dozens of ranks on a node, every worker then
claims the node, dask's spill, pause and terminate thresholds never trigger,
and the job meets the OOM killer instead of spilling.

A worker rank here gets its share instead:

* **memory**: the memory the launch may use on this node, the smallest of
  the limits that apply (the memory cgroup of this process, walked up to the
  root as Slurm's ``task/cgroup`` nests it; ``SLURM_MEM_PER_NODE``;
  ``SLURM_MEM_PER_CPU`` times the CPUs on the node; the node's memory),
  divided among the ranks on the node. Every rank counts, the scheduler and
  the client too: they are processes on the node that use memory.
* **threads**: the CPUs this rank may run on (its affinity mask, which
  honours ``srun``'s CPU binding), but no more than its share of the CPUs
  the launch has on the node when ranks share them (no binding).

An explicit ``worker_options`` value always wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import psutil

MIB = 1 << 20
#: cgroup v1 reports "no limit" as a number near 2**63 rounded down to a page.
UNLIMITED_FLOOR = 1 << 60


class NodeShare(NamedTuple):
    """One rank's share of its node.

    Attributes
    ----------
    memory_limit : int
        Bytes the rank's worker may use.
    nthreads : int
        Threads for the rank's worker.
    node_memory : int
        Bytes the launch may use on this node.
    memory_source : str
        Which limit set ``node_memory``.
    ranks_on_node : int
        The ranks that share the node.
    """

    memory_limit: int
    nthreads: int
    node_memory: int
    memory_source: str
    ranks_on_node: int

    def worker_options(self) -> dict:
        """``memory_limit`` and ``nthreads`` as worker keyword arguments."""
        return {"memory_limit": self.memory_limit, "nthreads": self.nthreads}


def cgroup_memory_limit(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """The tightest memory limit on this process's cgroup and its ancestors, in bytes.

    Reads cgroup v2 (``memory.max``) and v1 (``memory.limit_in_bytes``);
    ``None`` when no level sets a limit or the files cannot be read.
    """
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            limits += _limits_up(Path(root), path, "memory.max")
        elif "memory" in controllers.split(","):
            limits += _limits_up(Path(root) / "memory", path, "memory.limit_in_bytes")
    return min(limits, default=None)


def _limits_up(mount: Path, path: str, name: str) -> list[int]:
    """The limits in ``name`` from ``mount/path`` up to ``mount``."""
    limits = []
    directory = mount / path.lstrip("/")
    while True:
        try:
            text = (directory / name).read_text().strip()
        except OSError:
            text = "max"
        if text.isdigit() and int(text) < UNLIMITED_FLOOR:
            limits.append(int(text))
        if directory == mount or mount not in directory.parents:
            return limits
        directory = directory.parent


def node_memory(environ: Mapping[str, str], cpus_on_node: int, cgroup_limit: int | None,
                total: int) -> tuple[int, str]:
    """Bytes the launch may use on this node, and which limit said so.

    ``cpus_on_node`` are the CPUs Slurm allotted on the node, which
    ``SLURM_MEM_PER_CPU`` multiplies (even where the node declares more CPUs
    than it has).
    """
    candidates = [(total, "the node's memory")]
    if cgroup_limit is not None:
        candidates.append((cgroup_limit, "the memory cgroup"))
    per_node = _mebibytes(environ.get("SLURM_MEM_PER_NODE"))
    if per_node:
        candidates.append((per_node * MIB, "SLURM_MEM_PER_NODE"))
    per_cpu = _mebibytes(environ.get("SLURM_MEM_PER_CPU"))
    if per_cpu:
        candidates.append((per_cpu * MIB * cpus_on_node, "SLURM_MEM_PER_CPU x CPUs on the node"))
    return min(candidates, key=lambda candidate: candidate[0])


def node_share(job=None, environ: Mapping[str, str] | None = None, *, affinity: set[int] | None = None,
               machine_cpus: int | None = None, total_memory: int | None = None,
               cgroup_limit: int | None | bool = False) -> NodeShare:
    """This rank's share of its node, from ``job`` (a :class:`~dask_runners.JobContext`).

    The keyword arguments stand in for what is read from the machine (for tests).
    """
    env = os.environ if environ is None else environ
    ranks = _ranks_on_node(job)
    mask = len(os.sched_getaffinity(0) if affinity is None else affinity)
    machine = machine_cpus or os.cpu_count() or mask
    slurm_cpus = _slurm_cpus_on_node(env)
    allotted = min(machine, slurm_cpus or machine)
    nthreads = min(mask, allotted // ranks)
    cpus_per_task = getattr(job, "cpus_per_task", None)
    if cpus_per_task:
        nthreads = min(nthreads, cpus_per_task)
    if cgroup_limit is False:
        cgroup_limit = cgroup_memory_limit()
    total = psutil.virtual_memory().total if total_memory is None else total_memory
    memory, source = node_memory(env, slurm_cpus or allotted, cgroup_limit, total)
    return NodeShare(memory // ranks, max(nthreads, 1), memory, source, ranks)


def _ranks_on_node(job) -> int:
    """How many of the launch's ranks share this node (1 when ``job`` does not say)."""
    return max(getattr(job, "local_world_size", None) or 1, 1)


def _slurm_cpus_on_node(env: Mapping[str, str]) -> int | None:
    """``SLURM_CPUS_ON_NODE``, the CPUs Slurm gave the job on this node, when it is set to a count."""
    on_node = env.get("SLURM_CPUS_ON_NODE", "")
    return int(on_node) if on_node.isdigit() and int(on_node) > 0 else None


def _mebibytes(value: str | None) -> int | None:
    """A Slurm memory size in MiB (``4000``, or with a unit: ``4000M``, ``4G``), or ``None``."""
    if not value:
        return None
    digits = value.rstrip("MmKkGgTt")
    if not digits.isdigit():
        return None
    scale = {"k": 1 / 1024, "g": 1024, "t": 1024 * 1024}.get(value[-1].lower(), 1)
    return int(int(digits) * scale)
