"""What every launcher sets and says, as data.

:data:`LAUNCHER_VARIABLES` maps each :class:`~dask_runners.job.JobContext`
field to the variable that holds it, per launcher, with the documentation the
names were checked against. :data:`LAUNCH_FACTS` says how each launcher is
typed, how it states the size of a world, and whether it starts MPI programs,
for messages and for choosing a runner.
"""

from __future__ import annotations

from typing import NamedTuple

# Our own local launcher sets these for the processes it starts, and only we
# read them. None starts with DASK_: dask would take it into its config.
#: The local launcher's rank, world size and run id (see :func:`parse_local`).
LOCAL_RANK_VAR = "RUNNERS_RANK"
LOCAL_WORLD_SIZE_VAR = "RUNNERS_WORLD_SIZE"
LOCAL_RUN_ID_VAR = "RUNNERS_RUN_ID"
#: The scheduler file our local launcher gives each run, in a private directory.
LOCAL_SCHEDULER_FILE_VAR = "RUNNERS_SCHEDULER_FILE"
#: The launcher that started this process naming itself; it wins over the
#: dask config key ``runners.launcher``, which a user sets.
LAUNCHER_VAR = "RUNNERS_LAUNCHER"


class LauncherVariables(NamedTuple):
    """Which variable holds each :class:`~dask_runners.job.JobContext` field, for one launcher.

    ``detect`` lists the variables that must all be set for the launcher to
    match; ``source`` says where the names were checked.
    """

    detect: tuple[str, ...]
    rank: str | None = None
    world_size: str | None = None
    local_rank: str | None = None
    local_world_size: str | None = None
    node_rank: str | None = None
    num_nodes: str | None = None
    job_id: str | None = None
    step_id: str | None = None
    cpus_per_task: str | None = None
    restart_count: str | None = None
    source: str = ""


_INT_FIELDS = ("rank", "world_size", "local_rank", "local_world_size", "node_rank", "num_nodes", "cpus_per_task")

