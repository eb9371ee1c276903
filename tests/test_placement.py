"""The host exchange's pure parts: host lists to placements, records, and what wins."""

import dataclasses

import pytest

from dask_runners import current_job
from dask_runners.job import FALLBACK_MASTER_PORT, JobContext
from dask_runners.launchers import job_context, placement
from dask_runners.launchers.placement import (
    RECORD_SIZE,
    Placement,
    RankRecord,
    decode_records,
    exchanged_context,
    mismatches,
    place,
    with_exchange,
)

pytestmark = pytest.mark.timeout(30)

# hosts of every rank, in rank order -> (hosts, node_rank, local_rank, local_world_size) of each rank
PLACEMENTS = {
    "one host": (
        ["vm"] * 4,
        [(("vm",), 0, r, 4) for r in range(4)],
    ),
    "one rank per host": (
        ["n1", "n2", "n3", "n4"],
        [(("n1", "n2", "n3", "n4"), r, 0, 1) for r in range(4)],
    ),
    "block, two per host": (
        ["n1", "n1", "n2", "n2"],
        [(("n1", "n2"), 0, 0, 2), (("n1", "n2"), 0, 1, 2), (("n1", "n2"), 1, 0, 2), (("n1", "n2"), 1, 1, 2)],
    ),
    "cyclic over two hosts": (
        ["n1", "n2", "n1", "n2", "n1"],
        [(("n1", "n2"), 0, 0, 3), (("n1", "n2"), 1, 0, 2), (("n1", "n2"), 0, 1, 3), (("n1", "n2"), 1, 1, 2),
         (("n1", "n2"), 0, 2, 3)],
    ),
    # node 0 is rank 0's host, whatever the names sort as
    "rank 0 on the last-named host": (
        ["z9", "a1", "a1", "z9"],
        [(("z9", "a1"), 0, 0, 2), (("z9", "a1"), 1, 0, 2), (("z9", "a1"), 1, 1, 2), (("z9", "a1"), 0, 1, 2)],
    ),
    "uneven, as Slurm packs 8 tasks on 4 nodes": (
        ["n1"] * 4 + ["n2"] * 2 + ["n3", "n4"],
        [(("n1", "n2", "n3", "n4"), 0, r, 4) for r in range(4)]
        + [(("n1", "n2", "n3", "n4"), 1, r, 2) for r in range(2)]
        + [(("n1", "n2", "n3", "n4"), 2, 0, 1), (("n1", "n2", "n3", "n4"), 3, 0, 1)],
    ),
    "a single rank": (["solo"], [(("solo",), 0, 0, 1)]),
}


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_place(name):
    rank_hosts, expected = PLACEMENTS[name]
    for rank, (hosts, node_rank, local_rank, local_world_size) in enumerate(expected):
        assert place(rank_hosts, rank) == Placement(hosts, node_rank, local_rank, local_world_size), rank
        assert place(rank_hosts, rank).num_nodes == len(hosts)


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_local_ranks_of_a_host_are_zero_to_its_size(name):
    rank_hosts, _ = PLACEMENTS[name]
    placements = [place(rank_hosts, rank) for rank in range(len(rank_hosts))]
    for node in range(placements[0].num_nodes):
        mine = [p for p in placements if p.node_rank == node]
        assert sorted(p.local_rank for p in mine) == list(range(len(mine)))
        assert {p.local_world_size for p in mine} == {len(mine)}


def test_place_rejects_a_rank_outside_the_list():
    with pytest.raises(ValueError, match="rank 4 is outside the 4 ranks"):
        place(["a"] * 4, 4)


def test_records_round_trip_at_a_fixed_size():
    records = [RankRecord("node1", 0, 23456), RankRecord("n" * 253, None, 29500), RankRecord("héte", 3, 1)]
    data = b"".join(record.encode() for record in records)
    assert len(data) == 3 * RECORD_SIZE
    assert decode_records(data) == records


@pytest.mark.parametrize("host", ["", "x" * 257])
def test_a_host_name_must_fit_its_field(host):
    with pytest.raises(ValueError, match="must have 1 to 256 bytes"):
        RankRecord(host, 0, 1).encode()


def test_partial_records_are_refused():
    with pytest.raises(ValueError, match="not a whole number"):
        decode_records(b"\0" * (RECORD_SIZE + 1))


def records(hosts, local_ranks=None, port=21000):
    local_ranks = local_ranks or [None] * len(hosts)
    # only rank 0's port counts: the others' differ on purpose
    return [RankRecord(host, local, port + rank) for rank, (host, local) in enumerate(zip(hosts, local_ranks))]


def test_mismatches_compare_the_launchers_local_ranks_with_the_names():
    assert mismatches(records(["a", "a", "b"], [0, 1, 0])) == []
    assert mismatches(records(["a", "a", "b"])) == []  # the launcher says nothing
    # four containers on one node, each with a host name of its own
    assert mismatches(records(["c1", "c2", "c3", "c4"], [0, 1, 2, 3])) == [(1, 1, 0), (2, 2, 0), (3, 3, 0)]
    # two nodes that share a name
    assert mismatches(records(["localhost"] * 4, [0, 1, 0, 1])) == [(2, 0, 2), (3, 1, 3)]


