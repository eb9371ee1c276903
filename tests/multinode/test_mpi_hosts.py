"""MPIRunner's host exchange on the emulated 4-node Slurm (ci/start-multinode-slurm.sh).

Every rank prints its ``runner.job.torch_distributed_env()``; the ranks run on
different hosts, so node and local ranks are not trivial. Under ``srun`` the
step names the hosts itself; under Open MPI's ``mpirun`` inside ``salloc``
(which starts its daemons on the nodes through ``srun``) only the exchange
over the communicator knows them.
"""

from __future__ import annotations

import pytest

from ..launch import OPEN_MPI_ENV, PYTHON, launch, mpi4py_importable, need, write_script
from ..launchers.test_mpi import TORCH_ENV, check_torch_env, torch_reports
from .test_multinode import ENV, NODES, multinode_is_up

pytestmark = [pytest.mark.slurm, pytest.mark.mpi, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def multinode():
    need(multinode_is_up() and mpi4py_importable(), "the emulated multi-node Slurm with mpi4py")


def run(job_dir, argv, env=None):
    result = launch([*argv, PYTHON, write_script(job_dir, TORCH_ENV)], job_dir, {**ENV, **(env or {})})
    result.assert_clean_success()
    assert "RESULT ok" in result.stdout, result.report()
    reports = torch_reports(result)
    check_torch_env(reports)
    return reports


def test_srun_pmix_over_four_nodes(job_dir):
    reports = run(job_dir, ["srun", "--mpi=pmix", "-N4", "-n4"])
    assert [r["host"] for r in reports] == NODES
    assert {r["torch"]["MASTER_ADDR"] for r in reports} == {"node1"}
    assert [r["torch"]["NODE_RANK"] for r in reports] == ["0", "1", "2", "3"]


def test_srun_pmi2_mpich_over_four_nodes(job_dir, mpich_env):
    reports = run(job_dir, ["srun", "--mpi=pmi2", "-N4", "-n4"], mpich_env)
    assert [r["host"] for r in reports] == NODES


def test_mpirun_in_salloc_cyclic_over_four_nodes(job_dir):
    """Open MPI's mpirun publishes no hosts and no node index: the exchange gives them."""
    reports = run(job_dir, ["salloc", "-N4", "-n8", "--ntasks-per-node=2", "mpirun", "-n", "8", "--map-by", "node"],
                  OPEN_MPI_ENV)
    assert [r["host"] for r in reports] == [NODES[rank % 4] for rank in range(8)]
    assert [r["torch"]["NODE_RANK"] for r in reports] == [str(rank % 4) for rank in range(8)]
    assert [r["torch"]["LOCAL_RANK"] for r in reports] == [str(rank // 4) for rank in range(8)]


def test_mpirun_on_part_of_the_allocation_meets_at_rank_0s_host(job_dir):
    """The allocation's first host (node1) runs no rank: MASTER_ADDR is rank 0's, node3."""
    reports = run(job_dir, ["salloc", "-N4", "-n8", "mpirun", "--oversubscribe", "-n", "4", "--host",
                            "node3:2,node4:2"], OPEN_MPI_ENV)
    assert [r["host"] for r in reports] == ["node3", "node3", "node4", "node4"]
    assert {r["torch"]["MASTER_ADDR"] for r in reports} == {"node3"}
    assert [r["hosts"] for r in reports] == [["node3", "node4"]] * 4
