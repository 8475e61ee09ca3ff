"""A cluster-wide cache with TTL over a replicated map, for trio and for threads.

In trio, next to a running `Node`::

    cache = ReplicatedCache(node)
    await nursery.start(cache.run)        # serves: announces this node, sweeps
    cache.set("user:42", profile, ttl_s=60)
    profile = await cache.get_or_compute("user:42", load_profile, ttl_s=60)

From threads (Flask, Django, FastAPI) over a `BackgroundNode`::

    with SyncCache(background_node) as cache:
        profile = cache.get_or_compute("user:42", load_profile, ttl_s=60)

Entries are ``[value, expires_ms]``, with the expiry on the node's clock
(`Node.wall_ms`, ms since the epoch). A read treats an expired entry as missing.
`invalidate` and `clear` are deletes: cluster-wide.

**Owners.** Each key has an owner among the nodes that *serve* the cache (they
run `ReplicatedCache.run` or hold a `SyncCache` open on the same map): rendezvous
(HRW) hashing over those that are live and announced (see `MemberSet`). A node
that only reads flags, a ``chorus serve`` node for instance, never owns a key.
The owner sweeps its expired keys, so each is deleted once and the map does not
grow without bound.

**Stampedes.** `get_or_compute` computes a missing value on the key's owner only
(``owner_only=True``, the default), as memcache's leases do for a thundering herd
(Nishtala et al., "Scaling Memcache at Facebook", NSDI 2013):

- when every node asks for a cold key at about the same time, the owner computes
  it and the others wait for its value: the cluster computes it once;
- a node that is not the owner waits at most ``owner_wait_s`` for the value, then
  computes it itself. So when the owner is down (or nobody asked it), a caller pays
  that wait once; once the failure detector declares the owner down (3 s by
  default), the election names a live owner again. When no node serves the
  cache, every caller computes for itself.

Within one process, concurrent calls for a key share one computation (as Go's
``singleflight`` does). The election can differ between nodes for about one
replication delay after a node starts or stops serving, and for up to the failure
timeout after one crashes: a stampede in that window computes a key at most once
per distinct owner the nodes see. A node that stops serving while it refuses writes
(a clock step its peers have not confirmed yet) stays announced, so still owns keys
others wait for, until about ``refresh_s`` (1 s) after it takes writes again: it
withdraws then (`MemberSet.withdraw`). One that starts serving then announces itself
likewise.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from crdt import Key
from transport import BackgroundNode, Node, WriteRefused, rendezvous_owner

from ._members import MemberSet
from ._sync import NodeTask, Serving

_MISSING: Any = object()


def _check_ttl(ttl_s: float) -> int:
    """The TTL in ms; raises ValueError unless it is a positive, finite number of seconds."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s < math.inf:
        raise ValueError(f"ttl_s must be a positive, finite number of seconds, got {ttl_s!r}")
    return max(1, int(ttl_s * 1000))


def _fresh(entry: Any, now_ms: int) -> Any:
    """The value of a cache entry ``[value, expires_ms]`` not expired at ``now_ms``;
    `_MISSING` when absent, expired or not a cache entry."""
    if type(entry) is list and len(entry) == 2 and type(entry[1]) is int and entry[1] > now_ms:
        return entry[0]
    return _MISSING


