"""Files on a shared filesystem that only this user could have written.

Job directories are often writable by a whole group, or by everyone. Another
user there can plant a file, a symbolic link or a FIFO at any name, and can
replace or remove files (unless the directory is sticky). So:

* :func:`write_privately` creates a temporary file under a name nobody can
  predict, with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600 from the
  start (never opening a path that already exists), writes it and renames it
  into place: a planted name is never written through, and a reader sees the
  old file, no file or the whole new one;
* :func:`append_privately` opens a log file the same careful way;
* :func:`read_owned` opens with ``O_NOFOLLOW | O_NONBLOCK`` (a symbolic link
  is refused, a FIFO never blocks), then checks the open file itself: a
  regular file, owned by this user, writable by nobody else, and of a
  bounded size. Anything else raises :class:`UntrustedFile`, which names the
  owner and the mode.

Both do blocking file work: call them off the event loop.
"""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import stat
from pathlib import Path

#: The largest file :func:`read_owned` reads; a scheduler file, credentials
#: included, is a few kilobytes.
MAX_BYTES = 1 << 20

_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class UntrustedFile(Exception):
    """A file that someone other than this user could have written, or that is no plain file."""

    def __init__(self, path: Path, why: str, st: os.stat_result | None = None):
        self.path = path
        self.why = why
        self.owner = None if st is None else owner_name(st.st_uid)
        self.mode = None if st is None else stat.S_IMODE(st.st_mode)
        seen = "" if st is None else f" (owner {self.owner}, mode {self.mode:04o})"
        super().__init__(f"{path}: {why}{seen}")


def owner_name(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` for a uid without a name."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def write_privately(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` atomically, mode 0600, through a name nobody could plant."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temporary, flags, 0o600)
    try:
        # Inherited ACLs or a mount's fixed file mode can override the mode
        # asked for at creation; what goes in may be a private key.
        os.fchmod(fd, 0o600)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            raise PermissionError(
                f"{temporary} was created with mode {mode:04o}, not 0600, on this filesystem; "
                "put the scheduler file on one that honours file modes"
            )
        with os.fdopen(fd, "wb") as f:
            fd = None
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        temporary.unlink(missing_ok=True)
        raise


def read_owned(path: Path, *, private: bool = False) -> bytes:
    """The content of ``path``, if only this user could have written it.

    Parameters
    ----------
    path : Path
        The file.
    private : bool
        Also require that nobody else can read it (mode 0600 or stricter).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    UntrustedFile
        If it is a symbolic link, not a regular file, owned by someone else,
        writable by group or others (readable too, with ``private``), or
        larger than :data:`MAX_BYTES`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UntrustedFile(path, "a symbolic link") from None
        raise
    try:
        st = _check_owned(fd, path, private)
        if st.st_size > MAX_BYTES:
            raise UntrustedFile(path, f"larger than {MAX_BYTES} bytes", st)
        chunks, size = [], 0
        while size <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BYTES:  # it grew after the fstat
            raise UntrustedFile(path, f"larger than {MAX_BYTES} bytes", st)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _check_owned(fd: int, path: Path, private: bool) -> os.stat_result:
    """The open file's status, if it is a regular file of this user's that nobody else may write."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UntrustedFile(path, f"{_KINDS.get(stat.S_IFMT(st.st_mode), 'not a regular file')}", st)
    if st.st_uid != os.geteuid():
        raise UntrustedFile(path, "owned by another user", st)
    if st.st_mode & 0o022:
        raise UntrustedFile(path, "writable by group or others", st)
    if private and st.st_mode & 0o044:
        raise UntrustedFile(path, "readable by group or others", st)
    return st


def append_privately(path: Path):
    """``path`` opened for appending text, created with mode 0600 if missing.

    A symbolic link, a FIFO (``O_NONBLOCK``: opening one never blocks), or
    a file that is not this user's alone raises :class:`UntrustedFile`.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UntrustedFile(path, "a symbolic link") from None
        if e.errno == errno.ENXIO:
            raise UntrustedFile(path, "a FIFO") from None
        raise
    try:
        _check_owned(fd, path, private=True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "a", buffering=1, encoding="utf-8")


def directory_problem(directory: Path, *, writable: bool) -> str | None:
    """What stops a scheduler file from living in ``directory``, or ``None``.

    ``writable``: this process must be able to create files there.
    """
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return f"the directory {directory} does not exist"
    except OSError as e:
        return f"the directory {directory} cannot be reached: {e.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{directory} is not a directory"
    if writable and not os.access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory} is not writable by this user ({owner_name(os.geteuid())})"
    return None


def shared_with_others(directory: Path) -> str | None:
    """Say so if users other than the owner can create files in ``directory``."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if not st.st_mode & 0o022:
        return None
    sticky = " (sticky: others cannot replace your files, but can take a name first)" if st.st_mode & stat.S_ISVTX else ""
    return (
        f"{directory} is writable by group or others (owner {owner_name(st.st_uid)}, "
        f"mode {stat.S_IMODE(st.st_mode):04o}){sticky}"
    )
