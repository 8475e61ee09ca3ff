"""Cutting sync steps to a byte limit, and tracking what a joining replica received.

A step is cut into smaller steps that are each valid on their own, so the protocol
stays stateless: digest summaries, pulls and loose entries split anywhere, and a
complete tree node splits into its FANOUT children, each complete with its own
entries (empty children too: the receiver must learn that the sender holds nothing
there). Counting bytes rather than entries avoids the failure Akka Distributed Data
hit when one entry was larger than expected (akka/akka#22327).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ._merkle import DEPTH, FANOUT_BITS, ROOT, Digest, Prefix, key_position
from ._sync import SyncStep
from ._values import Key, encode_key

_POSITION_BITS = 64
#: The smallest message limit `split_step` accepts, in bytes.
MIN_MESSAGE_BYTES = 1024


def _under(position: int, prefix: Prefix) -> bool:
    level, index = prefix
    return position >> (_POSITION_BITS - FANOUT_BITS * level) == index


def _children(prefix: Prefix) -> list[Prefix]:
    level, index = prefix
    first = index << FANOUT_BITS
    return [(level + 1, child) for child in range(first, first + (1 << FANOUT_BITS))]


# Upper bounds, in bytes, of what each part of a step adds to its CBOR encoding
# (RFC 8949 heads are at most 9 bytes; see _codec for the layout).
_STEP_OVERHEAD = 160  # envelope, column heads, empty lists
_SUMMARY_BYTES = 4 * 9  # level, index, hash, count
_PREFIX_BYTES = 2 * 9
_ENTRY_FIXED = 8 + 4 + 4 + 1  # wall_ms, logical, node index, live flag


def _key_bytes(key: Key) -> int:
    if type(key) is str:
        size = len(key.encode("utf-8"))
        return size + (1 if size < 24 else 2 if size < 256 else 3 if size < 65536 else 5)
    return len(encode_key(key))


@attrs.define
class _Piece:
    """A part of a step that can travel in a message of its own (internal)."""

    kind: str  # "digest" | "pull" | "loose" | "complete"
    items: list[Any]  # summaries, prefixes, or keys
    size: int  # upper bound of its encoded bytes
    prefix: Prefix | None = None  # for "complete"


class _Splitter:
    def __init__(
        self, step: SyncStep, max_bytes: int, position_of: Callable[[Key], int] = key_position
    ) -> None:
        self.step, self.delta = step, step.delta
        regs = step.delta._regs
        self.entry_bytes = {
            key: _key_bytes(key) + len(entry[3]) + _ENTRY_FIXED for key, entry in regs.items()
        }
        nodes = {entry[2] for entry in regs.values()}
        overhead = _STEP_OVERHEAD + sum(len(n.encode("utf-8")) + 3 for n in nodes)
        self.budget = max_bytes - overhead
        self.positions = {key: position_of(key) for key in regs} if step.complete else {}

    def complete_piece(self, prefix: Prefix, keys: list[Key]) -> _Piece:
        size = _PREFIX_BYTES + sum(self.entry_bytes[k] for k in keys)
        return _Piece("complete", keys, size, prefix)

    def pieces(self) -> list[_Piece]:
        step, keys = self.step, list(self.delta._regs)
        result: list[_Piece] = []
        claimed: set[Key] = set()
        for prefix in step.complete:
            if prefix == ROOT:
                under = keys
            else:
                under = [k for k in keys if _under(self.positions[k], prefix)]
            claimed.update(under)
            result.append(self.complete_piece(prefix, under))
        loose = [k for k in keys if k not in claimed]
        if loose:
            result.append(_Piece("loose", loose, sum(self.entry_bytes[k] for k in loose)))
        if step.digest.summaries:
            summaries = list(step.digest.summaries)
            result.append(_Piece("digest", summaries, _SUMMARY_BYTES * len(summaries)))
        if step.pull:
            result.append(_Piece("pull", list(step.pull), _PREFIX_BYTES * len(step.pull)))
        return result

    def smaller(self, piece: _Piece) -> list[_Piece] | None:
        """Split a piece that is over budget, or None if it cannot be split."""
        if piece.kind == "complete":
            assert piece.prefix is not None
            if piece.prefix[0] >= DEPTH:
                return None
            span = _POSITION_BITS - FANOUT_BITS * (piece.prefix[0] + 1)
            groups: dict[int, list[Key]] = {}
            for key in piece.items:
                groups.setdefault(self.positions[key] >> span, []).append(key)
            return [
                self.complete_piece(child, groups.get(child[1], []))
                for child in _children(piece.prefix)
            ]
        if len(piece.items) < 2:
            return None
        middle = len(piece.items) // 2
        halves = piece.items[:middle], piece.items[middle:]
        if piece.kind == "loose":
            return [_Piece("loose", h, sum(self.entry_bytes[k] for k in h)) for h in halves]
        unit = _SUMMARY_BYTES if piece.kind == "digest" else _PREFIX_BYTES
        return [_Piece(piece.kind, h, unit * len(h)) for h in halves]

    def assemble(self, pieces: list[_Piece]) -> SyncStep:
        summaries: list[tuple[Prefix, int, int]] = []
        pull: list[Prefix] = []
        complete: list[Prefix] = []
        keys: list[Key] = []
        for piece in pieces:
            if piece.kind == "digest":
                summaries += piece.items
            elif piece.kind == "pull":
                pull += piece.items
            elif piece.kind == "loose":
                keys += piece.items
            else:
                assert piece.prefix is not None
                complete.append(piece.prefix)
                keys += piece.items
        return SyncStep(
            digest=Digest(summaries), delta=self.delta._subset(keys), complete=complete, pull=pull
        )

    def split(self, pieces: list[_Piece]) -> list[SyncStep]:
        todo = list(pieces)
        todo.reverse()
        steps: list[SyncStep] = []
        batch: list[_Piece] = []
        used = 0
        while todo:
            piece = todo.pop()
            if piece.size > self.budget:
                smaller = self.smaller(piece)
                if smaller is not None:
                    todo.extend(reversed(smaller))
                    continue
            if batch and used + piece.size > self.budget:
                steps.append(self.assemble(batch))
                batch, used = [], 0
            batch.append(piece)
            used += piece.size
        if batch:
            steps.append(self.assemble(batch))
        return steps


def split_step(
    step: SyncStep, max_bytes: int, *, position_of: Callable[[Key], int] = key_position
) -> list[SyncStep]:
    """Cut ``step`` into steps whose encodings are at most ``max_bytes`` each.

    Sizes are upper bounds computed per entry, so nothing is encoded twice.

    Args:
        step: any step.
        max_bytes: the largest encoded message allowed, in bytes.
        position_of: the key-position function (`LWWMap.position_of` reuses the
            replica's Merkle tree instead of hashing every key again).

    Raises:
        ValueError: ``max_bytes`` is under `MIN_MESSAGE_BYTES`.

    Returns:
        One or more steps that, received in any order, have the same effect as
        ``step`` (``[step]`` itself when it fits; ``[]`` when it is done). A piece that
        cannot be cut further (one entry, or a leaf bucket, over the limit) travels
        in a step of its own over the limit: callers bound the size of values so that
        this does not happen.
    """
    if max_bytes < MIN_MESSAGE_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_MESSAGE_BYTES}, got {max_bytes}")
    if step.done:
        return []
    splitter = _Splitter(step, max_bytes, position_of)
    pieces = splitter.pieces()
    if sum(p.size for p in pieces) <= splitter.budget:
        return [step]
    return splitter.split(pieces)


class Coverage:
    """The tree nodes a replica has received in full, to know when a pull is done.

    Add each prefix a `sync_pull` answer marks complete; `complete` turns True once
    they cover the whole key space, and `missing` lists what to pull again after a
    loss.
    """

    __slots__ = ("_covered",)

    def __init__(self) -> None:
        self._covered: set[Prefix] = set()

    def add(self, prefixes: Iterable[Prefix]) -> None:
        """Record tree nodes received in full."""
        self._covered.update(prefixes)

    @property
    def complete(self) -> bool:
        """True when the covered tree nodes span the whole key space."""
        return not self.missing(limit=1)

    def missing(self, limit: int | None = None) -> list[Prefix]:
        """The fewest tree nodes that, added, would complete the coverage.

        Args:
            limit: stop after this many (None: all of them).
        """
        found: list[Prefix] = []
        covered = self._covered
        # Tree nodes that lie strictly above some covered tree node: the walk must
        # descend through them; any other uncovered node is missing as a whole.
        above: set[Prefix] = set()
        for level, index in covered:
            for up in range(level):
                above.add((up, index >> (FANOUT_BITS * (level - up))))
        stack = [ROOT]
        while stack and (limit is None or len(found) < limit):
            prefix = stack.pop()
            if prefix in covered:
                continue
            if prefix in above:
                stack.extend(reversed(_children(prefix)))
            else:
                found.append(prefix)
        return found
