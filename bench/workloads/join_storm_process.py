"""What every process of a join storm shares (see ``bench/join_storm.py``).

The driver and its processes speak in lines. The driver writes one word on a
process's standard input (``go``, ``close``); the process answers with one
JSON object per line on its standard output, ``{"event": ..., ...}``.
Everything else a process says goes to its standard error, which the driver
keeps in a log file and searches for tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import sys
from pathlib import Path

#: Periodic work every worker does by itself. A real worker rank does it once
#: in its own process; hundreds of workers in one process would spend their
#: CPU on it hundreds of times over (as in ``bench/scaling.py``).
QUIET_WORKERS = {
    "distributed.worker.profile.enabled": False,  # a stack sample every 10 ms per worker
    "distributed.worker.profile.interval": "1h",
    "distributed.worker.profile.cycle": "2h",
    "distributed.admin.system-monitor.interval": "1h",  # psutil every 500 ms per worker
}


def raise_open_file_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def quiet_logging() -> None:
    """Show only warnings and errors, from distributed and from dask_runners."""
    for name in ("distributed", "dask_runners"):
        logging.getLogger(name).setLevel(logging.WARNING)


def cpu_seconds() -> float:
    """User and system CPU seconds of this process so far, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_memory_mb() -> float:
    """The most memory this process has held so far (peak resident set), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_descriptors() -> tuple[int, int]:
    """How many files this process has open, and how many of them are sockets."""
    fd_dir = Path("/proc/self/fd")
    files = sockets = 0
    for entry in fd_dir.iterdir():
        try:
            target = os.readlink(entry)
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        files += 1
        sockets += target.startswith("socket:")
    return files, sockets


def send(event: str, **fields) -> None:
    """Tell the driver ``event``, with ``fields``, on one line of standard output."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


async def driver_words() -> asyncio.StreamReader:
    """A reader of the words the driver writes on standard input, for this event loop."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def wait_for_word(words: asyncio.StreamReader, expected: str) -> None:
    """Wait until the driver writes ``expected``; the driver bounds the wait by its own deadline."""
    line = (await words.readline()).decode().strip()
    if line != expected:
        raise RuntimeError(f"waited for {expected!r} from the driver, got {line or 'the end of its pipe'!r}")


def load_credentials(path: str | None):
    """The :class:`~dask_runners.security.JobCredentials` in the JSON file at ``path``, or ``None``."""
    if not path:
        return None
    from dask_runners.security import JobCredentials

    return JobCredentials.from_dict(json.loads(Path(path).read_text()))