def openmpi_job(rank, world_size=4, local_rank=None, **fields):
    """A context as Open MPI's mpirun gives it: no hosts, no node rank."""
    local = dict(local_rank=local_rank, local_world_size=None if local_rank is None else 2)
    return JobContext("openmpi", step_id="123", rank=rank, world_size=world_size, master_port=22222,
                      **{**local, **fields})


def test_exchange_fills_what_mpirun_does_not_say():
    hosts = ["n3", "n3", "n4", "n4"]
    for rank in range(4):
        job = with_exchange(openmpi_job(rank, local_rank=rank % 2), records(hosts, [0, 1, 0, 1]), rank, {})
        assert job.hosts == ("n3", "n4") and job.num_nodes == 2
        assert (job.node_rank, job.local_rank, job.local_world_size) == (rank // 2, rank % 2, 2)
        assert job.host == hosts[rank]
        env = job.torch_distributed_env(environ={})
        assert env == {"MASTER_ADDR": "n3", "MASTER_PORT": "21000", "RANK": str(rank), "WORLD_SIZE": "4",
                       "LOCAL_RANK": str(rank % 2), "LOCAL_WORLD_SIZE": "2", "NODE_RANK": str(rank // 2)}


def test_exchange_replaces_the_allocations_hosts():
    """mpirun inside salloc borrows the allocation's hosts, which need not be where the ranks run."""
    job = openmpi_job(0, hosts=("n1", "n2", "n3", "n4"), master_addr="n1", job_id="77")
    job = with_exchange(job, records(["n3", "n3", "n4", "n4"]), 0, {})
    assert (job.hosts, job.master_addr, job.job_id) == (("n3", "n4"), "n3", "77")


def test_master_addr_set_by_the_user_wins():
    job = with_exchange(openmpi_job(1, master_addr="ib-n3"), records(["n3", "n4"] * 2), 1, {"MASTER_ADDR": "ib-n3"})
    assert job.master_addr == "ib-n3"
    assert job.hosts == ("n3", "n4")


def test_a_launcher_that_places_the_ranks_keeps_its_names():
    """Under srun the step's hosts and node ids stand; only the port becomes rank 0's."""
    slurm = JobContext("slurm", job_id="9", step_id="0", rank=2, world_size=4, local_rank=0, local_world_size=1,
                       node_rank=2, num_nodes=4, hosts=("node1", "node2", "node3", "node4"), master_addr="node1",
                       master_port=25000)
    job = with_exchange(slurm, records(["node1.cluster", "node2.cluster", "node3.cluster", "node4.cluster"]), 2, {})
    assert job == dataclasses.replace(slurm, master_port=21000)


def test_names_that_do_not_tell_nodes_apart_change_nothing_but_the_port():
    job = openmpi_job(2, local_rank=2, local_world_size=4)
    exchanged = with_exchange(job, records(["c1", "c2", "c3", "c4"], [0, 1, 2, 3]), 2, {})
    assert exchanged == dataclasses.replace(job, master_port=21000)
    assert exchanged.hosts == () and exchanged.master_addr is None


def test_a_sub_communicator_takes_everything_from_the_exchange():
    """Reversed ranks: the communicator's rank 0 is the world's last rank, on the last host."""
    job = job_context({}, numbering=(0, 4), numbered_by="mpi")
    job = with_exchange(job, records(["n4", "n3", "n2", "n1"]), 0, {})
    assert (job.launcher, job.rank, job.world_size, job.node_rank, job.master_addr) == ("mpi", 0, 4, 0, "n4")


def test_a_numbering_of_its_own_reads_the_rendezvous_variables():
    env = {"MASTER_PORT": "31313", "MASTER_ADDR": "head", "CUDA_VISIBLE_DEVICES": "1"}
    job = job_context(env, numbering=(1, 3), numbered_by="mpi")
    assert (job.launcher, job.master_port, job.master_addr, job.gpus) == ("mpi", 31313, "head", ("1",))
    assert job_context({}, numbering=(1, 3)).master_port == FALLBACK_MASTER_PORT


@pytest.fixture
def no_exchange():
    placement.forget()
    yield
    placement.forget()


OPEN_MPI_RANK_1 = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
                   "OMPI_COMM_WORLD_LOCAL_SIZE": "1", "PMIX_NAMESPACE": "4242"}


def test_current_job_reuses_an_exchange_over_the_world(monkeypatch, no_exchange):
    monkeypatch.setenv("RUNNERS_LAUNCHER", "openmpi")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    for name, value in OPEN_MPI_RANK_1.items():
        monkeypatch.setenv(name, value)
    before = current_job()
    assert (before.hosts, before.master_addr) == ((), None)
    placement.remember(1, records(["n1", "n2"]))
    after = current_job()
    assert (after.hosts, after.node_rank, after.master_addr, after.master_port) == (("n1", "n2"), 1, "n1", 21000)


def test_an_exchange_that_numbers_the_process_otherwise_is_not_reused(no_exchange):
    job = openmpi_job(1, world_size=2)
    placement.remember(0, records(["n1", "n2", "n3"]))  # another world
    assert exchanged_context(job, {}) is job
    placement.forget()
    assert exchanged_context(job, {}) is job
