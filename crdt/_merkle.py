"""A Merkle prefix tree over key hashes, for digest anti-entropy.

Every key sits at a 64-bit position, the first 8 bytes of BLAKE2b over its canonical
CBOR. The tree has fan-out 16: a tree node at ``level`` L covers the keys whose
position starts with a given ``4 * L`` bits, called its `Prefix` ``(L, index)``. The
root is ``(0, 0)``; leaves are the buckets at level `DEPTH`, 65,536 of them.

Each tree node is summarised by ``(hash, count)``: the XOR of the 64-bit BLAKE2b hashes
of its entries (key, timestamp, value bytes) and how many entries it holds, tombstones
included. XOR lets one write update a summary in O(DEPTH) without touching the rest, as
in the Merkle trees of Dynamo and Cassandra's anti-entropy repair, kept incrementally
like delta_crdt_ex's MerkleMap.

The index is built lazily on the first digest and then kept current from a set of
dirty keys, so writes and merges pay only a set insertion.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import TypeAlias

import attrs

from ._values import Key, encode_key

#: Bits of the key position consumed by each tree level.
FANOUT_BITS = 4
#: Children per tree node.
FANOUT = 1 << FANOUT_BITS
#: The level of the leaf buckets.
DEPTH = 4
_POSITION_BITS = 64

#: A tree node: ``(level, index)``, the keys whose position starts with ``index``'s bits.
Prefix: TypeAlias = tuple[int, int]
#: The root of the tree, covering every key.
ROOT: Prefix = (0, 0)

# An entry as LWWMap stores it: (wall_ms, logical, node, payload).
Entry: TypeAlias = tuple[int, int, str, bytes]


_blake2b = hashlib.blake2b


def key_position(key: Key) -> int:
    """Return the key's 64-bit position in the tree."""
    return _position(encode_key(key))


def _position(key_bytes: bytes) -> int:
    # The first 8 bytes of BLAKE2b-512: cheaper than a digest_size argument.
    return int.from_bytes(_blake2b(key_bytes).digest()[:8], "big")


_HEAD = struct.Struct(">QIB")


def _entry_hash(key_bytes: bytes, entry: Entry) -> int:
    """The 64-bit hash of one entry: the key's canonical CBOR, timestamp and value bytes."""
    wall_ms, logical, node, payload = entry
    node_bytes = node.encode("utf-8")
    head = _HEAD.pack(wall_ms, logical, len(node_bytes))
    digest = _blake2b(b"".join((key_bytes, head, node_bytes, payload))).digest()
    return int.from_bytes(digest[:8], "big")


def check_prefix(prefix: object) -> Prefix:
    """Return ``prefix`` as a valid `Prefix`.

    Raises:
        ValueError: not a pair of ints with ``0 <= level <= DEPTH`` and an index that
            fits in ``FANOUT_BITS * level`` bits.
    """
    if (
        isinstance(prefix, (tuple, list))
        and len(prefix) == 2
        and type(prefix[0]) is int
        and type(prefix[1]) is int
        and 0 <= prefix[0] <= DEPTH
        and 0 <= prefix[1] < 1 << (FANOUT_BITS * prefix[0])
    ):
        return (prefix[0], prefix[1])
    raise ValueError(f"not a tree prefix (level 0..{DEPTH}, index): {prefix!r:.80}")


