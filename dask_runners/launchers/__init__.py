"""What every launcher sets, says and expects: the one place launchers are known.

:func:`detect` returns a :class:`~dask_runners.job.JobContext` built by one
small, pure parser per launcher (:mod:`~dask_runners.launchers.parsers`).
What can be said as data is in :mod:`~dask_runners.launchers.table`:
:data:`LAUNCHER_VARIABLES` maps each field to the variable that holds it, per
launcher, and :data:`LAUNCH_FACTS` says how each launcher is typed and
whether it starts MPI programs. :func:`job_context` is the one function a
runner gets its context from.

Order of detection
------------------
Launchers nest: ``torchrun`` runs inside ``srun`` or ``mpirun``; ``mpirun``
runs inside ``sbatch``/``salloc`` and then carries the allocation's
``SLURM_*`` (and, on several nodes, those of the ``srun`` step that started
its daemons, with ``SLURM_PROCID`` numbering daemons, not ranks). The
innermost launcher is the one that numbered this process, so
:data:`DETECTION_ORDER` tries the innermost kinds first:

1. ``local`` -- our own launcher sets ``RUNNERS_RANK`` and ``RUNNERS_WORLD_SIZE``
   only for the processes it starts, wherever it runs.
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

An explicit choice always wins (:func:`chosen_launcher`):
``detect(launcher="slurm")``, else our local launcher naming itself
(``RUNNERS_LAUNCHER``, set for the processes it starts), else the dask config
key ``runners.launcher`` (``DASK_RUNNERS__LAUNCHER=slurm``). Parsers registered
in :data:`PARSERS` but not listed in :data:`DETECTION_ORDER` are used only when
chosen explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..config import config_value
from ..exceptions import LauncherEnvironmentError
from ..job import JobContext
from .parsers import (
    PARSERS,
    ReadText,
    _build,
    _read_text,
    parse_flux,
    parse_jsrun,
    parse_local,
    parse_mpich,
    parse_mvapich2,
    parse_openmpi,
    parse_pals,
    parse_pbs,
    parse_pmix,
    parse_slurm,
    parse_torchrun,
)
from .table import (
    LAUNCH_FACTS,
    LAUNCHER_VAR,
    LAUNCHER_VARIABLES,
    LOCAL_RANK_VAR,
    LOCAL_RUN_ID_VAR,
    LOCAL_SCHEDULER_FILE_VAR,
    LOCAL_WORLD_SIZE_VAR,
    LaunchFacts,
    LauncherVariables,
    launch_facts,
)
from .placement import exchanged_context

__all__ = [
    "DETECTION_ORDER",
    "LAUNCHER_VAR",
    "LAUNCHER_VARIABLES",
    "LAUNCH_FACTS",
    "LOCAL_RANK_VAR",
    "LOCAL_RUN_ID_VAR",
    "LOCAL_SCHEDULER_FILE_VAR",
    "LOCAL_WORLD_SIZE_VAR",
    "PARSERS",
    "LaunchFacts",
    "LauncherVariables",
    "chosen_launcher",
    "current_job",
    "detect",
    "job_context",
    "launch_facts",
    "parse_flux",
    "parse_jsrun",
    "parse_local",
    "parse_mpich",
    "parse_mvapich2",
    "parse_openmpi",
    "parse_pals",
    "parse_pbs",
    "parse_pmix",
    "parse_slurm",
    "parse_torchrun",
]


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


def chosen_launcher(environ: Mapping[str, str] | None = None, launcher: str | None = None) -> str | None:
    """The launcher named rather than detected, or ``None`` to detect one.

    In order: ``launcher``; ``RUNNERS_LAUNCHER`` in ``environ`` (our local
    launcher names itself for the processes it starts, whatever the config
    says); the dask config key ``runners.launcher``
    (``DASK_RUNNERS__LAUNCHER``, or the deprecated ``DASK_RUNNERS_LAUNCHER``
    in ``environ``, default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    return launcher or env.get(LAUNCHER_VAR) or config_value("runners.launcher", env) or None


def detect(
    environ: Mapping[str, str] | None = None,
    launcher: str | None = None,
    *,
    read_text: ReadText = _read_text,
) -> JobContext:
    """The :class:`~dask_runners.job.JobContext` of this process.

    Parameters
    ----------
    environ : mapping, optional
        The environment to read; default ``os.environ``.
    launcher : str, optional
        Use this parser (a key of :data:`PARSERS`) instead of detecting one;
        default :func:`chosen_launcher` (the dask config key
        ``runners.launcher``, ...), else detection in :data:`DETECTION_ORDER`.
    read_text : callable, optional
        Reads a file given its path (PBS node files); for tests.

    Raises
    ------
    LauncherEnvironmentError
        If the chosen launcher's variables are absent, the name is unknown,
        or no launcher is detected; the message lists what was looked for.
    """
    env = os.environ if environ is None else environ
    name = chosen_launcher(env, launcher)
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
        f"or name one with the dask config key runners.launcher (DASK_RUNNERS__LAUNCHER=...): "
        f"{', '.join(sorted(PARSERS))}."
    )


