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


def key_position(key: Key) -> int:
    """Return the key's 64-bit position in the tree."""
    digest = hashlib.blake2b(encode_key(key), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def entry_hash(key: Key, entry: Entry) -> int:
    """Return the 64-bit hash of one entry: key, timestamp and value bytes."""
    wall_ms, logical, node, payload = entry
    node_bytes = node.encode("utf-8")
    h = hashlib.blake2b(encode_key(key), digest_size=8)
    h.update(wall_ms.to_bytes(8, "big"))
    h.update(logical.to_bytes(4, "big"))
    h.update(len(node_bytes).to_bytes(1, "big"))
    h.update(node_bytes)
    h.update(payload)
    return int.from_bytes(h.digest(), "big")


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

    __slots__ = ("_buckets", "_leaves", "_levels", "dirty")

    def __init__(self, entries: Mapping[Key, Entry]) -> None:
        # _levels[L][index] = [xor of entry hashes, number of entries]
        self._levels: list[dict[int, list[int]]] = [{} for _ in range(DEPTH + 1)]
        self._leaves: dict[Key, tuple[int, int]] = {}  # key -> (position, entry hash)
        self._buckets: dict[int, set[Key]] = {}  # leaf bucket index -> keys
        #: Keys whose entry changed since the last refresh.
        self.dirty: set[Key] = set(entries)

    def refresh(self, entries: Mapping[Key, Entry]) -> None:
        """Bring the tree up to date with ``entries`` for every dirty key."""
        if not self.dirty:
            return
        levels, leaves, buckets = self._levels, self._leaves, self._buckets
        shift = _POSITION_BITS - FANOUT_BITS * DEPTH
        for key in self.dirty:
            old = leaves.pop(key, None)
            if old is not None:
                position, old_hash = old
                bucket = position >> shift
                buckets[bucket].discard(key)
                if not buckets[bucket]:
                    del buckets[bucket]
                for level in range(DEPTH + 1):
                    index = bucket >> (FANOUT_BITS * (DEPTH - level))
                    node = levels[level][index]
                    node[0] ^= old_hash
                    node[1] -= 1
                    if not node[1]:
                        del levels[level][index]
            else:
                position = -1
            entry = entries.get(key)
            if entry is None:
                continue
            if position < 0:
                position = key_position(key)
            new_hash = entry_hash(key, entry)
            leaves[key] = (position, new_hash)
            bucket = position >> shift
            buckets.setdefault(bucket, set()).add(key)
            for level in range(DEPTH + 1):
                index = bucket >> (FANOUT_BITS * (DEPTH - level))
                summary = levels[level].get(index)
                if summary is None:
                    levels[level][index] = [new_hash, 1]
                else:
                    summary[0] ^= new_hash
                    summary[1] += 1
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

    def keys_under(self, prefix: Prefix) -> Iterator[Key]:
        """Yield every key under a tree node."""
        level, index = prefix
        span = FANOUT_BITS * (DEPTH - level)
        first, last = index << span, (index + 1) << span
        buckets = self._buckets
        if last - first <= len(buckets):
            for bucket in range(first, last):
                yield from buckets.get(bucket, ())
        else:
            for bucket, keys in buckets.items():
                if first <= bucket < last:
                    yield from keys


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
