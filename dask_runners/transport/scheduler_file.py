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
  (:mod:`dask_runners.transport.watch`); ranks on other nodes keep to the polling.
* The scheduler rank removes the file when the cluster has closed, unless the
  file at the path is no longer its own.
* A scheduler rank that fails to start writes its error instead of an
  address, so the waiting ranks fail at once with the reason. That file is
  left in place for the record; its stamp keeps later runs from trusting it.

The file is also a valid distributed scheduler file:
``Client(scheduler_file=path)`` reads its ``address``.

:class:`SchedulerFileTransport` is this protocol as a
:class:`~dask_runners.transport.Transport`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import time
from pathlib import Path

from ..config import backoff_delays
from ..exceptions import LauncherEnvironmentError, SchedulerStartError
from ..launchers import LOCAL_SCHEDULER_FILE_VAR
from . import Contact, Transport
from .watch import watch_directory

#: The scheduler file of a launch, in the working directory, unless told otherwise.
DEFAULT_SCHEDULER_FILE = "scheduler-{job_id}.{step_id}.json"


def scheduler_file_path(template, job, environ) -> Path:
    """Where the scheduler file of ``job`` goes: ``template`` with its ids filled in.

    The default template is unique to one launch. Under our local launcher
    it is the private file the launcher chose (``DASK_RUNNERS_SCHEDULER_FILE``);
    a launch without a step id is named by its job id alone; a launch
    without a job id needs a path given.
    """
    template = str(template)
    if template == DEFAULT_SCHEDULER_FILE and environ.get(LOCAL_SCHEDULER_FILE_VAR):
        template = environ[LOCAL_SCHEDULER_FILE_VAR]
    elif template == DEFAULT_SCHEDULER_FILE:
        if job.job_id is None:
            raise LauncherEnvironmentError(
                f"{job.launcher} gives no job id to name the scheduler file after; "
                "pass scheduler_file='/shared/path/scheduler.json' unique to this job"
            )
        if job.step_id is None:
            template = "scheduler-{job_id}.json"
    return Path(template.format(job_id=job.job_id, step_id=job.step_id)).absolute()


@dataclasses.dataclass(frozen=True)
class FileState:
    """What one look at the scheduler file found.

    ``kind`` is ``"missing"``, ``"partial"`` (unreadable or incomplete JSON),
    ``"stale"`` (written by another run), ``"failed"`` (the scheduler rank
    of this run could not start; ``error`` says why) or ``"ready"``, with
    the scheduler's ``contact``.
    """

    kind: str
    contact: Contact | None = None
    stamp: dict | None = None
    error: str | None = None


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


def publish_scheduler(path: Path, contact: Contact, scheduler, stamp: dict) -> None:
    """Write the running ``scheduler``'s file: its contact, id and dashboard port."""
    services = {"dashboard": scheduler.services["dashboard"].port} if "dashboard" in scheduler.services else {}
    extra = {"id": scheduler.id, "services": services}
    if contact.credentials is not None:
        extra["credentials"] = contact.credentials.to_dict()
    write_scheduler_file(path, contact.address, stamp, extra=extra)


def look_once(path: Path, stamp: dict | None) -> FileState:
    """Look once at ``path``: one ``open``, no separate ``stat``.

    With ``stamp=None`` any complete scheduler file is accepted, including
    one written by ``dask scheduler --scheduler-file`` or
    ``Scheduler(scheduler_file=...)``: that is how ranks join a scheduler
    started outside the job, whose freshness cannot be checked.
    """
    try:
        with open(path) as f:
            content = json.load(f)
        found = content["dask_runners"]["stamp"] if stamp is not None else stamp
        if found == stamp and content["address"] is not None:
            contact = Contact.from_dict(content, serves_control="dask_runners" in content)
    except FileNotFoundError:
        return FileState("missing")
    except (OSError, ValueError, KeyError, TypeError):
        return FileState("partial")
    if found != stamp:
        return FileState("stale", stamp=found)
    if content["address"] is None:
        return FileState("failed", stamp=found, error=str(content.get("error")))
    return FileState("ready", contact=contact, stamp=found)


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

    async def wait(self) -> Contact:
        """Return the contact once a complete file with our stamp is there.

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
                self.last = look_once(self.path, self.stamp)
                if self.last.kind == "ready":
                    return self.last.contact
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
    if look_once(path, stamp).kind == "ready":
        path.unlink(missing_ok=True)


class SchedulerFileTransport(Transport):
    """The scheduler's contact through a scheduler file on a shared filesystem.

    Parameters
    ----------
    path : Path
        The scheduler file.
    stamp : dict or None
        The identity of this launch, written into the file and required of
        it. ``None``: the file of a scheduler started outside the job, and
        any complete scheduler file there is trusted.
    """

    def __init__(self, path: Path, stamp: dict | None):
        self.path = path
        self.stamp = stamp
        self.reader = SchedulerFileReader(path, stamp)

    async def publish(self, contact: Contact, scheduler) -> None:
        publish_scheduler(self.path, contact, scheduler, self.stamp)

    async def discover(self) -> Contact:
        return await self.reader.wait()

    def describe(self) -> str:
        return self.reader.describe()

    def report_failure(self, error: str) -> None:
        write_scheduler_file(self.path, None, self.stamp, extra={"error": error})

    def withdraw(self) -> None:
        remove_scheduler_file(self.path, self.stamp)
