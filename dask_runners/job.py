"""Where this process sits in its parallel job: :class:`JobContext`.

A context is read from the launcher's environment by
:mod:`dask_runners.launchers`, which knows every launcher's variables; this
module holds the context itself and the pure helpers it is made with: the
devices a process may use and the rendezvous port of a launch.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Mapping

from .exceptions import LauncherEnvironmentError

__all__ = [
    "FALLBACK_MASTER_PORT",
    "JobContext",
    "default_master_port",
    "parse_device_list",
    "visible_gpus",
]

#: The port when neither ``MASTER_PORT`` nor a job id is known (torch's default).
FALLBACK_MASTER_PORT = 29500
#: Derived ports lie in ``[MASTER_PORT_BASE, MASTER_PORT_BASE + MASTER_PORT_SPAN)``.
MASTER_PORT_BASE = 20000
MASTER_PORT_SPAN = 10000

#: Variables that list the devices a process may use, most specific first.
VISIBLE_DEVICE_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")

_TORCH_REQUIRED = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")


@dataclasses.dataclass(frozen=True, repr=False)
class JobContext:
    """Where this process sits in its parallel job.

    Numbers are ``None`` when the launcher does not say; nothing is guessed.

    Attributes
    ----------
    launcher : str
        The name of the parser that built this context, a key of
        :data:`dask_runners.launchers.PARSERS`, or of what numbered the process
        (``mpi``, ``inprocess``; see :func:`dask_runners.launchers.job_context`).
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
        The hosts of the launch, expanded, in the launcher's order. MPI
        launchers do not publish their hosts: read from the environment, the
        hosts of the enclosing allocation, which may be more than the launch
        uses; in an :class:`~dask_runners.MPIRunner`, the hosts of the
        communicator's ranks, rank 0's first
        (:mod:`dask_runners.launchers.placement`).
    cpus_per_task : int or None
        CPUs allotted to each rank, when the launcher says.
    gpus : tuple of str
        Ids of the GPUs this process may use (see :func:`parse_device_list`).
    master_addr : str or None
        ``MASTER_ADDR`` if set, else the first host.
    master_port : int
        ``MASTER_PORT`` if set, else :func:`default_master_port`; in an
        :class:`~dask_runners.MPIRunner`, rank 0's on every rank.
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


def _pair(index, size) -> str:
    return f"{'?' if index is None else index}/{'?' if size is None else size}"


def _str(value) -> str | None:
    return None if value is None else str(value)


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
