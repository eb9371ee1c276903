"""Expand Slurm's compressed host lists, such as ``node[01-04,07],gpu-[1-2]``.

The syntax, checked against ``scontrol show hostnames`` (Slurm 22.05):

- items are separated by commas or whitespace; empty items are skipped;
- an item is a name with zero or more bracket groups, ``rack[1-2]-node[01-02]``;
- a bracket group holds comma-separated numbers and ranges, ``[01-04,07]``;
- a range keeps the width of its lower bound, so ``[008-011]`` gives ``008 …
  011`` and ``[8-11]`` gives ``8 … 11``;
- with several groups in one item the last group varies fastest, as in Slurm:
  ``rack[1-2]-node[01-02]`` gives ``rack1-node01, rack1-node02, rack2-node01,
  rack2-node02``.

Unlike Slurm, which passes some malformed lists through as literal names,
:func:`expand_hostlist` rejects unbalanced brackets.
"""

from __future__ import annotations

import itertools
import re

__all__ = ["expand_hostlist", "expand_tasks_per_node"]

# Patterns, compiled at first use (and then cached by ``re``), not by every rank at import.
_RANGE = r"(\d+)(?:-(\d+))?"
_COUNT = r"(\d+)(?:\(x(\d+)\))?"


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm host list into host names, in Slurm's order.

    Parameters
    ----------
    text : str
        A host list such as ``SLURM_JOB_NODELIST``: ``node[01-04,07],gpu-[1-2]``.

    Returns
    -------
    list of str
        The host names; duplicates are kept, as Slurm keeps them.

    Raises
    ------
    ValueError
        If ``text`` is empty or malformed; the message names the input and the
        position of the fault.

    Examples
    --------
    >>> expand_hostlist("node[01-02,07],gpu-[1-2]")
    ['node01', 'node02', 'node07', 'gpu-1', 'gpu-2']
    """
    if not text or not text.strip():
        raise ValueError(f"empty host list: {text!r}")
    hosts: list[str] = []
    for start, item in _split_items(text):
        hosts.extend(_expand_item(text, start, item))
    return hosts


def _split_items(text: str) -> list[tuple[int, str]]:
    """Split at commas and whitespace outside brackets, with each item's offset."""
    items: list[tuple[int, str]] = []
    depth = 0
    start = 0
    for pos, char in enumerate(text):
        if char == "[":
            if depth:
                raise _error(text, pos, "nested '['")
            depth = 1
        elif char == "]":
            if not depth:
                raise _error(text, pos, "']' without a matching '['")
            depth = 0
        elif (char == "," or char.isspace()) and not depth:
            items.append((start, text[start:pos]))
            start = pos + 1
    if depth:
        raise _error(text, text.rindex("["), "'[' is never closed")
    items.append((start, text[start:]))
    return [(offset, item) for offset, item in items if item]


def _expand_item(text: str, offset: int, item: str) -> list[str]:
    """Expand one bracket-balanced item such as ``rack[1-2]-node[01-02]``."""
    parts = re.split(r"\[([^\]]*)\]", item)
    # parts alternates: literal, group, literal, group, …, literal
    literals = parts[0::2]
    groups = []
    pos = offset
    for index, group in enumerate(parts[1::2]):
        pos += len(literals[index]) + 1  # skip the literal and the '['
        groups.append(_expand_group(text, pos, group))
        pos += len(group) + 1  # skip the group and the ']'
    names = []
    for numbers in itertools.product(*groups):
        pieces = [literals[0]]
        for number, literal in zip(numbers, literals[1:]):
            pieces += [number, literal]
        names.append("".join(pieces))
    return names


def _expand_group(text: str, offset: int, group: str) -> list[str]:
    """Expand the inside of one bracket group, ``01-04,07``."""
    numbers: list[str] = []
    pos = offset
    for piece in group.split(","):
        match = re.fullmatch(_RANGE, piece)
        if match is None:
            raise _error(text, pos, f"expected a number or a range like 1-4 in brackets, got {piece!r}")
        low, high = match.group(1), match.group(2)
        if high is None:
            numbers.append(low)
        elif int(high) < int(low):
            raise _error(text, pos, f"reversed range {piece!r}")
        else:
            numbers.extend(str(n).zfill(len(low)) for n in range(int(low), int(high) + 1))
        pos += len(piece) + 1
    return numbers


def _error(text: str, pos: int, what: str) -> ValueError:
    return ValueError(f"invalid host list {text!r} at position {pos}: {what}")


def expand_tasks_per_node(text: str) -> list[int]:
    """Expand Slurm's per-node counts, ``2(x3),1``, into one count per node.

    This is the syntax of ``SLURM_STEP_TASKS_PER_NODE``, ``SLURM_TASKS_PER_NODE``
    and ``SLURM_JOB_CPUS_PER_NODE`` (srun(1)): ``count[(xnodes)]`` items
    separated by commas, in the order of the matching host list.

    Parameters
    ----------
    text : str
        For example ``"2(x3),1"``.

    Returns
    -------
    list of int
        For example ``[2, 2, 2, 1]``.

    Raises
    ------
    ValueError
        If ``text`` is empty or malformed, naming the input and the position.
    """
    if not text or not text.strip():
        raise ValueError(f"empty per-node count list: {text!r}")
    counts: list[int] = []
    pos = 0
    for piece in text.split(","):
        match = re.fullmatch(_COUNT, piece.strip())
        if match is None:
            raise ValueError(
                f"invalid per-node count list {text!r} at position {pos}: "
                f"expected a count like 2 or 2(x3), got {piece!r}"
            )
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
        pos += len(piece) + 1
    return counts
