"""The scheduler file: how the scheduler's address crosses a shared filesystem.

The protocol:

* The scheduler rank writes the file under a temporary name in the same
  directory and renames it into place, so a reader sees the old file, no file,
  or the whole new file, never half of one. The file is created owner-only
  (mode 0600).
* The file carries a *stamp*: the identity of the run that wrote it (for
  Slurm, the job id, step id and restart count). A reader accepts only a file
  whose stamp equals its own, so a file left by an earlier step, job or
  requeue at the same path is ignored instead of trusted.
* Readers poll with backoff (see :func:`dask_runners.config.backoff_delays`):
  the first look is immediate, later ones settle at two per second. Each look
  is a single ``open``; a missing, partial or stale file means "look again".
  On Linux a reader also watches the directory with inotify, which cuts a
  sleep short when a file lands there from the same node
  (:mod:`dask_runners.watch`); ranks on other nodes keep to the polling.
* The scheduler rank removes the file when the cluster has closed, unless the
  file at the path is no longer its own.
* A scheduler rank that fails to start writes its error instead of an
  address, so the waiting ranks fail at once with the reason. That file is
  left in place for the record; its stamp keeps later runs from trusting it.

The file is also a valid distributed scheduler file:
``Client(scheduler_file=path)`` reads its ``address``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import time
from pathlib import Path

from .config import backoff_delays
from .exceptions import SchedulerStartError
from .watch import watch_directory


@dataclasses.dataclass(frozen=True)
class FileState:
    """What one look at the scheduler file found.

    ``kind`` is ``"missing"``, ``"partial"`` (unreadable or incomplete JSON),
    ``"stale"`` (written by another run), ``"failed"`` (the scheduler rank
    of this run could not start; ``error`` says why) or ``"ready"``.
    ``ours`` tells a file written by a dask_runners scheduler, which serves
    the runners' control channel, from one written by any other scheduler.
    """

    kind: str
    address: str | None = None
    stamp: dict | None = None
    error: str | None = None
    credentials: dict | None = None
    ours: bool = False


def write_scheduler_file(path: Path, address: str | None, stamp: dict, extra: dict | None = None) -> None:
    """Atomically write ``address`` and ``stamp`` to ``path`` (mode 0600).

    A scheduler rank that cannot start writes ``address=None`` and an
    ``error`` in ``extra``, so that the waiting ranks fail at once with the
    reason instead of at their deadline.
    """
    payload = {
        "type": "Scheduler",
        "address": address,
        **(extra or {}),
        "dask_runners": {
            "stamp": stamp,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "written": time.time(),
        },
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def publish_scheduler(path: Path, scheduler, stamp: dict, credentials=None) -> None:
    """Write the running ``scheduler``'s file: address, dashboard port, credentials."""
    services = {"dashboard": scheduler.services["dashboard"].port} if "dashboard" in scheduler.services else {}
    extra = {"id": scheduler.id, "services": services}
    if credentials is not None:
        extra["credentials"] = credentials.to_dict()
    write_scheduler_file(path, scheduler.address, stamp, extra=extra)


def look(path: Path, stamp: dict | None) -> FileState:
    """Look once at ``path``: one ``open``, no separate ``stat``.

    With ``stamp=None`` any complete scheduler file is accepted, including
    one written by ``dask scheduler --scheduler-file`` or
    ``Scheduler(scheduler_file=...)``: that is how ranks join a scheduler
    started outside the job, whose freshness cannot be checked.
    """
    try:
        with open(path) as f:
            content = json.load(f)
        address = content["address"]
        found = content["dask_runners"]["stamp"] if stamp is not None else stamp
    except FileNotFoundError:
        return FileState("missing")
    except (OSError, ValueError, KeyError, TypeError):
        return FileState("partial")
    if found != stamp:
        return FileState("stale", stamp=found)
    if address is None:
        return FileState("failed", stamp=found, error=str(content.get("error")))
    return FileState(
        "ready", address=address, stamp=found, credentials=content.get("credentials"), ours="dask_runners" in content
    )


class SchedulerFileReader:
    """Wait for a scheduler file with our stamp, remembering what was seen.

    Parameters
    ----------
    path : Path
        Where the scheduler writes the file.
    stamp : dict
        The identity of this run; files with another stamp are ignored.
    """

    def __init__(self, path: Path, stamp: dict | None):
        self.path = path
        self.stamp = stamp
        self.looks = 0
        self.last: FileState = FileState("missing")

    async def wait(self) -> str:
        """Return the address once a complete file with our stamp is there.

        Raises
        ------
        SchedulerStartError
            If the scheduler rank wrote that it could not start.
        """
        delays = backoff_delays()
        watch = watch_directory(self.path.parent)
        sleep = asyncio.sleep if watch is None else watch.sleep
        try:
            while True:
                self.looks += 1
                self.last = look(self.path, self.stamp)
                if self.last.kind == "ready":
                    return self.last.address
                if self.last.kind == "failed":
                    raise SchedulerStartError(
                        f"the scheduler rank could not start: {self.last.error} "
                        f"(reported in {self.path}); see the scheduler rank's output"
                    )
                await sleep(next(delays))
        finally:
            if watch is not None:
                watch.close()

    def describe(self) -> str:
        """Say what was waited for and what the last look found."""
        seen = {
            "missing": "no file there",
            "partial": "an incomplete or unreadable file",
            "stale": f"a stale file from another run ({self.last.stamp}), ignored",
            "ready": "the file",
            "failed": f"the scheduler rank's failure: {self.last.error}",
        }[self.last.kind]
        return (
            f"the scheduler file {self.path} with stamp {self.stamp} "
            f"({self.looks} looks; last found {seen})"
        )


def remove_scheduler_file(path: Path, stamp: dict) -> None:
    """Remove ``path`` if it still holds the file stamped ``stamp``."""
    if look(path, stamp).kind == "ready":
        path.unlink(missing_ok=True)
