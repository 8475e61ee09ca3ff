"""The last-writer-wins map: a delta-state CRDT of LWW registers."""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView
from typing import Any, TypeAlias

from hlc import Timestamp

from ._merkle import ROOT, Digest, Entry, MerkleIndex, Prefix, key_position, unique_prefixes
from ._register import TOMBSTONE, LWWRegister
from ._values import Key, canonical_value, check_key

_MISSING: Any = object()
# `set` is also a method name inside LWWMap, so annotations there use this alias.
KeySet: TypeAlias = set[Key]


def _entry(ts: Timestamp, payload: bytes) -> Entry:
    if ts.__class__ is not Timestamp:
        raise TypeError(f"expected an hlc.Timestamp, got {type(ts).__name__}")
    return (ts.wall_ms, ts.logical, ts.node, payload)


class LWWMap:
    """A map from keys to last-writer-wins registers, with tombstones for deletes.

    A delta-state CRDT (Almeida, Shoker and Baquero, "Delta State Replicated Data
    Types", 2018): `set` and `delete` apply a write locally and return it as a delta,
    itself a one-entry LWWMap, which replicas ship and `merge` in any order, any number
    of times. Merge is a join: commutative, associative and idempotent, with the empty
    map as identity. Each key resolves as an `LWWRegister`: the greater timestamp wins,
    a tie goes to the greater canonical CBOR value, and a tombstone loses a tie.

    Keys are str, bytes, int (not bool), or tuples of those. Values are anything cbor2
    encodes; they are stored as canonical CBOR and read back decoded from those bytes,
    so every replica returns the same value (a tuple written comes back as a list).
    Values handed out are shared: treat them as immutable.

    Reads (`get`, ``in``, `len`, `items`) see live keys only and cost a dict lookup.
    ``==`` compares full state, tombstones included.

    Tombstones: a delete leaves a tombstone so the delete beats older writes that
    arrive later. `collect_tombstones` drops those older than a horizon. The risk:
    once a tombstone is gone, a replica that never saw the delete still holds the
    older value, and the next anti-entropy round brings it back (a resurrection).
    The horizon avoids it when every replica has seen every write older than it; the
    replication runtime guarantees this by collecting only what all live members'
    digests cover, and by making a replica cut off for longer than the horizon drop
    its state and re-sync instead of pushing it back.

    Anti-entropy: `digest` summarises tree nodes of a Merkle prefix tree (see
    `Digest`), and `diff` returns the entries under the tree nodes where a digest
    differs. `crdt.sync_start` / `crdt.sync_respond` descend the tree in rounds, so
    two replicas that differ in k keys exchange bytes that grow with k, not the size.

    Not thread-safe: one task or thread writes; see the transport layer for sharing.
    """

    __slots__ = ("__weakref__", "_index", "_live", "_regs")

    def __init__(self) -> None:
        self._regs: dict[Key, Entry] = {}
        self._live: dict[Key, Any] = {}
        self._index: MerkleIndex | None = None

    # -- writes -----------------------------------------------------------------

    def set(self, key: Key, value: Any, ts: Timestamp) -> LWWMap:
        """Write ``value`` under ``key`` at ``ts``, locally, and return the delta.

        Args:
            key: a str, bytes, int or tuple of those.
            value: a JSON-like value: None, bool, int (at most 1024 bits), float, str,
                bytes, lists, and dicts with str or bytes keys (see `crdt._values`).
            ts: the write's timestamp, normally ``hlc.now()``.

        Returns:
            The delta: a new one-entry LWWMap to ship to other replicas. If ``ts`` is
            not greater than the key's current timestamp the write loses here, and
            everywhere else, as LWW demands; the delta is returned all the same.

        Raises:
            TypeError: the key or value is of an unsupported type, or ``ts`` is not a
                Timestamp. Nothing is written.
        """
        check_key(key)
        payload, stored = canonical_value(value)
        return self._write(key, _entry(ts, payload), stored)

    def delete(self, key: Key, ts: Timestamp) -> LWWMap:
        """Delete ``key`` at ``ts`` (writing a tombstone), locally; return the delta.

        Deleting an absent key still writes a tombstone: it beats an older write of the
        key that is still on its way.

        Raises:
            TypeError: the key is of an unsupported type, or ``ts`` is not a Timestamp.
        """
        check_key(key)
        return self._write(key, _entry(ts, b""), _MISSING)

    def _write(self, key: Key, entry: Entry, value: Any) -> LWWMap:
        delta = LWWMap()
        delta._regs[key] = entry
        if entry[3]:
            delta._live[key] = value
        self.merge(delta)
        return delta

    def merge(self, other: LWWMap) -> KeySet:
        """Join ``other`` into this map, in place.

        Args:
            other: a full state or a delta from any replica.

        Returns:
            The keys whose visible value changed: added, updated to different bytes, or
            deleted. A key rewritten with the same value at a later timestamp is not
            included, nor is a tombstone replaced by a later tombstone.

        Raises:
            TypeError: ``other`` is not an LWWMap.
        """
        if not isinstance(other, LWWMap):
            raise TypeError(f"can only merge an LWWMap, not {type(other).__name__}")
        regs, live, other_live = self._regs, self._live, other._live
        dirty = self._index.dirty if self._index is not None else None
        if not regs:  # a joining replica: the join with the empty map is `other`
            regs.update(other._regs)
            live.update(other_live)
            if dirty is not None:
                dirty.update(regs)
            return set(live)
        changed: KeySet = set()
        for key, entry in other._regs.items():
            old = regs.get(key)
            if old is None:
                regs[key] = entry
                if entry[3]:
                    live[key] = other_live[key]
                    changed.add(key)
            elif entry > old:
                regs[key] = entry
                if entry[3] != old[3]:
                    changed.add(key)
                    if entry[3]:
                        live[key] = other_live[key]
                    else:
                        del live[key]
            else:
                continue
            if dirty is not None:
                dirty.add(key)
        return changed

    def collect_tombstones(
        self, before: Timestamp, keep: Callable[[Key], bool] | None = None
    ) -> int:
        """Drop every tombstone whose timestamp is less than ``before``, but those of
        the keys ``keep`` says to keep.

        Call it only with a horizon every replica has passed (see the class notes on
        resurrection). This is not a CRDT operation: it does not commute with merge.

        Args:
            before: the horizon.
            keep: called with each key whose tombstone would go; True keeps it (a
                layer above that joins this map with writes of its own, as
                `flags` schedules do, needs the tombstones of those keys).

        Returns:
            The number of tombstones dropped.
        """
        horizon = before.as_tuple()
        dead = [k for k, e in self._regs.items() if not e[3] and e[:3] < horizon]
        if keep is not None:
            dead = [k for k in dead if not keep(k)]
        for key in dead:
            del self._regs[key]
        if self._index is not None:
            self._index.dirty.update(dead)
        return len(dead)

    # -- reads ------------------------------------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """Return the live value of ``key``, or ``default`` when absent or deleted."""
        return self._live.get(key, default)

    def __getitem__(self, key: Key) -> Any:
        return self._live[key]

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._live)

    def keys(self) -> KeysView[Key]:
        """A live view of the keys that hold values (not tombstones)."""
        return self._live.keys()

    def items(self) -> ItemsView[Key, Any]:
        """A live view of ``(key, value)`` for keys that hold values."""
        return self._live.items()

    def register(self, key: Key) -> LWWRegister | None:
        """Return the key's register, a tombstone's included; None if never written."""
        entry = self._regs.get(key)
        if entry is None:
            return None
        value = self._live[key] if entry[3] else TOMBSTONE
        return LWWRegister(value, Timestamp(*entry[:3]))

    def timestamp(self, key: Key) -> Timestamp | None:
        """Return the timestamp of the key's last write or delete; None if never written."""
        entry = self._regs.get(key)
        return None if entry is None else Timestamp(*entry[:3])

    def entries(self) -> Iterator[tuple[Key, LWWRegister]]:
        """Yield ``(key, register)`` for every entry, tombstones included."""
        for key in list(self._regs):
            register = self.register(key)
            if register is not None:
                yield key, register

    @property
    def tombstone_count(self) -> int:
        """How many keys hold a tombstone."""
        return len(self._regs) - len(self._live)

    def max_timestamp(self) -> Timestamp | None:
        """Return the greatest timestamp of any entry (O(n)); None when empty."""
        if not self._regs:
            return None
        return Timestamp(*max(e[:3] for e in self._regs.values()))

    def copy(self) -> LWWMap:
        """Return an independent copy of the full state."""
        result = LWWMap()
        result._regs = dict(self._regs)
        result._live = dict(self._live)
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LWWMap):
            return NotImplemented
        return self._regs == other._regs

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"<LWWMap {len(self._live)} live, {self.tombstone_count} tombstones>"

    # -- anti-entropy -----------------------------------------------------------

    def _tree(self) -> MerkleIndex:
        if self._index is None:
            self._index = MerkleIndex(self._regs)
        self._index.refresh(self._regs)
        return self._index

    def digest(self, prefixes: Iterable[Prefix] = (ROOT,)) -> Digest:
        """Summarise tree nodes of this map (see `Digest`).

        Args:
            prefixes: the tree nodes to summarise, as ``(level, index)``; the root by
                default.

        Returns:
            A Digest with one ``(prefix, hash, count)`` per requested prefix.

        Raises:
            ValueError: a prefix is not a valid tree node.
        """
        tree = self._tree()
        return Digest([(p, *tree.summary(p)) for p in unique_prefixes(prefixes)])

    def diff(self, digest: Digest) -> LWWMap:
        """Return the delta a replica with ``digest`` may lack.

        Args:
            digest: another replica's `digest`.

        Returns:
            A new LWWMap with every entry of this map under each tree node whose
            summary differs from the digest's. Merged into the digest's replica, it
            gives that replica everything this one holds there; with a root digest
            that is the whole state whenever the two differ at all.
        """
        tree = self._tree()
        differ = [prefix for prefix, h, count in digest if tree.summary(prefix) != (h, count)]
        return self._subset(tree.keys_under(differ))

    def position_of(self, key: Key) -> int:
        """The key's 64-bit position in the Merkle tree (cached once the tree is built)."""
        if self._index is not None:
            leaf = self._index._leaves.get(key)
            if leaf is not None:
                return leaf[0]
        return key_position(key)

    def _subset(self, keys: Iterable[Key]) -> LWWMap:
        result = LWWMap()
        regs, live = self._regs, self._live
        for key in keys:
            entry = regs[key]
            result._regs[key] = entry
            if entry[3]:
                result._live[key] = live[key]
        return result
