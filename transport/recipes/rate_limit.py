"""Cluster-wide rate limits over a replicated map, for trio and for threads.

`RateLimiter`: fixed windows per key (an IP, a user, a tenant), aligned on the
node's clock (`Node.wall_ms`). Each node counts its own admissions in its own slot
``(key, window, node_id)``: only that node writes it, so an LWW entry holding an
ever-growing count is a grow-only counter (a G-Counter split across entries:
Shapiro et al., "A comprehensive study of Convergent and Commutative Replicated
Data Types", 2011). The cluster-wide count of a key is the sum of the slots; a
request is admitted when that sum plus its cost is at most the limit.

Error bound: a node sees other nodes' admissions one replication delay late (a few
ms on a LAN). So the cluster admits at most the limit plus what the *other* nodes
admitted within one replication delay of the moment the limit was reached: with n
nodes each admitting r requests/s and a delay d, at most (n - 1) * r * d extra
(2 nodes * 1,000/s * 5 ms = 10 requests). During a partition each side counts only
what it sees: the bound then grows with the partition's length.

`OwnerRoutedRateLimiter`: exact while the cluster is healthy. Each key's requests
are decided by its owner alone, elected by HRW among the live nodes that serve the
routed limiter (they run `OwnerRoutedRateLimiter.run`: the service
``"ratelimit:<name>"``); the others ask the owner over `Node.call_owner`, the
pattern of "Tracking cluster state with distributed Elixir". The owner decides
with its `RateLimiter`, so its admissions are written to the replicated slots too.
When the owner cannot be reached, the node decides with its own `RateLimiter` on
the same slots (see `OwnerRoutedRateLimiter` for the bound).

Old windows' slots are deleted by their writers (`RateLimiter.sweep`, run by
`RateLimiter.run`), so memory stays bounded by keys times live windows times nodes.

`SyncRateLimiter` and `SyncOwnerRoutedRateLimiter` are the same over a
`BackgroundNode`, for threaded apps.
"""

from __future__ import annotations

import logging
from typing import Any, TypeGuard

import trio

from crdt import Key
from crdt._values import check_key, key_from_cbor
from transport import BackgroundNode, CallError, ForkedError, Node

from ._members import MemberSet
from ._sync import NodeTask, Serving

log = logging.getLogger("chorus.recipes.rate_limit")


def _check_cost(cost: object) -> int:
    if type(cost) is not int or cost < 1:
        raise ValueError(f"cost must be an int >= 1, got {cost!r}")
    return cost


