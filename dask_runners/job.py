"""Where this process sits in its parallel job, read from the launcher's environment.

:func:`detect` returns a :class:`JobContext` built by one small, pure parser
per launcher. Each parser takes a mapping (tests pass plain dicts) and returns
``None`` when its launcher's variables are absent. What can be said as data is:
:data:`LAUNCHER_VARIABLES` maps each field to the variable that holds it, per
launcher, with the documentation the names were checked against.

Order of detection
------------------
Launchers nest: ``torchrun`` runs inside ``srun`` or ``mpirun``; ``mpirun``
runs inside ``sbatch``/``salloc`` and then carries the allocation's
``SLURM_*`` (and, on several nodes, those of the ``srun`` step that started
its daemons, with ``SLURM_PROCID`` numbering daemons, not ranks). The
innermost launcher is the one that numbered this process, so
:data:`DETECTION_ORDER` tries the innermost kinds first:

1. ``local`` -- our own launcher sets ``DASK_RUNNERS_*`` only for the processes
   it starts, wherever it runs.
2. ``torchrun`` -- its workers are started inside any of the others.
3. ``openmpi``, ``mvapich2``, ``pals``, ``jsrun``, ``flux`` -- variables only
   that launcher's own process manager sets. They go before ``mpich`` and
   ``pmix`` because some of them also set ``PMI_*``/``PMIX_*`` (Cray PALS sets
   ``PMI_RANK``; Open MPI's ``mpirun`` sets ``PMIX_RANK``), and before ``slurm``
   and ``pbs`` because they run inside those allocations.
4. ``mpich`` (``PMI_RANK``/``PMI_SIZE``) and ``pmix`` (``PMIX_RANK``) -- generic
   process-manager interfaces that ``srun`` itself also serves (``srun
   --mpi=pmi2`` sets ``PMI_RANK``, ``srun --mpi=pmix`` sets ``PMIX_RANK``). A
   match is skipped in favour of ``slurm`` when this process is a task of a
   Slurm step whose numbering is the same (``SLURM_PROCID`` equals the PMI
   rank and the step's size equals the PMI size): then ``srun`` is the
   launcher and the Slurm context, which knows the job, step and hosts, says
   the same thing with more detail. When the numbering differs (Hydra's
   proxies started by ``srun`` inside ``sbatch``), the PMI rank wins.
5. ``slurm`` -- ``SLURM_JOB_ID``; a task of a step when ``SLURM_STEP_ID`` is set.
6. ``pbs`` -- ``PBS_JOBID``; ranks only under ``pbsdsh``.

An explicit choice always wins: ``detect(launcher="slurm")`` or the
``DASK_RUNNERS_LAUNCHER`` variable. Parsers registered in :data:`PARSERS` but
not listed in :data:`DETECTION_ORDER` are used only when chosen explicitly.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

from .exceptions import LauncherEnvironmentError
from .hostlist import expand_hostlist, expand_tasks_per_node

__all__ = [
    "DETECTION_ORDER",
    "LAUNCHER_VAR",
    "LAUNCHER_VARIABLES",
    "LOCAL_RANK_VAR",
    "LOCAL_RUN_ID_VAR",
    "LOCAL_WORLD_SIZE_VAR",
    "PARSERS",
    "JobContext",
    "LauncherVariables",
    "current_job",
    "default_master_port",
    "detect",
    "parse_device_list",
    "visible_gpus",
]

#: Our own local launcher's variables (see :func:`parse_local`).
LOCAL_RANK_VAR = "DASK_RUNNERS_RANK"
LOCAL_WORLD_SIZE_VAR = "DASK_RUNNERS_WORLD_SIZE"
LOCAL_RUN_ID_VAR = "DASK_RUNNERS_RUN_ID"
#: Names a launcher to use instead of detecting one.
LAUNCHER_VAR = "DASK_RUNNERS_LAUNCHER"

#: The port when neither ``MASTER_PORT`` nor a job id is known (torch's default).
FALLBACK_MASTER_PORT = 29500
#: Derived ports lie in ``[MASTER_PORT_BASE, MASTER_PORT_BASE + MASTER_PORT_SPAN)``.
MASTER_PORT_BASE = 20000
MASTER_PORT_SPAN = 10000

#: Variables that list the devices a process may use, most specific first.
VISIBLE_DEVICE_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")

_TORCH_REQUIRED = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")

ReadText = Callable[[str], str]


@dataclasses.dataclass(frozen=True, repr=False)
class JobContext:
    """Where this process sits in its parallel job.

    Numbers are ``None`` when the launcher does not say; nothing is guessed.

    Attributes
    ----------
    launcher : str
        The name of the parser that built this context, a key of :data:`PARSERS`.
    job_id, step_id : str or None
        The batch job, and the launch within it: a Slurm step id, Open MPI's
        PMIx namespace, torchrun's run id. MPI launchers inside a Slurm, PBS
        or LSF allocation take the job id of the allocation.
    rank, world_size : int or None
        This process's rank and the number of processes in the launch.
    local_rank, local_world_size : int or None
        The same, counted on this node only.
    node_rank, num_nodes : int or None
        This node's index in the launch and the number of nodes.
    hosts : tuple of str
        The hosts of the launch, expanded, in the launcher's order. For MPI
        launchers, which do not publish their hosts, the hosts of the
        enclosing allocation, which may be more than the launch uses.
    cpus_per_task : int or None
        CPUs allotted to each rank, when the launcher says.
    gpus : tuple of str
        Ids of the GPUs this process may use (see :func:`parse_device_list`).
    master_addr : str or None
        ``MASTER_ADDR`` if set, else the first host.
    master_port : int
        ``MASTER_PORT`` if set, else :func:`default_master_port`.
    restart_count : int
        How often the job (Slurm requeue) or the worker group (torchrun) was
        restarted.
    """

    launcher: str
    job_id: str | None = None
    step_id: str | None = None
    rank: int | None = None
    world_size: int | None = None
    local_rank: int | None = None
    local_world_size: int | None = None
    node_rank: int | None = None
    num_nodes: int | None = None
    hosts: tuple[str, ...] = ()
    cpus_per_task: int | None = None
    gpus: tuple[str, ...] = ()
    master_addr: str | None = None
    master_port: int = FALLBACK_MASTER_PORT
    restart_count: int = 0

    def __post_init__(self):
        for index, size in (("rank", "world_size"), ("local_rank", "local_world_size"), ("node_rank", "num_nodes")):
            i, n = getattr(self, index), getattr(self, size)
            if i is not None and (i < 0 or (n is not None and i >= n)):
                raise ValueError(f"{index}={i} is outside {size}={n}")

    @property
    def host(self) -> str | None:
        """This node's name, when the hosts and the node rank are known."""
        if self.node_rank is not None and self.node_rank < len(self.hosts):
            return self.hosts[self.node_rank]
        return None

    def describe(self) -> str:
        """One line for logs: ``JobContext(slurm job=123.0 rank=2/16 …)``."""
        job = "?" if self.job_id is None else self.job_id
        if self.step_id is not None:
            job = f"{job}.{self.step_id}"
        parts = [
            self.launcher,
            f"job={job}",
            f"rank={_pair(self.rank, self.world_size)}",
            f"local={_pair(self.local_rank, self.local_world_size)}",
            f"node={_pair(self.node_rank, self.num_nodes)}",
            f"host={self.host or '?'}",
            f"gpus={','.join(self.gpus) or 'none'}",
        ]
        return f"JobContext({' '.join(parts)})"

    __repr__ = describe

    def torch_distributed_env(
        self, overwrite: bool = False, environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The variables ``torch.distributed`` reads (``init_method="env://"``).

        ``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, and, when
        known, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``NODE_RANK``.

        Parameters
        ----------
        overwrite : bool
            Also return variables already set in ``environ``.
        environ : mapping, optional
            The environment to compare with; default ``os.environ``.

        Returns
        -------
        dict of str to str
            Only the variables to set, so that ``os.environ.update(result)``
            never replaces what the user set (unless ``overwrite``).

        Raises
        ------
        LauncherEnvironmentError
            If one of the first four is neither known nor already set.
        """
        env = os.environ if environ is None else environ
        values = {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
            "RANK": _str(self.rank),
            "WORLD_SIZE": _str(self.world_size),
            "LOCAL_RANK": _str(self.local_rank),
            "LOCAL_WORLD_SIZE": _str(self.local_world_size),
            "NODE_RANK": _str(self.node_rank),
        }
        missing = [name for name in _TORCH_REQUIRED if values[name] is None and name not in env]
        if missing:
            raise LauncherEnvironmentError(
                f"{self!r} does not give {', '.join(missing)} for torch.distributed; "
                f"set {' and '.join(missing)} in the environment before the launch."
            )
        return {
            name: value
            for name, value in values.items()
            if value is not None and (overwrite or name not in env)
        }


@dataclasses.dataclass(frozen=True)
class LauncherVariables:
    """Which variable holds each :class:`JobContext` field, for one launcher.

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


# -- helpers --------------------------------------------------------------------


def _pair(index, size) -> str:
    return f"{'?' if index is None else index}/{'?' if size is None else size}"


def _str(value) -> str | None:
    return None if value is None else str(value)


def _int(env: Mapping[str, str], name: str | None, launcher: str) -> int | None:
    """``env[name]`` as an int, ``None`` if unset or empty."""
    if name is None or not env.get(name, "").strip():
        return None
    try:
        return int(env[name])
    except ValueError:
        raise LauncherEnvironmentError(f"{name}={env[name]!r} is not an integer ({launcher} launcher)") from None


def _hosts(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """The expanded Slurm host list in ``env[name]``, ``()`` if unset."""
    text = env.get(name, "").strip()
    if not text:
        return ()
    try:
        return tuple(expand_hostlist(text))
    except ValueError as e:
        raise LauncherEnvironmentError(f"{name} is not a valid host list: {e}") from e


def _read_text(path: str) -> str:
    return Path(path).read_text()


def _unique(names) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def parse_device_list(text: str) -> tuple[str, ...]:
    """Split a device list such as ``CUDA_VISIBLE_DEVICES`` into ids.

    ``""`` and ``"NoDevFiles"`` (set by Slurm and Torque when no GPU was
    allocated) mean no devices. Ids are kept as strings: they may be indices,
    UUIDs (``GPU-…``) or, for ``ZE_AFFINITY_MASK``, ``device.tile``.
    """
    text = text.strip()
    if text in ("", "NoDevFiles"):
        return ()
    return tuple(part.strip() for part in text.split(",") if part.strip())


def visible_gpus(env: Mapping[str, str], fallbacks: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The GPUs this process may use: the first of :data:`VISIBLE_DEVICE_VARS`
    that is set (even to nothing), else the first set of ``fallbacks``."""
    for name in VISIBLE_DEVICE_VARS + fallbacks:
        if name in env:
            return parse_device_list(env[name])
    return ()


def default_master_port(job_id: str | None, step_id: str | None = None) -> int:
    """A rendezvous port every rank of one launch derives alike.

    ``20000 + crc32("<job_id>.<step_id>") % 10000``: in the unprivileged range
    and below Linux's ephemeral ports (32768 and up), so that no outgoing
    connection already holds it; distinct steps of one job get distinct ports.
    CRC-32, unlike ``hash()``, is the same in every process. Without any id,
    torch's default 29500.
    """
    if job_id is None and step_id is None:
        return FALLBACK_MASTER_PORT
    key = f"{job_id}.{step_id}" if step_id is not None else str(job_id)
    return MASTER_PORT_BASE + zlib.crc32(key.encode()) % MASTER_PORT_SPAN


@dataclasses.dataclass(frozen=True)
class _Allocation:
    """The batch allocation a launcher runs inside, if any."""

    job_id: str | None = None
    hosts: tuple[str, ...] = ()
    restart_count: int = 0


def _allocation(env: Mapping[str, str], read_text: ReadText) -> _Allocation:
    """The enclosing Slurm, PBS or LSF allocation, for launchers that know none."""
    if "SLURM_JOB_ID" in env:
        return _Allocation(
            env["SLURM_JOB_ID"],
            _hosts(env, "SLURM_JOB_NODELIST") or _hosts(env, "SLURM_NODELIST"),
            _int(env, "SLURM_RESTART_COUNT", "slurm") or 0,
        )
    if "PBS_JOBID" in env:
        return _Allocation(env["PBS_JOBID"], _unique(_pbs_nodefile(env, read_text)))
    if "LSB_JOBID" in env:
        return _Allocation(env["LSB_JOBID"], _lsf_hosts(env))
    return _Allocation()


def _build(launcher: str, env: Mapping[str, str], **fields) -> JobContext:
    """A :class:`JobContext` with the rendezvous address, port and GPUs filled in."""
    fields.setdefault("gpus", visible_gpus(env))
    hosts = fields.get("hosts", ())
    fields["master_addr"] = env.get("MASTER_ADDR") or (hosts[0] if hosts else None)
    port = _int(env, "MASTER_PORT", launcher)
    if port is None:
        port = default_master_port(fields.get("job_id"), fields.get("step_id"))
    fields["master_port"] = port
    try:
        return JobContext(launcher=launcher, **fields)
    except ValueError as e:
        raise LauncherEnvironmentError(f"the {launcher} variables contradict each other: {e}") from e


def _from_table(name: str, env: Mapping[str, str], read_text: ReadText = _read_text, **extra) -> JobContext | None:
    """Build a context from :data:`LAUNCHER_VARIABLES` alone; ``extra`` wins."""
    spec = LAUNCHER_VARIABLES[name]
    if not all(var in env for var in spec.detect):
        return None
    fields = {field: _int(env, getattr(spec, field), name) for field in _INT_FIELDS}
    fields["job_id"] = env.get(spec.job_id) if spec.job_id else None
    fields["step_id"] = env.get(spec.step_id) if spec.step_id else None
    restart = _int(env, spec.restart_count, name)
    # Launchers that name neither their job nor their hosts borrow the allocation's.
    needs_outer = fields["job_id"] is None or "hosts" not in extra
    outer = _allocation(env, read_text) if needs_outer else _Allocation()
    fields["job_id"] = fields["job_id"] or outer.job_id
    fields["hosts"] = outer.hosts
    fields["restart_count"] = restart if restart is not None else outer.restart_count
    fields.update(extra)
    return _build(name, env, **fields)


# -- one parser per launcher ---------------------------------------------------------
# Each takes a mapping and returns a JobContext, or None when its variables are
# absent. Table-only launchers are a line; the others add what the table cannot say.


def parse_local(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """Our local launcher: all ranks on this machine (``DASK_RUNNERS_*``)."""
    env = environ
    if not all(var in env for var in LAUNCHER_VARIABLES["local"].detect):
        return None
    rank = _int(env, LOCAL_RANK_VAR, "local")
    size = _int(env, LOCAL_WORLD_SIZE_VAR, "local")
    return _from_table(
        "local", env, read_text,
        local_rank=rank, local_world_size=size, node_rank=0, num_nodes=1, hosts=("localhost",),
    )


def parse_torchrun(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """torchrun / ``torch.distributed.run`` workers (needs ``TORCHELASTIC_RUN_ID``,
    so that ``RANK``/``WORLD_SIZE`` exported by hand or by
    :meth:`JobContext.torch_distributed_env` are not taken for torchrun)."""
    return _from_table("torchrun", environ, read_text)


def parse_openmpi(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """Open MPI's ``mpirun`` (``OMPI_COMM_WORLD_*``); no node index is published."""
    return _from_table("openmpi", environ, read_text)


def parse_mvapich2(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """MVAPICH2's ``mpirun_rsh`` (``MV2_COMM_WORLD_*``)."""
    return _from_table("mvapich2", environ, read_text)


def parse_pals(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """HPE Cray PALS ``mpiexec``/``aprun`` (``PALS_*``), usually inside PBS,
    whose ``PBS_NODEFILE`` gives the hosts."""
    return _from_table("pals", environ, read_text)


def parse_jsrun(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """IBM LSF ``jsrun`` (``JSM_NAMESPACE_*``); hosts from ``LSB_MCPU_HOSTS``/``LSB_HOSTS``.

    Some sites list a launch node first there (Summit's ``batchN``); set
    ``MASTER_ADDR`` on such systems.
    """
    if not all(var in environ for var in LAUNCHER_VARIABLES["jsrun"].detect):
        return None
    return _from_table("jsrun", environ, read_text, hosts=_lsf_hosts(environ))


def parse_flux(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """Flux (``flux run``): ``FLUX_TASK_RANK``, ``FLUX_JOB_SIZE``, …; no host list."""
    return _from_table("flux", environ, read_text)


def parse_mpich(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """MPICH and Intel MPI's Hydra ``mpiexec`` (``PMI_RANK``, ``MPI_LOCALRANKID``, …)."""
    return _from_table("mpich", environ, read_text)


def parse_pmix(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """Any PMIx server (``PMIX_RANK``): the rank only; the size is not in the environment."""
    return _from_table("pmix", environ, read_text)


def parse_slurm(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """Slurm: a task of an ``srun`` step, or the batch script / ``salloc`` shell.

    In a step (``SLURM_STEP_ID`` set) every field is filled from the step's
    variables, falling back to the job's. In the batch script or an
    ``salloc`` shell there is no step: ``SLURM_PROCID=0`` and ``SLURM_NTASKS``
    there describe the allocation, not a launch of this process, so the
    per-task numbers are left ``None`` and only the job is described.

    Job arrays need nothing special: every array task has its own
    ``SLURM_JOB_ID``. In a heterogeneous step (``SLURM_HET_SIZE``, formerly
    ``SLURM_PACK_SIZE``, above 1) ``SLURM_PROCID`` is the rank and
    ``SLURM_STEP_NUM_TASKS`` "the number of processes in the job step or
    whole heterogeneous job step" (srun(1)), so rank and size span all
    components; per-component values carry a ``_HET_GROUP_<n>`` suffix and
    are not read. Heterogeneous steps could not be run on the test cluster.
    """
    env = environ
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if job_id is None:
        return None
    step_id = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID"))
    job_hosts = _hosts(env, "SLURM_JOB_NODELIST") or _hosts(env, "SLURM_NODELIST")
    common = dict(
        job_id=job_id,
        restart_count=_int(env, "SLURM_RESTART_COUNT", "slurm") or 0,
        cpus_per_task=_int(env, "SLURM_CPUS_PER_TASK", "slurm"),
    )
    if step_id is None:
        num_nodes = _int(env, "SLURM_JOB_NUM_NODES", "slurm") or _int(env, "SLURM_NNODES", "slurm")
        gpus = visible_gpus(env, ("SLURM_JOB_GPUS",))
        return _build("slurm", env, hosts=job_hosts, num_nodes=num_nodes, gpus=gpus, **common)
    hosts = _hosts(env, "SLURM_STEP_NODELIST") or job_hosts
    node_rank = _int(env, "SLURM_NODEID", "slurm")
    per_node = _tasks_per_node(env)
    return _build(
        "slurm", env,
        step_id=step_id,
        rank=_int(env, "SLURM_PROCID", "slurm"),
        world_size=_int(env, "SLURM_STEP_NUM_TASKS", "slurm") or _int(env, "SLURM_NTASKS", "slurm"),
        local_rank=_int(env, "SLURM_LOCALID", "slurm"),
        local_world_size=per_node[node_rank] if node_rank is not None and node_rank < len(per_node) else None,
        node_rank=node_rank,
        num_nodes=_int(env, "SLURM_STEP_NUM_NODES", "slurm") or (len(hosts) or None),
        hosts=hosts,
        gpus=visible_gpus(env, ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS")),
        **common,
    )


def _tasks_per_node(env: Mapping[str, str]) -> list[int]:
    for name in ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"):
        if env.get(name):
            try:
                return expand_tasks_per_node(env[name])
            except ValueError as e:
                raise LauncherEnvironmentError(f"{name} is not a valid per-node count list: {e}") from e
    return []


def parse_pbs(environ: Mapping[str, str], read_text: ReadText = _read_text) -> JobContext | None:
    """PBS Pro / Torque. Ranks come from ``pbsdsh``, one task per line of
    ``PBS_NODEFILE``: the rank is ``PBS_VNODENUM``, that line's index.

    ``read_text(path)`` reads the node file (tests pass their own). The batch
    script itself carries ``PBS_VNODENUM=0`` on Torque, so it looks like
    rank 0; start the ranks with ``pbsdsh`` (or an MPI launcher, detected
    first). ``pbsdsh -u`` (one task per node) is not told apart.
    """
    env = environ
    if "PBS_JOBID" not in env:
        return None
    lines = _pbs_nodefile(env, read_text)
    hosts = _unique(lines)
    rank = _int(env, "PBS_VNODENUM", "pbs")
    fields = dict(world_size=len(lines) or None, num_nodes=len(hosts) or None)
    if rank is not None and rank < len(lines):
        mine = lines[rank]
        fields.update(
            local_rank=lines[:rank].count(mine),
            local_world_size=lines.count(mine),
            node_rank=hosts.index(mine),
        )
    if rank is None:
        fields["world_size"] = None
    return _from_table("pbs", env, read_text, hosts=hosts, rank=rank, **fields)


def _pbs_nodefile(env: Mapping[str, str], read_text: ReadText) -> list[str]:
    """The lines of ``PBS_NODEFILE``, one host per slot; ``[]`` if unset."""
    path = env.get("PBS_NODEFILE")
    if not path:
        return []
    try:
        text = read_text(path)
    except OSError as e:
        raise LauncherEnvironmentError(f"PBS_NODEFILE={path} cannot be read: {e}") from e
    return [line.strip() for line in text.splitlines() if line.strip()]


def _lsf_hosts(env: Mapping[str, str]) -> tuple[str, ...]:
    """Hosts from ``LSB_MCPU_HOSTS`` (``host n host n …``) or ``LSB_HOSTS`` (one per slot)."""
    if env.get("LSB_MCPU_HOSTS"):
        return _unique(env["LSB_MCPU_HOSTS"].split()[0::2])
    return _unique(env.get("LSB_HOSTS", "").split())


# -- registry and detection ----------------------------------------------------------

Parser = Callable[..., "JobContext | None"]

#: Parsers by launcher name. A later runner registry builds on these names.
PARSERS: dict[str, Parser] = {
    "local": parse_local,
    "torchrun": parse_torchrun,
    "openmpi": parse_openmpi,
    "mvapich2": parse_mvapich2,
    "pals": parse_pals,
    "jsrun": parse_jsrun,
    "flux": parse_flux,
    "mpich": parse_mpich,
    "pmix": parse_pmix,
    "slurm": parse_slurm,
    "pbs": parse_pbs,
}

#: The order :func:`detect` tries; see the module docstring for why.
DETECTION_ORDER: tuple[str, ...] = (
    "local", "torchrun",
    "openmpi", "mvapich2", "pals", "jsrun", "flux",
    "mpich", "pmix",
    "slurm", "pbs",
)

# Interfaces srun itself serves (srun --mpi=pmi2 / --mpi=pmix).
_SERVED_BY_SRUN = frozenset({"mpich", "pmix"})


def _slurm_step_agrees(context: JobContext, env: Mapping[str, str]) -> bool:
    """True if a Slurm step numbers this process as ``context`` does."""
    step = parse_slurm(env)
    return (
        step is not None
        and step.step_id is not None
        and step.rank == context.rank
        and context.world_size in (None, step.world_size)
    )


def detect(
    environ: Mapping[str, str] | None = None,
    launcher: str | None = None,
    *,
    read_text: ReadText = _read_text,
) -> JobContext:
    """The :class:`JobContext` of this process.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read; default ``os.environ``.
    launcher : str, optional
        Use this parser (a key of :data:`PARSERS`) instead of detecting one;
        default the ``DASK_RUNNERS_LAUNCHER`` variable, else detection in
        :data:`DETECTION_ORDER`.
    read_text : callable, optional
        Reads a file given its path (PBS node files); for tests.

    Raises
    ------
    LauncherEnvironmentError
        If the chosen launcher's variables are absent, the name is unknown,
        or no launcher is detected; the message lists what was looked for.
    """
    env = os.environ if environ is None else environ
    name = launcher or env.get(LAUNCHER_VAR) or None
    if name is not None:
        return _forced(name, env, read_text)
    for name in DETECTION_ORDER:
        context = PARSERS[name](env, read_text)
        if context is None:
            continue
        if name in _SERVED_BY_SRUN and _slurm_step_agrees(context, env):
            continue
        return context
    raise LauncherEnvironmentError(
        "No launcher found in the environment. Tried, in order:\n"
        + "\n".join(f"  {name}: {_looks_for(name)}" for name in DETECTION_ORDER)
        + f"\nStart the script with a launcher (`srun -n 4 python script.py`, `mpirun -n 4 …`), "
        f"or set {LAUNCHER_VAR} to one of: {', '.join(sorted(PARSERS))}."
    )


def _forced(name: str, env: Mapping[str, str], read_text: ReadText) -> JobContext:
    parser = PARSERS.get(name)
    if parser is None:
        raise LauncherEnvironmentError(f"unknown launcher {name!r}; known launchers: {', '.join(sorted(PARSERS))}")
    context = parser(env, read_text)
    if context is None:
        raise LauncherEnvironmentError(
            f"launcher {name!r} was chosen, but its variables are not set: it needs {_looks_for(name)}"
        )
    return context


def _looks_for(name: str) -> str:
    spec = LAUNCHER_VARIABLES.get(name)
    return " and ".join(spec.detect) if spec else "(see its parser)"


def current_job() -> JobContext:
    """The :class:`JobContext` of this process, from ``os.environ``.

    Nothing is cached: detection is cheap (it reads only the environment and,
    under PBS, the node file), and the environment can change within a
    process (a test, a torchrun restart).
    """
    return detect()
