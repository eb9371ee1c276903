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

import ast
import asyncio
import logging
import re
from pathlib import Path

import dask.config
from distributed.core import Status
from distributed.diagnostics.plugin import WorkerPlugin

from .config import user_path
from .roles import Role
from .transport.owned_files import UntrustedFile, append_privately

logger = logging.getLogger(__name__)

OURS = "dask_runners"
DISTRIBUTED = "distributed"
#: The libraries under distributed, whose rare messages (an error inside the
#: event loop, a future whose error nobody read) would otherwise reach the
#: terminal without a rank through Python's last-resort handler.
UNDERNEATH = ("asyncio", "tornado")
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
        return {OURS: ours, DISTRIBUTED: theirs, **dict.fromkeys(UNDERNEATH, logging.WARNING)}
    level = parse_level(setting)
    return {OURS: level, DISTRIBUTED: level, **dict.fromkeys(UNDERNEATH, level)}


def configure_rank_logging(role: Role, rank, *, level=None, directory=None) -> Path | None:
    """Set this process's logging up for one rank; return its log file, if any.

    ``level`` and ``directory`` default to ``runners.logging.level`` and
    ``runners.logging.directory``.
    """
    setting = dask.config.get("runners.logging.level") if level is None else level
    directory = dask.config.get("runners.logging.directory") if directory is None else directory
    levels = terminal_levels(role, setting)
    formatter = logging.Formatter(line_format(rank))
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
        if name != DISTRIBUTED:  # distributed has a handler of its own
            terminal = _terminal_handler()
            terminal.setFormatter(formatter)
            terminal.setLevel(shown)
            named.addHandler(terminal)
            named.propagate = False
        if file_handler is not None:
            named.addHandler(file_handler)
        named.setLevel(min(shown, logging.INFO) if file_handler is not None else shown)
    return log_file


class RankLogging(WorkerPlugin):
    """Sets up the logging of a nanny's worker process as its rank's (:func:`configure_rank_logging`).

    The process is a new one, whose ``import distributed`` set its logging
    up from the dask config before any plugin runs; :func:`nanny_child_environ`
    gives it the rank's line format and levels for those first lines.
    """

    name = "dask-runners-rank-logging"

    def __init__(self, rank):
        self.rank = rank

    def setup(self, worker) -> None:
        configure_rank_logging(Role.worker, self.rank)


def nanny_child_environ(rank) -> dict:
    """dask config under which a nanny spawns its worker process with the rank's log format and levels.

    ``distributed.nanny.pre-spawn-environ`` is set in the environment the
    process starts with, so its ``import distributed`` reads it; variables the
    user put there win.
    """
    levels = terminal_levels(Role.worker, dask.config.get("runners.logging.level"))
    environ = {
        "DASK_DISTRIBUTED__ADMIN__LOG_FORMAT": line_format(rank),
        "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED": logging.getLevelName(levels[DISTRIBUTED]).lower(),
    }
    given = dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}
    return {"distributed.nanny.pre-spawn-environ": {**environ, **given}}


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


# -- messages of a busy cluster's shutdown ---------------------------------------------
#
# The shutdown is ordered so that nothing that anyone still wants is cut
# (dask_runners.services.quiesce). What distributed still says at that point
# is noise about work nobody wants any more; the filters below drop or
# shorten exactly those records, and each says why it is harmless.

#: distributed's scheduler message for a report to a client whose connection has closed.
CLOSED_COMM = "Closed comm %r while trying to write %s"
# Compiled at first use (and then cached by ``re``): only the scheduler's rank reads it.
_LOST_TASKS = (
    r"(?s)^(Removing worker \S+ caused the cluster to lose )"
    r"(already computed task\(s\), which will be recomputed elsewhere|scattered data, which can't be recovered)"
    r": (.*) \((stimulus_id=\S*)\)$"
)


def drop_reports_to_departed_clients(record: logging.LogRecord) -> bool:
    """Drop the scheduler's CRITICAL for each result it could not report to a client that has left.

    A client that leaves right after submitting work closes its connection
    before a busy scheduler has read its goodbye; until the scheduler reads
    it, distributed logs a CRITICAL with a traceback for every result of that
    client's keys (hundreds when a map is in flight). The client asked for
    nothing more: it has gone. A client rank that dies is reported by the
    control channel instead (``the client rank vanished``).
    """
    if record.msg != CLOSED_COMM or not record.args:
        return True
    comm = getattr(record.args[0], "comm", None)
    return getattr(comm, "name", None) != "Scheduler->Client"


def shorten_lost_task_lists(record: logging.LogRecord) -> bool:
    """Replace the key list of distributed's "Removing worker ... lose ..." message by its length.

    After a client's or the scheduler's node is lost, every worker that leaves
    lists each key it held, which runs to kilobytes per line; how many is
    what a reader can use. The record keeps its level.
    """
    match = re.match(_LOST_TASKS, record.msg) if isinstance(record.msg, str) else None
    if match is not None:
        head, what, keys, stimulus = match.groups()
        record.msg = f"{head}{count_keys(keys)} {what} ({stimulus})"
        record.args = ()
    return True


def count_keys(text: str) -> str:
    """How many keys the printed set ``text`` holds ("some" if it cannot be read back).

    >>> count_keys("{'a', ('b', 1)}")
    '2'
    """
    try:
        return str(len(ast.literal_eval(text)))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "some"


class CancelledOnPurpose(logging.Filter):
    """Drop records of a ``CancelledError`` while ``on_purpose()`` says this process cancels on purpose.

    distributed logs any exception that leaves a handler, a cancellation
    included, at ERROR with a traceback. A server that is closing cancels its
    own background work (a graph still being built for a client that left);
    a worker rank told to stop while its worker starts cancels the start
    (a ``worker_setup`` still running). Neither is a failure.
    """

    def __init__(self, on_purpose=lambda: True):
        super().__init__()
        self.on_purpose = on_purpose

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, asyncio.CancelledError) and self.on_purpose())


def scheduler_log_filters(scheduler) -> list[tuple[str, object]]:
    """The filters a scheduler rank attaches for ``scheduler``: (logger name, filter) pairs."""
    closing = CancelledOnPurpose(lambda: scheduler.status in (Status.closing, Status.closed))
    return [
        ("distributed.scheduler", drop_reports_to_departed_clients),
        ("distributed.scheduler", shorten_lost_task_lists),
        ("distributed.scheduler", closing),
        ("distributed.core", closing),
    ]


def attach(filters) -> None:
    """Add each (logger name, filter) pair."""
    for name, log_filter in filters:
        logging.getLogger(name).addFilter(log_filter)


def detach(filters) -> None:
    """Remove each (logger name, filter) pair."""
    for name, log_filter in filters:
        logging.getLogger(name).removeFilter(log_filter)