class MerkleIndex:
    """The incrementally maintained tree of one LWWMap (internal)."""

    __slots__ = ("_leaves", "_levels", "dirty")

    def __init__(self, entries: Mapping[Key, Entry]) -> None:
        # _levels[L][index] = [xor of entry hashes, number of entries]
        self._levels: list[dict[int, list[int]]] = [{} for _ in range(DEPTH + 1)]
        self._leaves: dict[Key, tuple[int, int]] = {}  # key -> (position, entry hash)
        #: Keys whose entry changed since the last refresh.
        self.dirty: set[Key] = set(entries)

    def refresh(self, entries: Mapping[Key, Entry]) -> None:
        """Bring the tree up to date with ``entries`` for every dirty key."""
        if not self.dirty:
            return
        if len(self.dirty) * 4 > len(entries) + len(self._leaves):
            self._rebuild(entries)
            return
        leaves = self._leaves
        shift = _POSITION_BITS - FANOUT_BITS * DEPTH
        shifts = [(level, FANOUT_BITS * (DEPTH - i)) for i, level in enumerate(self._levels)]
        for key in self.dirty:
            old = leaves.pop(key, None)
            entry = entries.get(key)
            if old is not None:
                position, old_hash = old
                bucket = position >> shift
                for level, span in shifts:
                    index = bucket >> span
                    summary = level[index]
                    summary[0] ^= old_hash
                    summary[1] -= 1
                    if not summary[1]:
                        del level[index]
            if entry is None:
                continue
            key_bytes = encode_key(key)
            if old is None:
                position = _position(key_bytes)
            new_hash = _entry_hash(key_bytes, entry)
            leaves[key] = (position, new_hash)
            bucket = position >> shift
            for level, span in shifts:
                index = bucket >> span
                found = level.get(index)
                if found is None:
                    level[index] = [new_hash, 1]
                else:
                    found[0] ^= new_hash
                    found[1] += 1
        self.dirty.clear()

    def _rebuild(self, entries: Mapping[Key, Entry]) -> None:
        """Build the whole tree from scratch: leaf buckets first, then each level above."""
        shift = _POSITION_BITS - FANOUT_BITS * DEPTH
        keys = list(entries)
        key_bytes = list(map(encode_key, keys))
        positions = list(map(_position, key_bytes))
        hashes = list(map(_entry_hash, key_bytes, entries.values()))
        bottom: dict[int, list[int]] = {}
        for position, new_hash in zip(positions, hashes, strict=True):
            summary = bottom.get(position >> shift)
            if summary is None:
                bottom[position >> shift] = [new_hash, 1]
            else:
                summary[0] ^= new_hash
                summary[1] += 1
        levels = [bottom]
        for _ in range(DEPTH):
            above: dict[int, list[int]] = {}
            for index, (h, count) in levels[-1].items():
                summary = above.get(index >> FANOUT_BITS)
                if summary is None:
                    above[index >> FANOUT_BITS] = [h, count]
                else:
                    summary[0] ^= h
                    summary[1] += count
            levels.append(above)
        levels.reverse()
        self._levels = levels
        self._leaves = dict(zip(keys, zip(positions, hashes, strict=True), strict=True))
        self.dirty.clear()

    def summary(self, prefix: Prefix) -> tuple[int, int]:
        """Return ``(hash, count)`` of a tree node; ``(0, 0)`` when it is empty."""
        node = self._levels[prefix[0]].get(prefix[1])
        return (0, 0) if node is None else (node[0], node[1])

    def children(self, prefix: Prefix) -> Iterator[tuple[Prefix, int, int]]:
        """Yield ``(child prefix, hash, count)`` for all FANOUT children of a tree node.

        Empty children are included as ``(0, 0)``: the other side may hold entries there.
        """
        level, index = prefix
        if level >= DEPTH:
            return
        below = self._levels[level + 1]
        for child in range(index << FANOUT_BITS, (index + 1) << FANOUT_BITS):
            node = below.get(child)
            if node is None:
                yield (level + 1, child), 0, 0
            else:
                yield (level + 1, child), node[0], node[1]

    def keys_under(self, prefixes: Iterable[Prefix]) -> list[Key]:
        """Every key under any of the given tree nodes, found in one pass.

        The tree keeps no key lists per node (they cost more to maintain than this
        pass, about 8 ms per 100,000 keys, costs once per sync step).
        """
        wanted: dict[int, set[int]] = {}
        for level, index in prefixes:
            if level == 0:
                return list(self._leaves)
            wanted.setdefault(level, set()).add(index)
        if not wanted:
            return []
        if len(wanted) == 1:
            ((level, indexes),) = wanted.items()
            span = _POSITION_BITS - FANOUT_BITS * level
            return [k for k, (p, _) in self._leaves.items() if p >> span in indexes]
        spans = [(_POSITION_BITS - FANOUT_BITS * level, idx) for level, idx in wanted.items()]
        return [k for k, (p, _) in self._leaves.items() if any(p >> s in idx for s, idx in spans)]


def unique_prefixes(prefixes: Iterable[object]) -> list[Prefix]:
    """Validate prefixes and drop repeats, keeping the first occurrence's order."""
    return list(dict.fromkeys(check_prefix(p) for p in prefixes))


def _to_summaries(items: Iterable[tuple[object, int, int]]) -> tuple[tuple[Prefix, int, int], ...]:
    return tuple((check_prefix(prefix), int(h), int(count)) for prefix, h, count in items)


@attrs.frozen
class Digest:
    """A compact summary of some tree nodes of an LWWMap, made by `LWWMap.digest`.

    Attributes:
        summaries: ``((prefix, hash, count), ...)``: for each summarised `Prefix`, the
            XOR of its entries' 64-bit hashes and its number of entries (tombstones
            included). An empty tree node is ``(prefix, 0, 0)``.

    A root-only digest is about 20 bytes of CBOR; each further summary about 17.
    """

    summaries: tuple[tuple[Prefix, int, int], ...] = attrs.field(converter=_to_summaries)

    def __len__(self) -> int:
        return len(self.summaries)

    def __iter__(self) -> Iterator[tuple[Prefix, int, int]]:
        return iter(self.summaries)