def _forced(name: str, env: Mapping[str, str], read_text: ReadText) -> JobContext:
    parser = PARSERS.get(name)
    if parser is None:
        raise LauncherEnvironmentError(f"unknown launcher {name!r}; known launchers: {', '.join(sorted(PARSERS))}")
    context = parser(env, read_text)
    if context is None:
        raise LauncherEnvironmentError(
            f"launcher {name!r} was chosen, but its variables are not set: it needs {_looks_for(name)}; "
            f"start the script through it ({launch_facts(name).hint(4)})"
        )
    return context


def _looks_for(name: str) -> str:
    spec = LAUNCHER_VARIABLES.get(name)
    return " and ".join(spec.detect) if spec else "(see its parser)"


def current_job() -> JobContext:
    """The :class:`~dask_runners.job.JobContext` of this process, from ``os.environ``.

    Nothing is cached: detection is cheap (it reads only the environment and,
    under PBS, the node file), and the environment can change within a
    process (a test, a torchrun restart).

    Under ``mpirun`` and ``mpiexec`` the environment names no hosts. Once an
    :class:`~dask_runners.MPIRunner` of this process has exchanged them over
    ``MPI_COMM_WORLD`` (or a duplicate of it), the context is completed from
    that exchange as ``runner.job`` is; before, or after an exchange over a
    sub-communicator, it is the environment's alone. It never runs a
    collective itself: called on one rank only, that would wait forever (see
    :mod:`~dask_runners.launchers.placement`).
    """
    return exchanged_context(detect(), os.environ)


def job_context(
    environ: Mapping[str, str] | None = None,
    launcher: str | None = None,
    *,
    numbering: tuple[int, int] | None = None,
    numbered_by: str = "mpi",
) -> JobContext:
    """The context a runner works with: the one function every runner gets it from.

    Parameters
    ----------
    environ, launcher
        As for :func:`detect`.
    numbering : (int, int), optional
        ``(rank, world_size)`` from something that numbers the processes
        itself: an MPI communicator, an in-process world. The launcher's
        context is kept when it numbers this process the same way; otherwise
        (a sub-communicator, an MPI library that is not the launcher's, no
        launcher at all) the context is the numbering alone, named
        ``numbered_by``, with the rendezvous variables and GPUs of the
        environment. An :class:`~dask_runners.MPIRunner` then completes it
        from its communicator (:mod:`~dask_runners.launchers.placement`).

    Raises
    ------
    LauncherEnvironmentError
        Without ``numbering``: no launcher is found, or it gives this process
        no rank and world size (the batch script itself, not a task); the
        message says how to launch instead.
    """
    if numbering is not None:
        try:
            job = detect(environ, launcher)
        except LauncherEnvironmentError:
            job = None
        if job is None or (job.rank, job.world_size) != numbering:
            rank, world_size = numbering
            job = _build(numbered_by, os.environ if environ is None else environ, rank=rank, world_size=world_size)
        return job
    job = detect(environ, launcher)
    if job.rank is None or job.world_size is None:
        raise LauncherEnvironmentError(
            f"{job.launcher} gives this process no rank and world size ({job.describe()}): "
            f"this looks like the batch script itself rather than one of the processes the "
            f"launcher started. Start the script through the launcher, one process per rank "
            f"({launch_facts(job.launcher).hint(4)})"
        )
    return job
