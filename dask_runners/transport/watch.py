"""Wake a waiting reader when a file lands in a directory (Linux inotify).

A rank waiting for the scheduler file polls with backoff, so on average it
notices the file a fraction of its current polling interval late (the
lag is measured in docs/benchmarks-history.rst). On Linux, a rank on the scheduler's own node can be
woken by the kernel instead: the scheduler renames the file into place, and
inotify reports that rename to every watcher of the directory at once.

inotify sees only what happens through the local kernel: a shared filesystem
(NFS, Lustre, GPFS) does not report another node's rename. The polling
therefore stays, and the watch only cuts each sleep short. Where inotify is
missing or its per-user limits are used up, :func:`watch_directory` returns
``None`` and the reader polls as before.
"""

from __future__ import annotations

import asyncio
import os
import sys

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100


class DirectoryWatch:
    """An inotify watch on one directory, read from the running event loop.

    Use :func:`watch_directory`, then :meth:`sleep` in place of
    ``asyncio.sleep`` and :meth:`close` at the end.
    """

    def __init__(self, fd: int):
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            while os.read(self._fd, 4096):
                pass
        except BlockingIOError:
            pass
        self._changed.set()

    async def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less if a file lands in the directory."""
        try:
            await asyncio.wait_for(self._changed.wait(), delay)
        except asyncio.TimeoutError:
            pass
        self._changed.clear()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        os.close(self._fd)


def watch_directory(directory) -> DirectoryWatch | None:
    """Watch ``directory`` for files written or renamed into it; ``None`` if inotify is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here, not at import: only a waiting rank needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)  # this process's own symbols, libc's among them
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    except (OSError, AttributeError):
        return None
    if fd < 0:  # EMFILE: the per-user limit of inotify instances is reached
        return None
    mask = _IN_MOVED_TO | _IN_CLOSE_WRITE | _IN_CREATE
    if libc.inotify_add_watch(fd, os.fsencode(os.fspath(directory)), mask) < 0:
        os.close(fd)
        return None
    return DirectoryWatch(fd)