LAUNCHER_VARIABLES: dict[str, LauncherVariables] = {
    "local": LauncherVariables(
        detect=(LOCAL_RANK_VAR, LOCAL_WORLD_SIZE_VAR),
        rank=LOCAL_RANK_VAR, world_size=LOCAL_WORLD_SIZE_VAR, job_id=LOCAL_RUN_ID_VAR,
        source="our own; one machine, so local rank = rank and node rank = 0",
    ),
    # https://pytorch.org/docs/stable/elastic/run.html, "Environment Variables"
    "torchrun": LauncherVariables(
        detect=("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"),
        rank="RANK", world_size="WORLD_SIZE", local_rank="LOCAL_RANK", local_world_size="LOCAL_WORLD_SIZE",
        node_rank="GROUP_RANK", step_id="TORCHELASTIC_RUN_ID", restart_count="TORCHELASTIC_RESTART_COUNT",
        source="https://pytorch.org/docs/stable/elastic/run.html",
    ),
    # OMPI_COMM_WORLD_NODE_RANK is *not* the node index: "the relative rank of
    # this process on this node looking across all jobs" (same page).
    "openmpi": LauncherVariables(
        detect=("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
        rank="OMPI_COMM_WORLD_RANK", world_size="OMPI_COMM_WORLD_SIZE",
        local_rank="OMPI_COMM_WORLD_LOCAL_RANK", local_world_size="OMPI_COMM_WORLD_LOCAL_SIZE",
        step_id="PMIX_NAMESPACE",
        source="https://docs.open-mpi.org/en/v5.0.x/tuning-apps/environment-var.html; captured from Open MPI 4.1.4",
    ),
    "mvapich2": LauncherVariables(
        detect=("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),
        rank="MV2_COMM_WORLD_RANK", world_size="MV2_COMM_WORLD_SIZE",
        local_rank="MV2_COMM_WORLD_LOCAL_RANK", local_world_size="MV2_COMM_WORLD_LOCAL_SIZE",
        source="MVAPICH2 mpispawn source (setenv of MV2_COMM_WORLD_*); not run here",
    ),
    # PALS_* from flux-coral2 doc/man1/flux-shell-cray-pals.rst (which Flux
    # sets "as required by Cray PMI"); PALS_LOCAL_RANKID and Cray PMI's
    # PMI_SIZE/PMI_LOCAL_SIZE only from user scripts for ALCF systems.
    "pals": LauncherVariables(
        detect=("PALS_RANKID",),
        rank="PALS_RANKID", world_size="PMI_SIZE", local_rank="PALS_LOCAL_RANKID",
        local_world_size="PMI_LOCAL_SIZE", node_rank="PALS_NODEID", step_id="PALS_APID",
        source="flux-coral2 flux-shell-cray-pals(1); HPE's own PALS documentation not reachable",
    ),
    "jsrun": LauncherVariables(
        detect=("JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE"),
        rank="JSM_NAMESPACE_RANK", world_size="JSM_NAMESPACE_SIZE",
        local_rank="JSM_NAMESPACE_LOCAL_RANK", local_world_size="JSM_NAMESPACE_LOCAL_SIZE",
        job_id="LSB_JOBID",
        source="Lightning LSFEnvironment docs (JSM_NAMESPACE_RANK/SIZE/LOCAL_RANK, LSB_JOBID, LSB_HOSTS)",
    ),
    # https://flux-framework.readthedocs.io/projects/flux-core/en/latest/man7/flux-environment.html
    "flux": LauncherVariables(
        detect=("FLUX_TASK_RANK", "FLUX_JOB_SIZE"),
        rank="FLUX_TASK_RANK", world_size="FLUX_JOB_SIZE", local_rank="FLUX_TASK_LOCAL_ID",
        num_nodes="FLUX_JOB_NNODES", job_id="FLUX_JOB_ID",
        source="flux-environment(7)",
    ),
    "mpich": LauncherVariables(
        detect=("PMI_RANK", "PMI_SIZE"),
        rank="PMI_RANK", world_size="PMI_SIZE",
        local_rank="MPI_LOCALRANKID", local_world_size="MPI_LOCALNRANKS",
        source="captured from MPICH 4.0.2 Hydra (mpiexec.mpich); Intel MPI's Hydra uses the same names",
    ),
    # PMIx puts only the rank and namespace in the environment; the job size
    # is available through PMIx_Get, not as a variable (no PMIX_SIZE exists).
    "pmix": LauncherVariables(
        detect=("PMIX_RANK",),
        rank="PMIX_RANK", step_id="PMIX_NAMESPACE",
        source="captured under srun --mpi=pmix and Open MPI 4.1.4 mpirun (PMIx 4.2.2)",
    ),
    # The slurm and pbs entries describe what parse_slurm and parse_pbs read,
    # with fallbacks and derivations the table cannot express.
    "slurm": LauncherVariables(
        detect=("SLURM_JOB_ID",),
        rank="SLURM_PROCID", world_size="SLURM_STEP_NUM_TASKS", local_rank="SLURM_LOCALID",
        local_world_size="SLURM_STEP_TASKS_PER_NODE", node_rank="SLURM_NODEID", num_nodes="SLURM_STEP_NUM_NODES",
        job_id="SLURM_JOB_ID", step_id="SLURM_STEP_ID", cpus_per_task="SLURM_CPUS_PER_TASK",
        restart_count="SLURM_RESTART_COUNT",
        source="srun(1), sbatch(1) of Slurm 22.05.8; captured from srun and sbatch",
    ),
    "pbs": LauncherVariables(
        detect=("PBS_JOBID",),
        rank="PBS_VNODENUM", node_rank="PBS_NODENUM", job_id="PBS_JOBID",
        source="pbsdsh(1B) and qsub(1B) of Torque 2.4 (PBS_TASKNUM, PBS_NODENUM, PBS_VNODENUM, PBS_NODEFILE)",
    ),
}



class LaunchFacts(NamedTuple):
    """How a launcher is typed and what it numbers, for messages and for choosing a runner.

    ``launch`` is the command line that starts ``{n}`` processes of a script;
    ``world_size`` states a world of ``{n}`` processes as the user would see
    it; ``starts_mpi`` marks launchers of MPI programs, served by
    :class:`~dask_runners.MPIRunner` when mpi4py is installed.
    """

    launch: str | None = None
    world_size: str = "the job has {n} processes"
    starts_mpi: bool = False

    def hint(self, n: int) -> str:
        """How to start ``n`` processes, for an error message."""
        if self.launch is None:
            return f"launch at least {n} processes"
        return f"try `{self.launch.format(n=n)}`"


_MPI_WORLD = "the MPI world has {n} ranks"

#: What :class:`LaunchFacts` says per launcher. ``mpi`` is a world numbered by
#: an MPI communicator itself (a sub-communicator, or an MPI library that is
#: not the launcher's); a name not listed gets the generic facts.
LAUNCH_FACTS: dict[str, LaunchFacts] = {
    "local": LaunchFacts("dask-runner launch -n {n} script.py", "the local launch has {n} ranks"),
    "torchrun": LaunchFacts("torchrun --nproc-per-node {n} script.py", "WORLD_SIZE={n}"),
    "openmpi": LaunchFacts("mpirun -n {n} python script.py", _MPI_WORLD, starts_mpi=True),
    "mpich": LaunchFacts("mpiexec -n {n} python script.py", _MPI_WORLD, starts_mpi=True),
    "mvapich2": LaunchFacts("mpirun_rsh -np {n} ... python script.py", _MPI_WORLD, starts_mpi=True),
    "pals": LaunchFacts("mpiexec -n {n} python script.py", _MPI_WORLD, starts_mpi=True),
    "jsrun": LaunchFacts("jsrun -n {n} python script.py", _MPI_WORLD, starts_mpi=True),
    "pmix": LaunchFacts("mpirun -n {n} python script.py", _MPI_WORLD, starts_mpi=True),
    "mpi": LaunchFacts("mpirun -n {n} python script.py", _MPI_WORLD),
    "flux": LaunchFacts("flux run -n {n} python script.py", "FLUX_JOB_SIZE={n}"),
    "slurm": LaunchFacts("srun -n {n} python script.py", "SLURM_NTASKS={n}"),
    "pbs": LaunchFacts("pbsdsh -- python script.py with {n} slots", "PBS_NODEFILE lists {n} slots"),
}


def launch_facts(launcher: str | None) -> LaunchFacts:
    """The :class:`LaunchFacts` of ``launcher``; generic ones for a name not in the table."""
    return LAUNCH_FACTS.get(launcher, LaunchFacts())


# -- helpers --------------------------------------------------------------------
