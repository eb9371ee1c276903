"""One small, pure parser per launcher: a mapping in, a JobContext (or ``None``) out.

Each parser takes the environment as a mapping (tests pass plain dicts) and
returns ``None`` when its launcher's variables are absent. Table-only
launchers are a line over :data:`~dask_runners.launchers.table.LAUNCHER_VARIABLES`;
the others add what the table cannot say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NamedTuple

from ..exceptions import LauncherEnvironmentError
from ..hostlist import expand_hostlist, expand_tasks_per_node
from ..job import JobContext, default_master_port, visible_gpus
from .table import _INT_FIELDS, LAUNCHER_VARIABLES, LOCAL_RANK_VAR, LOCAL_WORLD_SIZE_VAR

ReadText = Callable[[str], str]


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


class _Allocation(NamedTuple):
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
    """A :class:`~dask_runners.job.JobContext` with the rendezvous address, port and GPUs filled in."""
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
    """Our local launcher: all ranks on this machine (``RUNNERS_RANK``, ``RUNNERS_WORLD_SIZE``)."""
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


Parser = Callable[..., "JobContext | None"]

#: Parsers by launcher name; :mod:`dask_runners.registry` serves these names.
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
