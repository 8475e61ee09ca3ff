"""A cluster-wide cache with TTL, over a replicated map. Import it or copy it.

    cache = ReplicatedCache(node)                  # inside the node's trio run
    nursery.start_soon(cache.run)                  # sweeps expired entries
    cache.set("user:42", profile, ttl_s=60)        # every node can read it
    profile = await cache.get_or_compute("user:42", load_profile, ttl_s=60)

Entries are ``[value, expires_ms]``, expiry on the HLC wall clock (ms since the
epoch). A read treats an expired entry as missing. Each node's sweeper deletes the
expired entries whose HRW owner it is, so the map does not grow without bound and
each entry is deleted once. `invalidate` and `clear` are deletes: cluster-wide.

`get_or_compute` with ``owner_only=True`` (the default) computes a missing value on
the key's owner only (rendezvous hashing over live members, `Node.owner`):

- when every node asks for a cold key at about the same time (a cache stampede,
  the case that matters), the owner computes it once and the others wait for its
  value, so the cluster computes it once, not once per node;
- a non-owner waits at most ``owner_wait_s`` for the value, then computes it
  itself. So when the owner is down (or nobody asked it), a caller pays that wait
  once; after the failure detector declares the owner down (3 s by default), HRW
  names a live owner and the cluster computes once per key again.

On each node, concurrent calls for the same key share one computation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from crdt import Key
from transport import Node

_MISSING: Any = object()


class ReplicatedCache:
    """A TTL cache shared by every node (see the module notes).

    Args:
        node: the running node; use the cache from its trio thread.
        name: the replicated map to keep entries in.
        owner_wait_s: how long a non-owner waits for the owner's value.
        sweep_interval_s: seconds between sweeps of expired entries.
    """

    def __init__(
        self,
        node: Node,
        name: str = "cache",
        *,
        owner_wait_s: float = 0.5,
        sweep_interval_s: float = 1.0,
    ) -> None:
        self._node = node
        self._map = node.map(name)
        self._owner_wait_s = owner_wait_s
        self._sweep_interval_s = sweep_interval_s
        self._waiters: dict[Key, trio.Event] = {}
        self._inflight: dict[Key, trio.Event] = {}
        self.computed = 0  # how many values this node computed (for tests and metrics)
        self._map.subscribe(self._on_change)

    def get(self, key: Key, default: Any = None) -> Any:
        """The cached value, or ``default`` when absent or expired."""
        entry = self._map.get(key)
        if entry is None or entry[1] <= self._node.wall_ms():
            return default
        return entry[0]

    def set(self, key: Key, value: Any, ttl_s: float) -> None:
        """Cache ``value`` on every node for ``ttl_s`` seconds.

        Raises:
            ValueError: ``ttl_s`` is not positive.
        """
        if not ttl_s > 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")
        self._map.set(key, [value, self._node.wall_ms() + int(ttl_s * 1000)])

    def invalidate(self, key: Key) -> None:
        """Remove ``key`` on every node."""
        self._map.delete(key)

    def clear(self) -> None:
        """Remove every entry on every node."""
        for key in list(self._map.keys()):
            self._map.delete(key)

    async def get_or_compute(
        self,
        key: Key,
        fn: Callable[[], Awaitable[Any]],
        ttl_s: float,
        *,
        owner_only: bool = True,
    ) -> Any:
        """Return the cached value, computing (and caching) it with ``fn`` if missing.

        Args:
            key: the key.
            fn: an async function computing the value.
            ttl_s: how long to cache a computed value, in seconds.
            owner_only: compute on the key's owner only (see the module notes).
        """
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        if owner_only and self._node.owner(key) != self._node.node_id:
            with trio.move_on_after(self._owner_wait_s):
                while True:
                    event = self._waiters.setdefault(key, trio.Event())
                    await event.wait()
                    hit = self.get(key, _MISSING)
                    if hit is not _MISSING:
                        return hit
        pending = self._inflight.get(key)
        if pending is not None:  # this node is computing it already: share that
            await pending.wait()
            hit = self.get(key, _MISSING)
            if hit is not _MISSING:
                return hit
        done = self._inflight[key] = trio.Event()
        try:
            value = await fn()
            self.computed += 1
            self.set(key, value, ttl_s)
            return value
        finally:
            del self._inflight[key]
            done.set()

    def sweep(self) -> int:
        """Delete the expired entries this node owns; return how many."""
        now, me = self._node.wall_ms(), self._node.node_id
        expired = [
            k
            for k, entry in list(self._map.items())
            if entry[1] <= now and self._node.owner(k) == me
        ]
        for key in expired:
            self._map.delete(key)
        return len(expired)

    async def run(self) -> None:
        """Sweep every ``sweep_interval_s`` seconds, until cancelled."""
        while True:
            await trio.sleep(self._sweep_interval_s)
            self.sweep()

    def _on_change(self, keys: frozenset[Key]) -> None:
        for key in keys:
            event = self._waiters.pop(key, None)
            if event is not None:
                event.set()

    def __len__(self) -> int:
        """Entries held, expired ones not yet swept included."""
        return len(self._map)
