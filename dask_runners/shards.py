"""Results as JSON Lines shards, for post-processing after a parallel map.

Items ``[k * shard_size, (k + 1) * shard_size)`` go to ``shard-{k:05d}.jsonl``
in the output directory, one JSON object per line::

    {"index": 17, "result": ...}
    {"index": 18, "error": "ValueError: bad input", "traceback": "..."}

Lines are appended as items finish, to ``shard-{k:05d}.jsonl.partial``; the
file is renamed to its final name when every item of its range is in. A
finished shard is therefore complete, a ``.partial`` one is what a stopped
run got done. Within a shard, lines are in the order items finished: sort by
``index`` when the order matters (:func:`read_shards` does).

**Resume.** A map run again into the same directory (see
:func:`open_shards`) skips every item that has a line there, in a finished or
a ``.partial`` shard, and appends the others. A line cut short by a process
that was killed while writing it (the last line of a ``.partial`` shard, with
no newline or no whole JSON object) is dropped, so its item runs again: after
any number of stops and resumes, every item has exactly one whole line.
``manifest.json`` records what the directory holds (the number of items,
the shard size, the function), so that a different map is not mixed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .config import user_path
from .exceptions import ConfigurationError

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
IF_EXISTS = ("resume", "restart", "error")


def _to_json(value):
    """JSON for what ``json`` does not know: numpy scalars and arrays, paths, sets."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(
        f"a result of type {type(value).__name__} cannot be written as JSON; "
        "return plain Python values (dict, list, str, numbers) or numpy values from the function"
    )


class ShardWriter:
    """Append records to per-range JSONL shards and close each when complete.

    Parameters
    ----------
    directory : str or Path
        Where the shards go; created if missing.
    shard_size : int
        How many consecutive item indices share a shard.
    total : int or None
        How many items the map has, if known: the last shard is then
        finished as soon as its last item is in.
    """

    def __init__(self, directory, shard_size: int = 1000, total: int | None = None):
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, not {shard_size}")
        self.directory = user_path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self.total = total
        self._open: dict[int, object] = {}
        self._counts: dict[int, int] = {}
        self.finished: list[Path] = []
        #: Indices that already have a line here (from earlier runs).
        self.done: set[int] = set()

    def path(self, shard: int, partial: bool = False) -> Path:
        return self.directory / f"shard-{shard:05d}.jsonl{'.partial' if partial else ''}"

    def expected(self, shard: int) -> int:
        """How many items shard ``shard`` holds when complete."""
        if self.total is None:
            return self.shard_size
        return max(0, min(self.shard_size, self.total - shard * self.shard_size))

    def take_in_earlier_runs(self) -> None:
        """Count the lines earlier runs left; drop a line cut short; finish shards that are complete."""
        for path in sorted(self.directory.glob("shard-*.jsonl")):
            self.done.update(index for index, _ in _whole_lines(path.read_bytes()))
        for path in sorted(self.directory.glob("shard-*.jsonl.partial")):
            raw = path.read_bytes()
            lines = [(index, line) for index, line in _whole_lines(raw) if index not in self.done]
            kept = b"".join(line for _, line in lines)
            if kept != raw:  # a torn or repeated line: write what is whole, atomically
                temporary = path.with_name(path.name + ".tmp")
                temporary.write_bytes(kept)
                os.replace(temporary, path)
            self.done.update(index for index, _ in lines)
            shard = _shard_number(path)
            self._counts[shard] = len(lines)
            if self._counts[shard] >= self.expected(shard):
                self._finish(shard)

    def write(self, index: int, record: dict) -> None:
        """Append ``record`` (which holds ``index``) to its shard."""
        shard = index // self.shard_size
        line = json.dumps({"index": index, **record}, default=_to_json)
        stream = self._open.get(shard)
        if stream is None:
            # Line-buffered: each whole line reaches the file as it is written,
            # so a killed process loses at most the line it was writing.
            stream = self._open[shard] = open(self.path(shard, partial=True), "a", buffering=1)
        stream.write(line + "\n")
        self._counts[shard] = self._counts.get(shard, 0) + 1
        if self._counts[shard] >= self.expected(shard):
            self._finish(shard)

    def close(self, complete: bool) -> None:
        """Close open shards; if ``complete``, every shard with lines is finished too."""
        for stream in self._open.values():
            stream.close()
        self._open.clear()
        if complete:
            for path in sorted(self.directory.glob("shard-*.jsonl.partial")):
                self._finish(_shard_number(path))

    def _finish(self, shard: int) -> None:
        stream = self._open.pop(shard, None)
        if stream is not None:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
        if self.path(shard, partial=True).exists():
            os.replace(self.path(shard, partial=True), self.path(shard))
            self.finished.append(self.path(shard))


