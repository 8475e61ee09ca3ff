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
are counted by its owner alone, elected by HRW among the nodes that serve the
routed limiter (they run `OwnerRoutedRateLimiter.run`; see `MemberSet`); the
others forward the decision to the owner (the ``forward`` function: an HTTP call,
an RPC), the pattern of "Tracking cluster state with distributed Elixir". When
the owner does not answer within ``timeout_s``, the node decides locally with the
slot counters: availability first, exactness back once the owner answers again.

Old windows' slots are deleted by their writers (`RateLimiter.sweep`, run by
`RateLimiter.run`), so memory stays bounded by keys times live windows times nodes.

`SyncRateLimiter` and `SyncOwnerRoutedRateLimiter` are the same over a
`BackgroundNode`, for threaded apps.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

import trio

from crdt import Key
from transport import BackgroundNode, ForkedError, Node

from ._members import MemberSet
from ._sync import NodeTask, Serving

log = logging.getLogger("chorus.recipes.rate_limit")

#: The exceptions of a ``forward`` call that mean "the owner did not answer".
UNREACHABLE = (trio.TooSlowError, TimeoutError, OSError, ConnectionError, RuntimeError)


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
        if type(limit) is not int or limit < 0 or not window_s >= 0.001:
            raise ValueError(f"limit must be an int >= 0 and window_s >= 0.001, got {limit!r}")
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
        if type(cost) is not int or cost < 1:
            raise ValueError(f"cost must be an int >= 1, got {cost!r}")
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


def _route(members: MemberSet, local: RateLimiter, key: Key) -> bool | str:
    """Decide here if this node owns ``key`` (or no node serves): the decision, a
    bool. Else the owner's node id, to forward to."""
    owner = members.owner(key)
    if owner is None or owner == local.node.node_id:
        return local.allow(key)
    return owner


class OwnerRoutedRateLimiter:
    """Exact limits while healthy: each key is counted by its owner alone.

    Args:
        node: the running node; use the limiter from its trio thread.
        local: the `RateLimiter` this node counts with (as owner, and as fallback).
        forward: ``await forward(owner_id, key)`` asks the owner to decide (the owner
            answers with its local `RateLimiter.allow`); raising one of
            `UNREACHABLE` or hanging signals the owner is unreachable.
        timeout_s: how long, in seconds, to wait for the owner before deciding here.

    Owners are elected among the nodes running `run` on the same map (announced in
    ``f"{local.name}.members"``); a node that does not, only forwards.
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
        self.members = MemberSet(node, local.name)
        self.fallbacks = 0  # decisions made here because the owner did not answer

    def owner(self, key: Key) -> str | None:
        """The node that decides for ``key``; None when no node serves the limiter."""
        return self.members.owner(key)

    async def allow(self, key: Key) -> bool:
        """Admit a request for ``key``: decided by its owner, or here as a fallback.

        Raises:
            As `RateLimiter.allow` (when this node decides).
        """
        decided = _route(self.members, self.local, key)
        if isinstance(decided, bool):
            return decided
        try:
            with trio.fail_after(self._timeout_s):
                return bool(await self._forward(decided, key))
        except UNREACHABLE as exc:
            self.fallbacks += 1
            return _fall_back(self.local, decided, key, exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: this node is a candidate owner (`MemberSet.run`).
        Run the local limiter's sweeper (`RateLimiter.run`) beside it."""
        await self.members.run(task_status=task_status)


def _fall_back(local: RateLimiter, owner: str, key: Key, exc: BaseException) -> bool:
    log.warning("rate limit: owner %s of %r unreachable (%r); deciding locally", owner, key, exc)
    return local.allow(key)


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

    Made, it serves (this node is a candidate owner) until `close`. `allow` takes one
    hop to the node's thread, which decides when this node owns the key; else it
    calls ``forward`` in the calling thread.

    Args:
        local: the `SyncRateLimiter` this node counts with.
        forward: ``forward(owner_id, key)`` asks the owner to decide (the owner
            answers with its `SyncRateLimiter.allow`). It must bound its own time (an
            HTTP client's timeout); raising one of `UNREACHABLE` signals the owner is
            unreachable, and this node decides.

    Raises:
        RuntimeError: the node is not running.
    """

    def __init__(self, local: SyncRateLimiter, forward: Callable[[str, Key], bool]) -> None:
        self.local = local
        self._forward = forward
        limiter = local.limiter
        self.members: MemberSet = local.background.run_sync(
            lambda: MemberSet(limiter.node, limiter.name)
        )
        self._task = NodeTask(local.background, self.members)
        self.fallbacks = 0

    def allow(self, key: Key) -> bool:
        """Admit a request for ``key``: decided by its owner, or here as a fallback.

        Raises:
            As `SyncRateLimiter.allow` (when this node decides).
        """
        decided = self.local.background.run_sync(_route, self.members, self.local.limiter, key)
        if isinstance(decided, bool):
            return decided
        try:
            return bool(self._forward(decided, key))
        except UNREACHABLE as exc:
            allowed: bool = self.local.background.run_sync(self._fall_back, decided, key, exc)
            return allowed

    def _fall_back(self, owner: str, key: Key, exc: BaseException) -> bool:
        self.fallbacks += 1  # in the node's thread: no lost counts between threads
        return _fall_back(self.local.limiter, owner, key, exc)