class RateLimiter:
    """At most ``limit`` admissions (summed costs) per key and window, cluster-wide,
    within the bound in the module notes. Use it from the node's trio thread.

    Args:
        node: the running node.
        limit: admissions allowed per key and window (an int >= 0).
        window_s: the window, in seconds (at least 1 ms), aligned on the node's clock.
        name: the replicated map holding the slots.

    Raises:
        ValueError: ``limit`` or ``window_s`` out of range.
        TypeError: ``name`` is not a non-empty str.
    """

    def __init__(self, node: Node, *, limit: int, window_s: float, name: str = "ratelimit") -> None:
        if (
            type(limit) is not int
            or limit < 0
            or not 0.001 <= window_s <= 366 * 24 * 3600  # a year at most: a finite window
        ):
            raise ValueError(
                f"limit must be an int >= 0 and window_s from 0.001 to a year, got "
                f"{limit!r} and {window_s!r}"
            )
        self._node = node
        self.limit = limit
        self._window_ms = int(window_s * 1000)
        self._map = node.map(name)
        self._counts: dict[tuple[Any, int], dict[str, int]] = {}
        for slot, count in list(self._map.items()):
            self._count(slot, count)
        self._map.subscribe(self._on_change)

    @property
    def name(self) -> str:
        """The replicated map holding the slots."""
        return self._map.name

    @property
    def node(self) -> Node:
        return self._node

    def window(self) -> int:
        """The current window's number: the node's clock in ms // the window in ms."""
        return self._node.wall_ms() // self._window_ms

    def count(self, key: Key) -> int:
        """Admissions of ``key`` in the current window, as this node sees them.

        Safe from any thread: it copies one dict (a single operation under the GIL)
        and reads the clock."""
        return sum(self._counts.get((key, self.window()), {}).copy().values())

    def allow(self, key: Key, cost: int = 1) -> bool:
        """Admit a request for ``key`` if the cluster-wide count allows it.

        Args:
            key: what is limited (an IP, a user...): any key the map takes.
            cost: what the request counts for (an int >= 1).

        Returns:
            True (and counted) if admitted, False (and not counted) if over the limit.

        Raises:
            ValueError: ``cost`` is not an int >= 1.
            TypeError: ``key`` is of a type the map does not take.
            WriteRefused: the node takes no writes now (not ready). Nothing is
                counted when it raises.
        """
        _check_cost(cost)
        window = self.window()
        slots = self._counts.get((key, window), {})
        if sum(slots.values()) + cost > self.limit:
            return False
        me = self._node.node_id
        self._map.set((key, window, me), slots.get(me, 0) + cost)
        return True

    def sweep(self) -> int:
        """Delete this node's slots of windows before the previous one; return how many.

        Raises:
            WriteRefused: the node takes no writes now (`run` skips that sweep).
        """
        oldest = self.window() - 1
        me = self._node.node_id
        old = [
            slot
            for slot in list(self._map.keys())
            if _is_slot(slot) and slot[1] < oldest and slot[2] == me
        ]
        for slot in old:
            self._map.delete(slot)
        return len(old)

    async def run(
        self,
        interval_s: float | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Sweep old windows every ``interval_s`` seconds (default: one window), until
        cancelled."""
        task_status.started()
        while True:
            await trio.sleep(interval_s or self._window_ms / 1000)
            try:
                self.sweep()
            except RuntimeError as exc:  # WriteRefused: not ready now; retried
                log.debug("%s: sweep skipped (%s)", self.name, exc)

    def _count(self, slot: Any, count: Any) -> None:
        if _is_slot(slot):
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


def _is_slot(slot: Any) -> TypeGuard[tuple[Key, int, str]]:
    """True for a slot key ``(key, window, node_id)``."""
    return type(slot) is tuple and len(slot) == 3 and type(slot[1]) is int and type(slot[2]) is str


class OwnerRoutedRateLimiter:
    """Exact limits while healthy: each key is decided by its owner alone.

    Args:
        node: the running node; use the limiter from its trio thread.
        local: the `RateLimiter` this node counts with (as owner, and as fallback).
        timeout_s: how long, in seconds, to wait for the owner's answer before
            deciding here.
        max_concurrent: calls the owner answers at once (each is a dict lookup and
            a write); beyond, it answers `Overloaded` and the caller decides.

    Owners are elected among the live nodes running `run` for the same map (the
    service ``f"ratelimit:{local.name}"``); a node that does not, only asks.

    **Bound.** While every node reaches each key's owner, the cluster admits
    exactly ``limit`` per key and window. When a node cannot reach the owner (it
    crashed and is not declared down yet, it is cut off, overloaded, not ready, or
    no node serves: any `CallError`), the node decides with its own `RateLimiter`,
    which admits a request only while the sum of the key's slots it sees, its own
    included, stays within ``limit``, and counts the decision in `fallbacks`. When
    the call timed out, the owner may still have decided and counted the request
    (calls are at most once; only its answer was late): then it is counted twice,
    and the window admits fewer than ``limit``, never more. Replies slower than
    ``timeout_s`` (0.2 s by default, for one data center) make every request count
    twice, and half the limit admitted: give ``timeout_s`` room above the round
    trip to the owner. A
    node that has been cut off from the owner long enough to declare it down
    elects a new owner among the nodes it still sees, which decides the same way.
    So each node's own slot never exceeds ``limit`` per key and window, and:

    - with the owner crashed and the other nodes linked: every decider sees the
      others' slots (the dead owner's admissions included) one replication delay
      late, so the window admits at most ``limit`` plus what the deciders admitted
      within one replication delay (the bound of `RateLimiter`);
    - across N nodes cut off from each other: at most N * ``limit`` per key and
      window, each admitting its ``limit``;
    - for a moment after a node starts serving (a few ms: see `Node.call_owner`'s
      window), it and the old owner may both decide for a key: a few requests over;
    - a node killed (``kill -9``) before its admissions reached a peer takes them
      with it: a window in which the owner is killed and restarted k times admits up
      to ``limit`` per incarnation that owned the key, k + 1 times ``limit`` at worst.
    """

    def __init__(
        self,
        node: Node,
        local: RateLimiter,
        *,
        timeout_s: float = 0.2,
        max_concurrent: int = 1024,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        self._node, self.local, self._timeout_s = node, local, timeout_s
        self.members = MemberSet(
            node, f"ratelimit:{local.name}", handler=self._on_call, max_concurrent=max_concurrent
        )
        self.fallbacks = 0  # decisions made here because the owner could not be reached

    @property
    def service(self) -> str:
        """The service the nodes deciding for this limiter serve."""
        return self.members.service

    def owner(self, key: Key) -> str | None:
        """The node that decides for ``key``; None when no node serves the limiter."""
        return self.members.owner(key)

    async def allow(self, key: Key, cost: int = 1) -> bool:
        """Admit a request for ``key``: decided by its owner, or here as a fallback
        (see the bound in the class notes).

        Args:
            key: what is limited; any key the map takes.
            cost: what the request counts for (an int >= 1).

        Returns:
            True if admitted (and counted on the slots), False if over the limit.

        Raises:
            ValueError: ``cost`` is not an int >= 1; TypeError: a bad key. Nothing
                is asked or counted.
            WriteRefused: this node decides (as owner or fallback) and takes no
                writes now; nothing is counted.
        """
        _check_cost(cost)
        check_key(key)
        node = self._node
        if self.owner(key) == node.node_id:
            return self.local.allow(key, cost)
        try:
            result = await node.call_owner(
                key, self.service, [key, cost], timeout_s=self._timeout_s
            )
        except CallError as exc:
            self.fallbacks += 1
            log.debug("%s: deciding %r here: %s", self.local.name, key, exc)
            return self.local.allow(key, cost)
        return result.value is True

    async def _on_call(self, caller: str, payload: Any) -> bool:
        """Decide for a key this node owns, asked by ``caller``."""
        if type(payload) is not list or len(payload) != 2:
            raise ValueError("expected [key, cost]")
        return self.local.allow(key_from_cbor(payload[0]), _check_cost(payload[1]))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: this node is a candidate owner, and decides for
        the keys it owns (`MemberSet.run`). Run the local limiter's sweeper
        (`RateLimiter.run`) beside it."""
        await self.members.run(task_status=task_status)


