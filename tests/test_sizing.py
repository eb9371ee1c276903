"""A worker's share of its node, on recorded environments and cgroup trees."""

import pytest

from dask_runners.job import JobContext
from dask_runners.sizing import MIB, cgroup_memory_limit, node_share

GIB = 1 << 30


def slurm_job(ranks_on_node, cpus_per_task=None):
    return JobContext("slurm", rank=0, world_size=ranks_on_node, local_rank=0, local_world_size=ranks_on_node,
                      cpus_per_task=cpus_per_task)


def share(job, environ, affinity, machine_cpus=2, total=24 * GIB, cgroup=None):
    return node_share(job, environ, affinity=set(range(affinity)), machine_cpus=machine_cpus,
                      total_memory=total, cgroup_limit=cgroup)


def test_four_unbound_ranks_on_a_two_core_node_split_it_instead_of_each_claiming_it():
    # srun -n4 on the test node: no binding, so every rank's mask is both cores.
    s = share(slurm_job(4), {"SLURM_CPUS_ON_NODE": "4"}, affinity=2)
    assert s.memory_limit == 6 * GIB and s.nthreads == 1
    assert s.memory_limit * 4 <= 24 * GIB


def test_bound_ranks_keep_their_own_cpus():
    # srun -n4 -c4 --cpu-bind=cores on a 64-core node: each mask holds its 4 cores.
    s = share(slurm_job(4, cpus_per_task=4), {"SLURM_CPUS_ON_NODE": "16", "SLURM_CPUS_PER_TASK": "4"},
              affinity=4, machine_cpus=64, total=256 * GIB)
    assert s.nthreads == 4 and s.memory_limit == 64 * GIB


def test_unbound_ranks_share_the_cpus_the_job_has_on_the_node():
    # srun -n2 -c4 without binding on a 64-core node: both masks are the job's 8 CPUs.
    s = share(slurm_job(2, cpus_per_task=4), {"SLURM_CPUS_ON_NODE": "8"}, affinity=8, machine_cpus=64)
    assert s.nthreads == 4


def test_the_slurm_allocation_bounds_the_memory():
    s = share(slurm_job(4), {"SLURM_MEM_PER_NODE": "8000", "SLURM_CPUS_ON_NODE": "4"}, affinity=2)
    assert (s.node_memory, s.memory_source) == (8000 * MIB, "SLURM_MEM_PER_NODE")
    assert s.memory_limit == 2000 * MIB


def test_memory_per_cpu_counts_the_cpus_on_this_node():
    environ = {"SLURM_MEM_PER_CPU": "1G", "SLURM_CPUS_ON_NODE": "4"}
    s = share(slurm_job(2), environ, affinity=4, machine_cpus=64)
    assert s.node_memory == 4 * GIB and s.memory_limit == 2 * GIB
    assert s.memory_source == "SLURM_MEM_PER_CPU x CPUs on the node"


def test_a_tighter_cgroup_wins_over_the_request():
    s = share(slurm_job(2), {"SLURM_MEM_PER_NODE": "8000"}, affinity=2, cgroup=3 * GIB)
    assert (s.node_memory, s.memory_source) == (3 * GIB, "the memory cgroup")


def test_without_a_launcher_the_rank_has_the_machine():
    s = share(None, {}, affinity=2)
    assert (s.memory_limit, s.nthreads, s.ranks_on_node) == (24 * GIB, 2, 1)


def test_a_local_world_splits_the_machine_the_same_way():
    local = JobContext("local", rank=0, world_size=6, local_rank=0, local_world_size=6)
    s = share(local, {}, affinity=8, machine_cpus=8, total=32 * GIB)
    assert s.nthreads == 1 and s.memory_limit == 32 * GIB // 6


def _cgroup_tree(tmp_path, version, limits):
    """A fake /proc/self/cgroup and cgroup mount; ``limits`` maps a path to its limit text."""
    root = tmp_path / "cgroup"
    if version == 2:
        proc = "0::/slurm/uid_0/job_7/step_0/task_1\n"
        mount, name = root, "memory.max"
    else:
        proc = "4:memory:/slurm/uid_0/job_7/step_0/task_1\n3:cpuset:/\n"
        mount, name = root / "memory", "memory.limit_in_bytes"
    for path, text in limits.items():
        directory = mount / path
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text + "\n")
    (tmp_path / "proc").write_text(proc)
    return str(tmp_path / "proc"), str(root)


@pytest.mark.parametrize("version,unlimited", [(2, "max"), (1, "9223372036854771712")])
def test_the_cgroup_limit_is_found_on_the_step_above_the_task(tmp_path, version, unlimited):
    # Slurm's task/cgroup sets the limit on the job and the step; the task's own level has none.
    proc, root = _cgroup_tree(tmp_path, version, {
        "": unlimited,
        "slurm/uid_0/job_7": str(16 * GIB),
        "slurm/uid_0/job_7/step_0": str(12 * GIB),
        "slurm/uid_0/job_7/step_0/task_1": unlimited,
    })
    assert cgroup_memory_limit(proc, root) == 12 * GIB


def test_no_cgroup_limit_is_none(tmp_path):
    proc, root = _cgroup_tree(tmp_path, 2, {"": "max", "slurm/uid_0/job_7/step_0/task_1": "max"})
    assert cgroup_memory_limit(proc, root) is None
    assert cgroup_memory_limit(str(tmp_path / "missing"), root) is None
