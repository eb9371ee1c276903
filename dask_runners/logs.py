"""A log that a person reads at 1 000 ranks.

Every rank of a job writes to the same terminal (or ``slurm-<job>.out``).
With distributed's defaults a successful run prints about fifteen INFO lines
per rank, none saying which rank wrote it, and an error is lost among them.
A rank that owns its process (a synchronous runner) therefore sets its
logging up when it knows its role:

* every line says its rank: ``2026-12-02 10:00:00,000 - rank 3 - distributed.worker - WARNING - ...``;
* ``runners.logging.level: auto`` (the default): dask_runners' own messages
  at INFO on the scheduler and client ranks, at WARNING on worker ranks,
  and distributed's at WARNING on every rank. The client rank's ready line
  says what the cluster is. A level name (``info``, ``debug``, ...) sets
  every logger of every rank to it: the full log of earlier releases is
  ``runners.logging.level: info``;
* ``runners.logging.directory: DIR`` writes each rank's full log (INFO, or
  the level asked for when lower) to ``DIR/rank-<N>.log`` as well, while the
  terminal stays short.

A level that distributed's own config sets (``distributed.logging``) to
something other than its default is left as the user set it. Warnings and
errors are never hidden.
"""

from __future__ import annotations

import logging
from pathlib import Path

import dask.config

from .config import user_path
from .roles import Role
from .transport.owned_files import UntrustedFile, append_privately

logger = logging.getLogger(__name__)

OURS = "dask_runners"
DISTRIBUTED = "distributed"
#: distributed's own default level for its logger, which ``auto`` lowers to WARNING.
DISTRIBUTED_DEFAULT = "info"


def line_format(rank) -> str:
    """The format of a rank's log lines."""
    return f"%(asctime)s - rank {rank} - %(name)s - %(levelname)s - %(message)s"


def parse_level(value) -> int:
    """A logging level from a name or number; ``ValueError`` names the choices."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    level = logging.getLevelName(str(value).upper())
    if not isinstance(level, int):
        raise ValueError(
            f"runners.logging.level is {value!r}; use auto, debug, info, warning, error or critical"
        )
    return level


def terminal_levels(role: Role, setting) -> dict[str, int]:
    """The level each logger shows on the terminal, for ``role`` and the ``runners.logging.level`` value."""
    if setting in (None, "auto"):
        ours = logging.INFO if role in (Role.scheduler, Role.client) else logging.WARNING
        configured = dask.config.get("distributed.logging.distributed", DISTRIBUTED_DEFAULT)
        theirs = logging.WARNING if str(configured).lower() == DISTRIBUTED_DEFAULT else parse_level(configured)
        return {OURS: ours, DISTRIBUTED: theirs}
    level = parse_level(setting)
    return {OURS: level, DISTRIBUTED: level}


def configure_rank_logging(role: Role, rank, *, level=None, directory=None) -> Path | None:
    """Set this process's logging up for one rank; return its log file, if any.

    ``level`` and ``directory`` default to ``runners.logging.level`` and
    ``runners.logging.directory``.
    """
    setting = dask.config.get("runners.logging.level") if level is None else level
    directory = dask.config.get("runners.logging.directory") if directory is None else directory
    levels = terminal_levels(role, setting)
    formatter = logging.Formatter(line_format(rank))
    terminal = _terminal_handler()
    terminal.setFormatter(formatter)
    log_file, file_handler = None, None
    if directory:
        log_file, file_handler = _file_handler(user_path(directory), rank, formatter)
    for name, shown in levels.items():
        named = logging.getLogger(name)
        for handler in list(named.handlers):
            if getattr(handler, "_dask_runners", False):
                named.removeHandler(handler)
        for handler in named.handlers:  # distributed's own stream handler
            handler.setFormatter(formatter)
            handler.setLevel(shown)
        if name == OURS:
            terminal.setLevel(shown)
            named.addHandler(terminal)
            named.propagate = False
        if file_handler is not None:
            named.addHandler(file_handler)
        named.setLevel(min(shown, logging.INFO) if file_handler is not None else shown)
    return log_file


def _terminal_handler() -> logging.Handler:
    handler = logging.StreamHandler()
    handler._dask_runners = True
    return handler


def _file_handler(directory: Path, rank, formatter) -> tuple[Path | None, logging.Handler | None]:
    """A handler writing to ``directory/rank-<N>.log``, or none (with a warning) if that cannot be."""
    path = directory / f"rank-{rank}.log"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        stream = append_privately(path)
    except (OSError, UntrustedFile) as e:
        logger.warning("rank %s: cannot write its log to %s (%s); logging to the terminal only", rank, path, e)
        return None, None
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.setLevel(logging.NOTSET)
    handler._dask_runners = True
    return path, handler