class SyncRateLimiter(Serving):
    """A `RateLimiter` for threaded apps, over a running `BackgroundNode`.

    Made, it sweeps old windows (`RateLimiter.run`) until `close`; use it as a
    context manager, or close it before stopping the node. `allow` runs in the
    node's thread (one hop, `BackgroundNode.run_sync`), as it reads and writes
    together; `count` reads locally, from any thread.

    Args:
        background: the running node.
        limit, window_s, name: as for `RateLimiter`.

    Raises:
        RuntimeError: the node is not running.
        ValueError, TypeError: as for `RateLimiter`.
    """

    def __init__(
        self, background: BackgroundNode, *, limit: int, window_s: float, name: str = "ratelimit"
    ) -> None:
        self._background = background
        node = background.node
        self.limiter: RateLimiter = background.run_sync(
            lambda: RateLimiter(node, limit=limit, window_s=window_s, name=name)
        )
        self._task = NodeTask(background, self.limiter)
        self._forked_from: int | None = None
        background.on_fork(self._on_fork)

    @property
    def background(self) -> BackgroundNode:
        return self._background

    def allow(self, key: Key, cost: int = 1) -> bool:
        """Admit a request for ``key`` (see `RateLimiter.allow`).

        Raises:
            ValueError, TypeError, WriteRefused: in the caller, with nothing counted.
            RuntimeError: the node is not running.
        """
        allowed: bool = self._background.run_sync(self.limiter.allow, key, cost)
        return allowed

    def count(self, key: Key) -> int:
        """Admissions of ``key`` in the current window, as this node sees them: a
        local read, from any thread.

        Raises:
            ForkedError: this process was forked after the node started.
        """
        if self._forked_from is not None:
            raise ForkedError(self._forked_from)
        return self.limiter.count(key)

    def _on_fork(self, parent: int) -> None:
        self._forked_from = parent


class SyncOwnerRoutedRateLimiter(Serving):
    """An `OwnerRoutedRateLimiter` for threaded apps, over a `SyncRateLimiter`.

    Made, it serves (this node is a candidate owner) until `close`. `allow` blocks
    the calling thread while the node's thread decides (as owner) or asks the owner
    (a call over the cluster's transport, at most ``timeout_s``).

    Args:
        local: the `SyncRateLimiter` this node counts with.
        timeout_s, max_concurrent: as for `OwnerRoutedRateLimiter`.

    Raises:
        RuntimeError: the node is not running.
    """

    def __init__(
        self, local: SyncRateLimiter, *, timeout_s: float = 0.2, max_concurrent: int = 1024
    ) -> None:
        self.local = local
        limiter = local.limiter
        self.limiter: OwnerRoutedRateLimiter = local.background.run_sync(
            lambda: OwnerRoutedRateLimiter(
                limiter.node, limiter, timeout_s=timeout_s, max_concurrent=max_concurrent
            )
        )
        self.members = self.limiter.members
        self._task = NodeTask(local.background, self.limiter)

    @property
    def fallbacks(self) -> int:
        """Decisions made here because the owner could not be reached."""
        return self.limiter.fallbacks

    def owner(self, key: Key) -> str | None:
        """The node deciding for ``key`` (see `OwnerRoutedRateLimiter.owner`); one hop."""
        owner: str | None = self.local.background.run_sync(self.limiter.owner, key)
        return owner

    def allow(self, key: Key, cost: int = 1) -> bool:
        """Admit a request for ``key`` (see `OwnerRoutedRateLimiter.allow`).

        Raises:
            As `OwnerRoutedRateLimiter.allow`, in the caller.
            RuntimeError: the node is not running, or this is the node's thread.
        """
        allowed: bool = self.local.background.run(self.limiter.allow, key, cost)
        return allowed
