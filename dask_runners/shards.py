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
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path


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
    """

    def __init__(self, directory, shard_size: int = 1000):
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, not {shard_size}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        self._open: dict[int, object] = {}
        self._counts: dict[int, int] = {}
        self.finished: list[Path] = []

    def path(self, shard: int, partial: bool = False) -> Path:
        return self.directory / f"shard-{shard:05d}.jsonl{'.partial' if partial else ''}"

    def write(self, index: int, record: dict) -> None:
        """Append ``record`` (which holds ``index``) to its shard."""
        shard = index // self.shard_size
        line = json.dumps({"index": index, **record}, default=_to_json)
        stream = self._open.get(shard)
        if stream is None:
            stream = self._open[shard] = open(self.path(shard, partial=True), "w")
        stream.write(line + "\n")
        self._counts[shard] = self._counts.get(shard, 0) + 1
        if self._counts[shard] == self.shard_size:
            self._finish(shard)

    def close(self, complete: bool) -> None:
        """Close open shards; if ``complete``, the last (short) shard is finished too."""
        for shard in sorted(self._open):
            if complete:
                self._finish(shard)
            else:
                self._open.pop(shard).close()

    def _finish(self, shard: int) -> None:
        self._open.pop(shard).close()
        os.replace(self.path(shard, partial=True), self.path(shard))
        self.finished.append(self.path(shard))


def read_shards(directory) -> Iterator[dict]:
    """Yield the records of every finished shard in ``directory``, by index."""
    for path in sorted(Path(directory).glob("shard-*.jsonl")):
        with open(path) as stream:
            records = [json.loads(line) for line in stream if line.strip()]
        yield from sorted(records, key=lambda record: record["index"])
