"""Cluster-wide rate limits over a replicated map. Import them or copy them.

`RateLimiter`: fixed windows per key (an IP, a user, a tenant). Each node counts
its own admissions in its own slot ``(key, window, node_id)``: only that node writes
it, so an LWW entry holding an ever-growing count is a grow-only counter (a G-Counter
split across entries). The cluster-wide count of a key is the sum of the slots. A
request is admitted when that sum is below the limit.

Error bound: a node sees other nodes' admissions one replication delay late (a few
ms on a LAN: see the README's figures). So the cluster admits at most the limit plus
what the *other* nodes admitted within one replication delay of the moment the
limit was reached. With n nodes each admitting r requests/s and a delay d, that is
at most (n - 1) * r * d extra: 2 nodes * 1,000/s * 5 ms = 10 requests. During a
partition each side counts only what it sees: the bound then grows with the
partition's length.

`OwnerRoutedRateLimiter`: for exact limits while the cluster is healthy, each key's
requests are counted by its HRW owner alone (`Node.owner`): a non-owner forwards the
decision to the owner (the ``forward`` function: an HTTP call, an RPC), the pattern
of "Tracking cluster state with distributed Elixir". When the owner does not answer
within ``timeout_s``, the node decides locally with the slot counters: availability
first, exactness back as soon as the owner answers again.

Old windows' slots are deleted by their writers (`RateLimiter.sweep`, run by
`RateLimiter.run`), so memory stays bounded by keys times live windows times nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from crdt import Key
from transport import Node

log = logging.getLogger("chorus.examples.rate_limit")


class RateLimiter:
    """At most ``limit`` admissions per key per ``window_s`` seconds, cluster-wide.

    Args:
        node: the running node; use the limiter from its trio thread.
        limit: admissions allowed per key and window.
        window_s: the window, in seconds (windows are aligned on the wall clock).
        name: the replicated map holding the slots.
    """

    def __init__(self, node: Node, *, limit: int, window_s: float, name: str = "ratelimit") -> None:
        if limit < 0 or window_s <= 0:
            raise ValueError("limit must be >= 0 and window_s > 0")
        self._node = node
        self.limit = limit
        self._window_ms = int(window_s * 1000)
        self._map = node.map(name)
        self._counts: dict[tuple[Any, int], dict[str, int]] = {}
        for slot, count in list(self._map.items()):
            self._count(slot, count)
        self._map.subscribe(self._on_change)

    def window(self) -> int:
        """The current window's number."""
        return self._node.wall_ms() // self._window_ms

    def count(self, key: Key) -> int:
        """Admissions of ``key`` in the current window, as this node sees them."""
        return sum(self._counts.get((key, self.window()), {}).values())

    def allow(self, key: Key, cost: int = 1) -> bool:
        """Admit a request for ``key`` if the cluster-wide count allows it.

        Returns:
            True (and counts it) if admitted, False if over the limit.
        """
        window = self.window()
        slots = self._counts.get((key, window), {})
        if sum(slots.values()) + cost > self.limit:
            return False
        me = self._node.node_id
        self._map.set((key, window, me), slots.get(me, 0) + cost)
        return True

    def sweep(self) -> int:
        """Delete this node's slots of windows before the previous one; return how many."""
        oldest = self.window() - 1
        me = self._node.node_id
        slots: list[Any] = list(self._map.keys())
        old = [slot for slot in slots if slot[1] < oldest and slot[2] == me]
        for slot in old:
            self._map.delete(slot)
        return len(old)

    async def run(self, interval_s: float | None = None) -> None:
        """Sweep old windows periodically (every window by default), until cancelled."""
        while True:
            await trio.sleep(interval_s or self._window_ms / 1000)
            self.sweep()

    def _count(self, slot: Any, count: Any) -> None:
        if type(slot) is tuple and len(slot) == 3 and type(slot[1]) is int and type(slot[2]) is str:
            key, window, node = slot
            per_node = self._counts.setdefault((key, window), {})
            if count is None:
                per_node.pop(node, None)
                if not per_node:
                    del self._counts[(key, window)]
            elif type(count) is int:
                per_node[node] = count

    def _on_change(self, slots: frozenset[Any]) -> None:
        for slot in slots:
            self._count(slot, self._map.get(slot))


class OwnerRoutedRateLimiter:
    """Exact limits while healthy: each key is counted by its HRW owner alone.

    Args:
        node: the running node.
        local: the `RateLimiter` this node counts with (as owner, and as fallback).
        forward: ``await forward(owner_id, key)`` asks the owner to decide (returns
            its `RateLimiter.allow` answer); raise or hang to signal it is unreachable.
        timeout_s: how long to wait for the owner before deciding locally.
    """

    def __init__(
        self,
        node: Node,
        local: RateLimiter,
        forward: Callable[[str, Key], Awaitable[bool]],
        *,
        timeout_s: float = 0.2,
    ) -> None:
        self._node, self.local, self._forward, self._timeout_s = node, local, forward, timeout_s
        self.fallbacks = 0

    async def allow(self, key: Key) -> bool:
        owner = self._node.owner(key)
        if owner == self._node.node_id:
            return self.local.allow(key)
        try:
            with trio.fail_after(self._timeout_s):
                return await self._forward(owner, key)
        except (trio.TooSlowError, OSError, ConnectionError, RuntimeError) as exc:
            self.fallbacks += 1
            log.warning(
                "rate limit: owner %s of %r unreachable (%s); deciding locally", owner, key, exc
            )
            return self.local.allow(key)