def _shard_number(path: Path) -> int:
    """``k`` of ``shard-{k:05d}.jsonl[.partial]``."""
    return int(path.name[len("shard-"):].split(".")[0])


def _whole_lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """``(index, line)`` for every whole line of a shard, each index once; a torn line is left out."""
    seen = set()
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            continue
        try:
            index = json.loads(line)["index"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(index, int) and index not in seen:
            seen.add(index)
            yield index, line


def fingerprint(fn: Callable) -> str:
    """A cheap identity of a function: its qualified name and a hash of its code."""
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"
    code = getattr(fn, "__code__", None)
    if code is None:
        return name
    digest = hashlib.sha256()

    def add(code_object):
        digest.update(code_object.co_code)
        digest.update(repr(code_object.co_names).encode())
        for constant in code_object.co_consts:
            if hasattr(constant, "co_code"):
                add(constant)
            else:
                digest.update(repr(constant).encode())

    add(code)
    return f"{name}:{digest.hexdigest()[:16]}"


def open_shards(directory, shard_size: int, total: int | None, function: str, if_exists: str = "resume") -> ShardWriter:
    """The writer of a map's shards in ``directory``, resuming what is there.

    Parameters
    ----------
    directory : str or Path
        The output directory.
    shard_size, total : int
        The map's shard size and number of items (``None`` if unknown).
    function : str
        The map function's :func:`fingerprint`.
    if_exists : {"resume", "restart", "error"}
        What to do with results already in ``directory``: skip their items
        (default), delete them and start over, or refuse.

    Raises
    ------
    ConfigurationError
        If ``directory`` holds results of a different map (another number of
        items, shard size or function) and ``if_exists`` is not ``"restart"``,
        or holds any results and ``if_exists`` is ``"error"``.
    """
    if if_exists not in IF_EXISTS:
        raise ValueError(f"if_exists must be one of {IF_EXISTS}, not {if_exists!r}")
    directory = user_path(directory)
    writer = ShardWriter(directory, shard_size, total)
    wanted = {"format": 1, "items": total, "shard_size": shard_size, "function": function}
    manifest = directory / MANIFEST
    earlier = sorted(directory.glob("shard-*.jsonl*"))
    if if_exists == "restart":
        for path in earlier:
            path.unlink()
    elif earlier:
        if if_exists == "error":
            raise ConfigurationError(
                f"{directory} already holds {len(earlier)} shard(s); pass if_exists='resume' to skip "
                "their items or if_exists='restart' to start over"
            )
        found = json.loads(manifest.read_text()) if manifest.exists() else None
        differences = [
            f"{key} {found.get(key)!r} there, {value!r} now"
            for key, value in wanted.items() if found is not None and found.get(key) != value
        ]
        if found is None or differences:
            raise ConfigurationError(
                f"{directory} holds results of another map ({'; '.join(differences) or 'no manifest.json'}); "
                "pass if_exists='restart' to delete them and start over, or use another output_dir"
            )
        writer.take_in_earlier_runs()
    temporary = manifest.with_name(MANIFEST + ".tmp")
    temporary.write_text(json.dumps(wanted))
    os.replace(temporary, manifest)
    return writer


def read_shards(directory) -> Iterator[dict]:
    """Yield the records of every finished shard in ``directory``, by index."""
    for path in sorted(user_path(directory).glob("shard-*.jsonl")):
        with open(path) as stream:
            records = [json.loads(line) for line in stream if line.strip()]
        yield from sorted(records, key=lambda record: record["index"])
