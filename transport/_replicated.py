"""ReplicatedMap: one named map of a Node, read locally, written everywhere."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, ItemsView, Iterable, Iterator, KeysView, Mapping
from typing import TYPE_CHECKING, Any

import trio

from crdt import Key
from hlc import Timestamp

if TYPE_CHECKING:
    from ._node import Node

log = logging.getLogger("chorus.node")

#: A change callback: receives the keys whose visible value changed.
Subscriber = Callable[[frozenset[Key]], None]


class ReplicatedMap:
    """A named map replicated to every node of the cluster (made by `Node.map`).

    Reads are local dict lookups, never a lock or a network call. Writes are stamped
    by the node's HLC, applied here at once, and broadcast as deltas; anti-entropy
    repairs whatever the network loses. Concurrent writes to a key resolve by
    last-writer-wins on HLC timestamps. Call from the node's trio thread.
    """

    __slots__ = ("_name", "_node", "_subscribers", "_values")

    def __init__(self, node: Node, name: str) -> None:
        self._node = node
        self._name = name
        self._values: dict[Key, Any] = {}
        self._subscribers: list[Subscriber] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def node_id(self) -> str:
        """The id of the node this map lives on."""
        return self._node.node_id

    def timestamp(self, key: Key) -> Timestamp | None:
        """The HLC timestamp of the key's last write or delete; None if never written."""
        return self._node._state.timestamp((self._name, key))

    def wall_ms(self) -> int:
        """The time, in ms since the Unix epoch, as this map's node tells it: the
        greater of its clock and the wall time of the newest HLC timestamp it has
        issued or accepted (so a node whose clock is behind reads at least the time
        of what it has heard). Call it in the node's trio thread."""
        return max(self._node._checked_wall_ms(), self._node.clock.last.wall_ms)

    def keep_tombstones(self, predicate: Callable[[Key], bool]) -> Callable[[], None]:
        """Keep the tombstones of this map's keys that ``predicate`` holds for, when
        the node collects the others (see `Node.keep_tombstones`).

        Returns:
            A function that stops keeping them.
        """
        name = self._name
        return self._node.keep_tombstones(lambda full: full[0] == name and predicate(full[1]))

    def start_soon(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``async_fn(*args)`` as a task of this map's node, cancelled when the
        node stops (what `flags.FlagStore` times its schedules with).

        Raises:
            RuntimeError: the node is not running.
        """
        self._node.start_soon(async_fn, *args)

    # -- reads ---------------------------------------------------------------------

    def get(self, key: Key, default: Any = None) -> Any:
        """Return the key's value, or ``default`` when absent or deleted."""
        return self._values.get(key, default)

    def __getitem__(self, key: Key) -> Any:
        return self._values[key]

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._values)

    def keys(self) -> KeysView[Key]:
        return self._values.keys()

    def items(self) -> ItemsView[Key, Any]:
        """A live view of ``(key, value)``; copy it before awaiting."""
        return self._values.items()

    # -- writes --------------------------------------------------------------------

    def set(self, key: Key, value: Any) -> None:
        """Write ``value`` under ``key`` on every node.

        Raises:
            TypeError: the key or value is of an unsupported type.
            ValueError: the encoded value is larger than the node's ``max_value_bytes``.
            WriteRefused: the node takes no writes now (not ready: joining, shutting
                down, or its clock is off); ``reason`` says which. Nothing is written.
            RuntimeError: called from outside the node's trio thread (use
                `BackgroundNode.map` or ``flags.connect`` there); nothing is written.
        """
        self._check_thread()
        self._node._write(self._name, key, value)

    def delete(self, key: Key) -> None:
        """Delete ``key`` on every node (a tombstone wins over older writes).

        Raises:
            TypeError: the key is of an unsupported type.
            WriteRefused, RuntimeError: as for `set`.
        """
        self._check_thread()
        self._node._write(self._name, key, None, delete=True)

    def update(self, sets: Mapping[Key, Any] | None = None, deletes: Iterable[Key] = ()) -> None:
        """Set and delete several keys as one change: one delta on the wire, one
        notification to subscribers with every key, and all of it or nothing.

        Every key and value is checked before anything is written, as `set` and
        `delete` check them; a key in both ``sets`` and ``deletes`` is deleted. The
        keys are stamped in order (``sets`` first), each after the one before.

        Raises:
            TypeError, ValueError, WriteRefused, RuntimeError: as for `set`;
                nothing is written.
        """
        self._check_thread()
        deleted = list(deletes)
        gone = set(deleted)
        writes = [(k, v, False) for k, v in (sets or {}).items() if k not in gone]
        writes += [(k, None, True) for k in dict.fromkeys(deleted)]
        if writes:
            self._node._write_many(self._name, writes)

    def check_writable(self, keys: Iterable[Key], *, values: Iterable[Any] = ()) -> None:
        """Raise what writes of ``keys`` and ``values`` would raise now, writing nothing.

        For a change made of several writes: call it first, then write with no
        ``await`` in between, and the change is applied whole or not at all.

        Args:
            keys: the keys the change sets or deletes.
            values: the values it sets (checked as `set` checks them).

        Raises:
            WriteRefused: the node takes no writes now, or one of the keys has an
                entry held back from too far in the future (see `set`).
            TypeError, ValueError: a key or value `set` would refuse (its type, or
                an encoded value over the node's ``max_value_bytes``).
            RuntimeError: as for `set`.
        """
        self._check_thread()
        for key in keys:
            self._node._check_write((self._name, key))
        for value in values:
            self._node._check_value(value)

    def _check_thread(self) -> None:
        if self._node._nursery is not None and not trio.lowlevel.in_trio_run():
            raise RuntimeError(
                "a ReplicatedMap is written from its node's trio thread only: from another "
                "thread use BackgroundNode.map(name).set, or flags.connect() for flags"
            )

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(keys)`` after each local or remote change to this map.

        ``keys`` is a frozenset of the keys whose visible value changed; read the new
        values with `get`. Callbacks run in the trio thread and must not block; an
        exception is logged and does not stop other callbacks.

        Returns:
            A function that unsubscribes ``callback``.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    # -- called by the node ----------------------------------------------------------

    def _apply(self, updates: dict[Key, Any], missing: object) -> None:
        values = self._values
        for key, value in updates.items():
            if value is missing:
                values.pop(key, None)
            else:
                values[key] = value
        if self._subscribers:
            keys = frozenset(updates)
            for callback in list(self._subscribers):
                try:
                    callback(keys)
                except Exception:
                    log.exception("map %r: subscriber %r raised", self._name, callback)

    def __repr__(self) -> str:
        return f"<ReplicatedMap {self._name!r} on {self._node.node_id!r}: {len(self)} keys>"