class ReplicatedCache:
    """A TTL cache shared by every node (see the module notes). Use it from the
    node's trio thread.

    Args:
        node: the running node.
        name: the replicated map holding the entries; announcements of the nodes
            serving it go in ``f"{name}.members"``.
        owner_wait_s: how long, in seconds, a node that is not a key's owner waits
            for the owner's value before computing it itself.
        sweep_interval_s: seconds between sweeps of expired entries (in `run`).

    Raises:
        TypeError: ``name`` is not a non-empty str.
        ValueError: ``owner_wait_s`` is negative or ``sweep_interval_s`` not positive.
    """

    def __init__(
        self,
        node: Node,
        name: str = "cache",
        *,
        owner_wait_s: float = 0.5,
        sweep_interval_s: float = 1.0,
    ) -> None:
        if not owner_wait_s >= 0 or not sweep_interval_s > 0:
            raise ValueError("owner_wait_s must be >= 0 and sweep_interval_s > 0")
        self.members = MemberSet(node, name)
        self._node = node
        self._map = node.map(name)
        self._owner_wait_s = owner_wait_s
        self._sweep_interval_s = sweep_interval_s
        self._waiters: dict[Key, trio.Event] = {}
        self._inflight: dict[Key, trio.Event] = {}
        self.computed = 0  # values this node computed (for tests and metrics)
        self._map.subscribe(self._on_change)

    @property
    def name(self) -> str:
        """The replicated map holding the entries."""
        return self._map.name

    def get(self, key: Key, default: Any = None) -> Any:
        """The cached value, or ``default`` when absent or expired. Never raises."""
        value = _fresh(self._map.get(key), self._node.wall_ms())
        return default if value is _MISSING else value

    def set(self, key: Key, value: Any, ttl_s: float) -> None:
        """Cache ``value`` on every node for ``ttl_s`` seconds (at least 1 ms).

        Raises:
            ValueError: ``ttl_s`` is not a positive finite number, or the value is
                over the node's ``max_value_bytes``.
            TypeError: the key or the value is of a type the map does not take.
            WriteRefused: the node takes no writes now (see `ReplicatedMap.set`).
            Nothing is written when it raises.
        """
        ttl_ms = _check_ttl(ttl_s)
        self._map.set(key, [value, self._node.wall_ms() + ttl_ms])

    def invalidate(self, key: Key) -> None:
        """Remove ``key`` on every node.

        Raises:
            TypeError, WriteRefused: as for `set`.
        """
        self._map.delete(key)

    def clear(self) -> None:
        """Remove every entry on every node.

        Raises:
            WriteRefused: as for `set` (entries deleted before it stay deleted).
        """
        for key in list(self._map.keys()):
            self._map.delete(key)

    def owner(self, key: Key) -> str | None:
        """The node that computes ``key`` in a stampede, and sweeps it: HRW among the
        nodes serving the cache (`MemberSet.owner`); None when none does."""
        return self.members.owner(key)

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
            fn: an async function computing the value; its exceptions propagate
                (nothing is cached, and callers sharing the computation compute
                for themselves).
            ttl_s: how long to cache a computed value, in seconds.
            owner_only: compute on the key's owner only (see the module notes).

        Returns:
            The cached or computed value.

        Raises:
            ValueError, TypeError: as for `set`; a bad ``ttl_s`` raises before
                ``fn`` runs.
        """
        _check_ttl(ttl_s)
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        owner = self.owner(key) if owner_only else None
        if owner is not None and owner != self._node.node_id:
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
            self.set(key, value, ttl_s)
            self.computed += 1
            return value
        finally:
            if self._inflight.get(key) is done:
                del self._inflight[key]
            done.set()

    def sweep(self) -> int:
        """Delete the expired entries this node owns; return how many.

        Raises:
            WriteRefused: the node takes no writes now (`run` skips that sweep).
        """
        me = self._node.node_id
        serving = self.members.serving()
        if me not in serving:
            return 0
        now = self._node.wall_ms()
        expired = [
            key
            for key, entry in list(self._map.items())
            if _fresh(entry, now) is _MISSING and rendezvous_owner(key, serving) == me
        ]
        for key in expired:
            self._map.delete(key)
        return len(expired)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the cache until cancelled: announce this node as a candidate owner
        (`MemberSet.run`) and sweep every ``sweep_interval_s`` seconds. Cancelled,
        it withdraws the announcement (refused, it is retried until the node takes
        writes: see `MemberSet.withdraw`). ``await nursery.start(cache.run)``
        returns once the announcement is written (or was refused: it is retried)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.members.run)
            task_status.started()
            while True:
                await trio.sleep(self._sweep_interval_s)
                with contextlib.suppress(WriteRefused):
                    self.sweep()

    def _on_change(self, keys: frozenset[Key]) -> None:
        for key in keys:
            event = self._waiters.pop(key, None)
            if event is not None:
                event.set()

    def __len__(self) -> int:
        """Entries held, expired ones not yet swept included."""
        return len(self._map)


class SyncCache(Serving):
    """A `ReplicatedCache` for threaded apps, over a running `BackgroundNode`.

    Made, it serves the cache (``serve=True``: this node is a candidate owner and
    sweeps what it owns) until `close`; use it as a context manager, or close it
    before stopping the node. Every method may be called from any thread:

    - `get` is a local dict lookup and a clock read, with no hop to the node's thread;
    - writes (`set`, `invalidate`, `clear`) run in the node's thread
      (`BackgroundNode.run_sync`) and return once applied there; bad input raises
      in the caller, and nothing is written;
    - `get_or_compute` runs ``fn``, a plain function, in the calling thread, so a slow
      computation never stalls the node. A miss costs one hop to the node's thread,
      to elect the owner.

    Args:
        background: the running node.
        name, owner_wait_s, sweep_interval_s: as for `ReplicatedCache`.
        serve: serve the cache from this node (else it only asks the nodes that do).

    Raises:
        RuntimeError: the node is not running.
        TypeError, ValueError: as for `ReplicatedCache`.
    """

    def __init__(
        self,
        background: BackgroundNode,
        name: str = "cache",
        *,
        owner_wait_s: float = 0.5,
        sweep_interval_s: float = 1.0,
        serve: bool = True,
    ) -> None:
        self._background = background
        self._node = background.node
        self._owner_wait_s = owner_wait_s
        self.cache: ReplicatedCache = background.run_sync(
            lambda: ReplicatedCache(
                self._node, name, owner_wait_s=owner_wait_s, sweep_interval_s=sweep_interval_s
            )
        )
        self._map = background.map(name)
        self._lock = threading.Lock()
        self._waiters: dict[Key, list[threading.Event]] = {}
        self._inflight: dict[Key, threading.Event] = {}
        self.computed = 0  # values computed by this process's threads
        self._unsubscribe = self._map.subscribe(self._on_change)
        self._task = None
        try:
            if serve:
                self._task = NodeTask(background, self.cache)
        except BaseException:
            self._unsubscribe()
            raise

    def get(self, key: Key, default: Any = None) -> Any:
        """The cached value, or ``default`` when absent or expired: a local lookup,
        from any thread. Never raises."""
        value = _fresh(self._map.get(key), self._node.wall_ms())
        return default if value is _MISSING else value

    def set(self, key: Key, value: Any, ttl_s: float) -> None:
        """Cache ``value`` on every node for ``ttl_s`` seconds; returns once applied here.

        Raises:
            ValueError, TypeError, WriteRefused: as for `ReplicatedCache.set`, in the
                caller; nothing is written.
            RuntimeError: the node is not running.
        """
        _check_ttl(ttl_s)
        self._background.run_sync(self.cache.set, key, value, ttl_s)

    def invalidate(self, key: Key) -> None:
        """Remove ``key`` on every node (see `ReplicatedCache.invalidate`)."""
        self._background.run_sync(self.cache.invalidate, key)

    def clear(self) -> None:
        """Remove every entry on every node (see `ReplicatedCache.clear`)."""
        self._background.run_sync(self.cache.clear)

    def owner(self, key: Key) -> str | None:
        """The key's owner (see `ReplicatedCache.owner`); one hop to the node's thread."""
        owner: str | None = self._background.run_sync(self.cache.owner, key)
        return owner

    def serving(self) -> frozenset[str]:
        """The nodes serving the cache (see `MemberSet.serving`); one hop."""
        serving: frozenset[str] = self._background.run_sync(self.cache.members.serving)
        return serving

    def get_or_compute(
        self, key: Key, fn: Callable[[], Any], ttl_s: float, *, owner_only: bool = True
    ) -> Any:
        """Return the cached value, computing (and caching) it with ``fn`` if missing.

        Args:
            key: the key.
            fn: a plain function computing the value, run in the calling thread. Its
                exceptions propagate: nothing is cached, and threads of this process
                that shared the computation compute for themselves.
            ttl_s: how long to cache a computed value, in seconds.
            owner_only: wait up to ``owner_wait_s`` for the key's owner, when it is
                another node (see `ReplicatedCache`).

        Returns:
            The cached or computed value.

        Raises:
            ValueError, TypeError, WriteRefused: as for `set`; a bad ``ttl_s``
                raises before ``fn`` runs.
            RuntimeError: the node is not running.
        """
        _check_ttl(ttl_s)
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        if owner_only and self.owner(key) not in (None, self._node.node_id):
            hit = self._wait_for(key, self._owner_wait_s)
            if hit is not _MISSING:
                return hit
        while True:  # one computation per key in this process
            with self._lock:
                pending = self._inflight.get(key)
                if pending is None:
                    done = self._inflight[key] = threading.Event()
                    break
            pending.wait()
            hit = self.get(key, _MISSING)
            if hit is not _MISSING:
                return hit
        try:
            value = fn()
            self.set(key, value, ttl_s)
            with self._lock:
                self.computed += 1
            return value
        finally:
            with self._lock:
                del self._inflight[key]
            done.set()

    def _wait_for(self, key: Key, timeout_s: float) -> Any:
        """Wait up to ``timeout_s`` seconds for a fresh value of ``key``; `_MISSING`
        if none came."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            event = threading.Event()
            with self._lock:
                self._waiters.setdefault(key, []).append(event)
            try:
                hit = self.get(key, _MISSING)  # it may have come before the event was in
                if hit is not _MISSING:
                    return hit
                event.wait(remaining)
            finally:
                with self._lock:
                    waiting = self._waiters.get(key, [])
                    if event in waiting:
                        waiting.remove(event)
                    if not waiting:
                        self._waiters.pop(key, None)
        return self.get(key, _MISSING)

    def _on_change(self, keys: frozenset[Key]) -> None:  # in the node's thread
        with self._lock:
            woken = [event for key in keys for event in self._waiters.pop(key, ())]
        for event in woken:
            event.set()

    def close(self) -> None:
        """Stop serving the cache (withdraw this node's announcement); idempotent.
        The entries stay, on every node."""
        super().close()
        with contextlib.suppress(RuntimeError):  # the node stopped first
            self._unsubscribe()
