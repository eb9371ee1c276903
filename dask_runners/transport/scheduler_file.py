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
* Only a file that only this user could have written is read
  (:mod:`dask_runners.transport.owned_files`): a regular file of ours that
  nobody else can write, and, for a file of this run, nobody else can read.
  A symbolic link, a FIFO, another user's file or a file open to others is
  ignored, with one warning naming its owner and mode. Under per-job TLS a
  file without credentials is ignored too. Every look runs in a thread, so
  no file blocks the event loop.
* The temporary file is created under an unpredictable name with
  ``O_EXCL | O_NOFOLLOW``: a name planted in the directory is never written
  through.
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
import json
import logging
import os
import socket
import string
import time
from pathlib import Path
from typing import NamedTuple

from ..config import backoff_delays, user_path
from ..exceptions import (
    ClusterNotFoundError,
    ConfigurationError,
    LauncherEnvironmentError,
    SchedulerFileError,
    SchedulerStartError,
)
from ..launchers import LOCAL_SCHEDULER_FILE_VAR
from . import Contact, Transport
from .guarded_scheme import guarded, unguarded
from .owned_files import (
    UntrustedFile,
    directory_problem,
    read_owned,
    shared_with_others,
    write_privately,
)
from .watch import watch_directory

logger = logging.getLogger(__name__)

#: The names a scheduler file's path may hold in braces.
PLACEHOLDERS = ("job_id", "step_id")

#: The scheduler file of a launch, in the working directory, unless told otherwise.
DEFAULT_SCHEDULER_FILE = "scheduler-{job_id}.{step_id}.json"


def scheduler_file_path(template, job, environ) -> Path:
    """Where the scheduler file of ``job`` goes: ``template`` with its ids filled in.

    The default template is unique to one launch. Under our local launcher
    it is the private file the launcher chose (``RUNNERS_SCHEDULER_FILE``);
    a launch without a step id is named by its job id alone; a launch
    without a job id needs a path given. ``~`` and environment variables are
    expanded.
    """
    template = str(user_path(template))
    known = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as e:  # an unmatched brace
        raise ConfigurationError(f"scheduler_file={template!r} is not a valid template ({e}); use {known}") from None
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        raise ConfigurationError(
            f"scheduler_file={template!r} holds {', '.join(f'{{{name}}}' for name in unknown)}; "
            f"the placeholders it may hold are {known}"
        )
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
    try:
        name = template.format(job_id=job.job_id, step_id=job.step_id)
    except (ValueError, IndexError) as e:  # a conversion or format spec that does not apply
        raise ConfigurationError(f"scheduler_file={template!r} is not a valid template ({e}); use {known}") from None
    return Path(name).absolute()


class FileState(NamedTuple):
    """What one look at the scheduler file found.

    ``kind`` is ``"missing"``, ``"partial"`` (unreadable or incomplete JSON),
    ``"untrusted"`` (not a file that only this user could have written, or
    without the credentials the job needs; ``error`` says why), ``"stale"``
    (written by another run), ``"invalid"`` (this run's stamp, but contents
    of the wrong types), ``"failed"`` (the scheduler rank of this run could
    not start; ``error`` says why) or ``"ready"``, with the scheduler's
    ``contact``.
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
    write_privately(path, json.dumps(payload).encode())


def publish_scheduler(path: Path, contact: Contact, scheduler, stamp: dict) -> None:
    """Write the running ``scheduler``'s file: its contact, id and dashboard port."""
    services = {"dashboard": scheduler.services["dashboard"].port} if "dashboard" in scheduler.services else {}
    extra = {"id": scheduler.id, "services": services}
    if contact.credentials is not None:
        extra["credentials"] = contact.credentials.to_dict()
    if contact.dashboard is not None:
        extra["dashboard"] = contact.dashboard.to_dict()
    address = contact.address if contact.credentials is None else guarded(contact.address)
    write_scheduler_file(path, address, stamp, extra=extra)


def look_once(path: Path, stamp: dict | None, credentials_required: bool = False) -> FileState:
    """Look once at ``path``: one ``open``, checks on the open file, one read.

    With ``stamp=None`` any complete scheduler file of ours is accepted,
    including one written by ``dask scheduler --scheduler-file`` or
    ``Scheduler(scheduler_file=...)``: that is how ranks join a scheduler
    started outside the job, whose freshness cannot be checked. A file of
    this run (``stamp`` given) must also be private to this user. This is
    blocking file work: call it off the event loop.
    """
    try:
        content = json.loads(read_owned(path, private=stamp is not None))
    except FileNotFoundError:
        return FileState("missing")
    except UntrustedFile as e:
        return FileState("untrusted", error=str(e))
    except PermissionError as e:
        return FileState("untrusted", error=f"{path}: cannot be opened ({e.strerror})")
    except (OSError, ValueError):
        return FileState("partial")
    if not isinstance(content, dict) or "address" not in content:
        return FileState("partial")
    if stamp is not None:
        ours = content.get("dask_runners")
        if not isinstance(ours, dict) or "stamp" not in ours:
            return FileState("partial")
        if ours["stamp"] != stamp:
            return FileState("stale", stamp=ours["stamp"])
    if content["address"] is None:
        return FileState("failed", stamp=stamp, error=str(content.get("error")))
    problem = _bad_contents(content)
    if problem:
        return FileState("invalid", stamp=stamp, error=f"{path}: {problem}")
    content["address"] = unguarded(content["address"])
    contact = Contact.from_dict(content, serves_control="dask_runners" in content)
    if credentials_required and contact.credentials is None:
        return FileState("untrusted", error=f"{path}: no credentials in it, and this job runs on TLS")
    return FileState("ready", contact=contact, stamp=stamp)


