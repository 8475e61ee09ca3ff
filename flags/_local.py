"""LocalMap: the ReplicatedMap interface on one process, for unit tests and tools."""

from __future__ import annotations

import logging
from collections.abc import Callable, ItemsView, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from crdt import Key, LWWMap
from crdt._values import canonical_value, check_key
from hlc import HLC, Timestamp, system_wall_ms

log = logging.getLogger("chorus.flags")
Subscriber = Callable[[frozenset[Key]], None]


class LocalMap:
    """An in-process map with the same interface as `transport.ReplicatedMap`.

    Writes are stamped by its own HLC and applied to an `LWWMap`; `merge` takes a
    delta or full state from elsewhere (another LocalMap's `state`), so tests can
    play at replication without a network.

    Args:
        node_id: the id its HLC stamps writes with.
        wall_ms: the wall clock, in ms (default: the system clock).
    """

    def __init__(
        self, node_id: str = "local", *, wall_ms: Callable[[], int] = system_wall_ms
    ) -> None:
        self.node_id = node_id
        self._wall_ms = wall_ms
        self._keepers: list[Callable[[Key], bool]] = []
        self._clock = HLC(node_id, wall_ms=wall_ms)
        self._state = LWWMap()
        self._subscribers: list[Subscriber] = []

    def get(self, key: Key, default: Any = None) -> Any:
        return self._state.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._state

    def __len__(self) -> int:
        return len(self._state)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._state)

    def items(self) -> ItemsView[Key, Any]:
        return self._state.items()

    def timestamp(self, key: Key) -> Timestamp | None:
        return self._state.timestamp(key)

    def keep_tombstones(self, predicate: Callable[[Key], bool]) -> Callable[[], None]:
        """Keep the tombstones of the keys ``predicate`` holds for in
        `collect_tombstones` (see `transport.ReplicatedMap.keep_tombstones`)."""
        self._keepers.append(predicate)

        def stop() -> None:
            if predicate in self._keepers:
                self._keepers.remove(predicate)

        return stop

    def keeps_tombstone(self, key: Key) -> bool:
        """True when a predicate given to `keep_tombstones` keeps ``key``'s."""
        return any(keep(key) for keep in self._keepers)

    def collect_tombstones(self, before: Timestamp) -> int:
        """Drop the tombstones older than ``before``, as a node does once every
        replica has passed it, but those `keep_tombstones` keeps.

        Returns:
            How many were dropped.
        """
        return self._state.collect_tombstones(before, self.keeps_tombstone)

    def wall_ms(self) -> int:
        """The time in ms, as `transport.ReplicatedMap.wall_ms` tells it: the greater
        of the wall clock and the newest timestamp this map's clock has seen."""
        return max(self._wall_ms(), self._clock.last.wall_ms)

    def set(self, key: Key, value: Any) -> None:
        self._notify(self._state.merge(LWWMap().set(key, value, self._clock.now())))

    def check_writable(self, keys: Iterable[Key], *, values: Iterable[Any] = ()) -> None:
        """Raise what `set` would for a bad key or value (see
        `transport.ReplicatedMap.check_writable`); a LocalMap refuses nothing else."""
        for key in keys:
            check_key(key)
        for value in values:
            canonical_value(value)

    def delete(self, key: Key) -> None:
        self._notify(self._state.merge(LWWMap().delete(key, self._clock.now())))

    def update(self, sets: Mapping[Key, Any] | None = None, deletes: Iterable[Key] = ()) -> None:
        """Set and delete several keys as one change, one notification (see
        `transport.ReplicatedMap.update`)."""
        deleted = list(deletes)
        self.check_writable([*(sets or {}), *deleted], values=(sets or {}).values())
        delta = LWWMap()
        for key, value in (sets or {}).items():
            if key not in deleted:
                delta.set(key, value, self._clock.now())
        for key in deleted:
            delta.delete(key, self._clock.now())
        self._notify(self._state.merge(delta))

    def merge(self, other: LWWMap) -> None:
        """Merge a delta or full state, as a replica receiving it would."""
        newest = other.max_timestamp()
        if newest is not None:
            self._clock.update(newest)
        self._notify(self._state.merge(other))

    def state(self) -> LWWMap:
        """A copy of the full state, tombstones included."""
        return self._state.copy()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _notify(self, changed: AbstractSet[Key]) -> None:
        if changed:
            keys = frozenset(changed)
            for callback in list(self._subscribers):
                try:
                    callback(keys)
                except Exception:
                    log.exception("LocalMap %s: subscriber %r raised", self.node_id, callback)