def _bad_contents(content: dict) -> str | None:
    """What is wrong with a scheduler file's address and credentials, if anything."""
    if not isinstance(content["address"], str):
        return f"the address is {content['address']!r}, not a string"
    credentials = content.get("credentials")
    if credentials is None:
        return None
    fields = ("certificate", "key")
    if not isinstance(credentials, dict) or set(credentials) != set(fields):
        return "the credentials are not an object of a certificate and a key"
    if not all(isinstance(credentials[field], str) for field in fields):
        return "the credentials' certificate and key are not strings"
    return None


class SchedulerFileReader:
    """Wait for a scheduler file with our stamp, remembering what was seen.

    Parameters
    ----------
    path : Path
        Where the scheduler writes the file.
    stamp : dict
        The identity of this run; files with another stamp are ignored.
    credentials_required : bool
        Ignore a file without credentials: the job runs on per-job TLS.
    """

    def __init__(self, path: Path, stamp: dict | None, credentials_required: bool = False):
        self.path = path
        self.stamp = stamp
        self.credentials_required = credentials_required
        self.looks = 0
        self.last: FileState = FileState("missing")
        self._warned: set[str] = set()

    async def wait(self) -> Contact:
        """Return the contact once a complete file with our stamp is there.

        Raises
        ------
        SchedulerStartError
            If the scheduler rank wrote that it could not start.
        SchedulerFileError
            If a file of this run holds contents of the wrong types.
        """
        delays = backoff_delays()
        watch = watch_directory(self.path.parent)
        sleep = asyncio.sleep if watch is None else watch.sleep
        try:
            while True:
                self.looks += 1
                self.last = await asyncio.to_thread(look_once, self.path, self.stamp, self.credentials_required)
                if self.last.kind == "ready":
                    return self.last.contact
                if self.last.kind == "failed":
                    raise SchedulerStartError(
                        f"the scheduler rank could not start: {self.last.error} "
                        f"(reported in {self.path}); see the scheduler rank's output"
                    )
                if self.last.kind == "invalid":
                    raise SchedulerFileError(f"the scheduler file of this run holds bad contents: {self.last.error}")
                if self.last.kind == "untrusted" and self.last.error not in self._warned:
                    self._warned.add(self.last.error)
                    logger.warning(
                        "ignoring %s: a scheduler file is used only if it is a regular file of yours that "
                        "nobody else can write (see the security page of the documentation)",
                        self.last.error,
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
            "untrusted": f"a file it does not trust, ignored ({self.last.error})",
            "invalid": f"bad contents ({self.last.error})",
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


def connect(scheduler_file, **client_kwargs):
    """Connect a client from outside the job, with the job's credentials.

    The file is read as the runners read it: only a regular file of yours
    that nobody else can write is used.

    Parameters
    ----------
    scheduler_file : str or Path
        The job's scheduler file (readable only by its owner); ``~`` and
        environment variables are expanded.
    **client_kwargs
        Passed to :class:`distributed.Client`.

    Returns
    -------
    distributed.Client

    Raises
    ------
    ClusterNotFoundError
        If there is no usable scheduler file at the path; the message says
        what was found instead.
    """
    from distributed import Client

    path = user_path(scheduler_file).absolute()
    state = look_once(path, None)
    if state.kind != "ready":
        found = {"missing": "no file there", "partial": "an incomplete or unreadable file"}.get(state.kind, state.error)
        raise ClusterNotFoundError(f"no running cluster's scheduler file at {path}: found {found}")
    if state.contact.credentials is not None:
        client_kwargs.setdefault("security", state.contact.credentials.security())
    return Client(state.contact.address, **client_kwargs)


class SchedulerFileTransport(Transport):
    """The scheduler's contact through a scheduler file on a shared filesystem.

    Parameters
    ----------
    path : Path
        The scheduler file.
    stamp : dict or None
        The identity of this launch, written into the file and required of
        it. ``None``: the file of a scheduler started outside the job, and
        any complete scheduler file of this user's there is trusted.
    """

    def __init__(self, path: Path, stamp: dict | None):
        self.path = path
        self.stamp = stamp
        self.reader = SchedulerFileReader(path, stamp)

    async def prepare(self, publishes: bool, credentials_required: bool) -> None:
        """Check the file's directory, on every rank, before anyone waits on it.

        When this launch's scheduler writes the file (``stamp`` given), the
        directory must exist and be writable; the publishing rank warns once
        if other users can create files there.
        """
        self.reader.credentials_required = credentials_required
        if self.stamp is None:
            return  # a scheduler started elsewhere: its directory may still be on its way
        problem = await asyncio.to_thread(directory_problem, self.path.parent, writable=True)
        if problem:
            raise SchedulerFileError(
                f"{problem}, so the scheduler file {self.path} cannot be written there: create "
                "the directory, or pass scheduler_file= a path on a filesystem that every node "
                "of the job sees"
            )
        if publishes:
            shared = await asyncio.to_thread(shared_with_others, self.path.parent)
            if shared:
                logger.warning(
                    "%s: other users can plant files there; the runner ignores every scheduler file "
                    "that is not yours alone, but they can remove yours (see the security page)",
                    shared,
                )

    async def publish(self, contact: Contact, scheduler) -> None:
        publish_scheduler(self.path, contact, scheduler, self.stamp)

    async def discover(self) -> Contact:
        return await self.reader.wait()

    def describe(self) -> str:
        return self.reader.describe()

    def report_failure(self, error: str) -> None:
        try:
            write_scheduler_file(self.path, None, self.stamp, extra={"error": error})
        except OSError as e:  # the waiting ranks find the same problem themselves
            logger.warning("could not report the failure in %s: %s", self.path, e)

    def withdraw(self) -> None:
        remove_scheduler_file(self.path, self.stamp)
