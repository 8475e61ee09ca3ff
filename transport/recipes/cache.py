"""A cluster-wide cache with TTL over a replicated map, for trio and for threads.

In trio, next to a running `Node`::

    cache = ReplicatedCache(node, load=load_profile, ttl_s=60)
    await nursery.start(cache.run)        # serves: a candidate owner, sweeps
    cache.set("user:42", profile, ttl_s=60)
    profile = await cache.get_or_compute("user:42")  # load_profile("user:42") if cold

From threads (Flask, Django, FastAPI) over a `BackgroundNode`::

    with SyncCache(background_node, load=load_profile_sync, ttl_s=60) as cache:
        profile = cache.get_or_compute("user:42")

Entries are ``[value, expires_ms]``, with the expiry on the node's clock
(`Node.wall_ms`, ms since the epoch). A read treats an expired entry as missing.
`invalidate` and `clear` are deletes: cluster-wide.

**Owners.** Each key has an owner among the nodes that *serve* the cache (they
run `ReplicatedCache.run` or hold a `SyncCache` open on the same map): rendezvous
(HRW) hashing over the live members serving the service ``"cache:<name>"``
(`Node.owner_of`). A node that only reads flags, a ``chorus serve`` node for
instance, never owns a key. The owner sweeps its expired keys, so each is deleted
once and the map does not grow without bound.

**Cold keys.** `get_or_compute` computes a missing value on the key's owner, with
the owner's ``load`` function, as groupcache does (each key's owner loads it, its
peers ask the owner); the owner writes it to the replicated map and answers it,
and the caller returns that answer at once. So:

- single flight per cluster: concurrent requests for one key on its owner, from
  any node, share one computation (and concurrent requests on one node share one
  request to the owner), so while the owner is up and the nodes agree on it, a
  stampede on a cold key computes it once;
- when the owner cannot be reached (it crashed and the others have not declared it
  down yet, it is cut off, overloaded, or no node serves the cache: any
  `CallError` but `RemoteError`) the caller computes the value itself with its own
  ``load``, writes it, and counts it in `ReplicatedCache.fallbacks`;
- when the owner's ``load`` raises, the caller gets `RemoteError` naming its
  exception, and nothing is cached.

**When two nodes think they own a key.** While membership changes, nodes may
elect different owners for a key (see `Node.call_owner`): for up to the failure
timeout (3 s by default) after a crash, about one heartbeat after a node starts
serving, at once after one stops. A stampede in that window computes the key once
per owner the nodes see (plus once per node falling back); each writes the value,
and the last write wins. That costs a value computed twice, never a wrong one,
provided ``load`` gives the same value for a key on every node.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from crdt import Key
from crdt._values import check_key, key_from_cbor
from transport import BackgroundNode, CallError, Node, RemoteError, WriteRefused, rendezvous_owner

from ._flight import SingleFlight
from ._members import MemberSet
from ._sync import NodeTask, Serving

log = logging.getLogger("chorus.recipes.cache")
_MISSING: Any = object()


#: The longest TTL, in seconds: ten years.
MAX_TTL_S = 10 * 366 * 24 * 3600


def _check_ttl(ttl_s: float) -> int:
    """The TTL in ms; raises ValueError unless it is a number of seconds in
    (0, `MAX_TTL_S`]."""
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be a number of seconds in (0, {MAX_TTL_S}], got {ttl_s!r}")
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
        name: the replicated map holding the entries. The nodes serving the cache
            serve the service ``f"cache:{name}"``, so ``name`` is at most 94 ASCII
            characters.
        load: ``await load(key)`` computes the value of a cold key for
            `get_or_compute`, on the key's owner (or here, as a fallback). Give
            every node serving the cache the same one. None: `get_or_compute`
            raises, and a call to compute on this node is answered `RemoteError`.
        ttl_s: how long `get_or_compute` caches a computed value, in seconds,
            unless the call says otherwise.
        timeout_s: how long, in seconds, a caller waits for the owner's answer
            before computing the value itself (counted in `fallbacks`). Make it
            longer than ``load`` takes.
        sweep_interval_s: seconds between sweeps of expired entries (in `run`).
        max_concurrent: computations the owner runs at once for other nodes; a
            request beyond is answered `Overloaded`, and its caller computes.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: ``name`` makes a bad service name, or ``ttl_s``, ``timeout_s``,
            ``sweep_interval_s`` or ``max_concurrent`` is not positive.

    Attributes:
        computed: values this node computed with ``load`` (as owner or fallback).
        fallbacks: `get_or_compute` calls that computed here because the owner
            could not be reached (or no node serves the cache).
    """

    def __init__(
        self,
        node: Node,
        name: str = "cache",
        *,
        load: Callable[[Key], Awaitable[Any]] | None = None,
        ttl_s: float = 60.0,
        timeout_s: float = 5.0,
        sweep_interval_s: float = 1.0,
        max_concurrent: int = 64,
    ) -> None:
        if type(name) is not str:
            raise TypeError(f"map names are str, not {name!r}")
        self._ttl_ms = _check_ttl(ttl_s)
        if not timeout_s > 0 or not sweep_interval_s > 0:
            raise ValueError("timeout_s and sweep_interval_s must be positive")
        self.members = MemberSet(
            node, f"cache:{name}", handler=self._on_call, max_concurrent=max_concurrent
        )
        self._node = node
        self._map = node.map(name)
        self._load = load
        self._timeout_s = timeout_s
        self._sweep_interval_s = sweep_interval_s
        self._asking = SingleFlight()  # requests of this node, one per key
        self._computing = SingleFlight()  # computations on this node, one per key
        # A load that straddles a write or a deletion of its key (`invalidate`,
        # `clear`, here or on another node: the key's timestamp moves, tombstones
        # included) may have read the source before the change: its value is
        # answered to its callers but not cached. Flights are keyed by the key and
        # its timestamp, so callers that come after the change start their own.
        self.computed = 0
        self.fallbacks = 0

    @property
    def name(self) -> str:
        """The replicated map holding the entries."""
        return self._map.name

    @property
    def service(self) -> str:
        """The service the nodes serving the cache serve: ``"cache:<name>"``."""
        return self.members.service

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
        self._set(key, value, _check_ttl(ttl_s))

    def _set(self, key: Key, value: Any, ttl_ms: int) -> None:
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
        """The node that computes ``key`` for `get_or_compute`, and sweeps it: HRW
        among the nodes serving the cache (`Node.owner_of`); None when none does."""
        return self.members.owner(key)

    async def get_or_compute(self, key: Key, *, ttl_s: float | None = None) -> Any:
        """Return the cached value; when missing, the value the key's owner computed
        (and cached), or, when the owner cannot be reached, the value computed here
        (and cached; counted in `fallbacks`). See the module notes.

        Args:
            key: the key (``load`` gets it).
            ttl_s: how long to cache a computed value, in seconds; None: the
                cache's ``ttl_s``.

        Returns:
            The cached or computed value.

        Raises:
            RemoteError: the owner's ``load`` raised (its message names the
                exception); nothing is cached.
            Exception: what this node's ``load`` raised, when it computed.
            ValueError: a bad ``ttl_s``; TypeError: a bad key, or this cache has no
                ``load``. Both raise before anything is asked or computed.
            TypeError, ValueError: a computed value the map cannot hold.
        """
        ttl_ms = self._ttl_ms if ttl_s is None else _check_ttl(ttl_s)
        check_key(key)
        if self._load is None:
            raise TypeError(f"cache {self.name!r} has no load function to compute {key!r}")
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        flight = (key, self._map.timestamp(key))
        return await self._asking.run(flight, lambda: self._ask(key, ttl_ms))

    async def _ask(self, key: Key, ttl_ms: int) -> Any:
        """The value of a cold key: from its owner, else computed here."""
        node = self._node
        if self.owner(key) == node.node_id:
            value, _ = await self._compute(key, ttl_ms)
            return value
        try:
            result = await node.call_owner(
                key, self.service, [key, ttl_ms], timeout_s=self._timeout_s
            )
        except RemoteError:
            raise
        except CallError as exc:
            self.fallbacks += 1
            log.debug("%s: computing %r here: %s", self.name, key, exc)
            value, _ = await self._compute(key, ttl_ms)
            return value
        value, cached = result.value
        if not cached:  # the owner refused the write (not ready): cache it from here
            with contextlib.suppress(WriteRefused):
                self._set(key, value, ttl_ms)
        return value

    async def _compute(self, key: Key, ttl_ms: int) -> tuple[Any, bool]:
        """``(value, cached)``: the fresh value, or one computed by ``load`` and
        written; ``cached`` is False only when the node refused the write, so that
        the caller writes it (True for a value invalidated while it loaded: nobody
        caches that). One computation per key on this node at a time."""
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit, True
        flight = (key, self._map.timestamp(key))
        return await self._computing.run(flight, lambda: self._load_and_set(key, ttl_ms))  # type: ignore[no-any-return]

    async def _load_and_set(self, key: Key, ttl_ms: int) -> tuple[Any, bool]:
        if self._load is None:
            raise LookupError(f"no load function for cache {self.name!r} on this node")
        before = self._map.timestamp(key)
        value = await self._load(key)
        self.computed += 1
        if (
            self._map.timestamp(key) != before
        ):  # deleted while it loaded: the value may predate the change
            log.debug("%s: %r was invalidated while it loaded: not cached", self.name, key)
            return value, True  # True: nobody is to cache it either
        try:
            self._set(key, value, ttl_ms)
        except WriteRefused as exc:
            log.debug("%s: %r computed but not cached: %s", self.name, key, exc)
            return value, False
        return value, True

    async def _on_call(self, caller: str, payload: Any) -> Any:
        """Answer another node's request for a cold key: ``[value, cached]``."""
        if type(payload) is not list or len(payload) != 2:
            raise ValueError("expected [key, ttl_ms]")
        key, ttl_ms = key_from_cbor(payload[0]), payload[1]
        if type(ttl_ms) is not int or ttl_ms < 1:
            raise ValueError(f"ttl_ms must be a positive int, got {ttl_ms!r}")
        value, cached = await self._compute(key, ttl_ms)
        return [value, cached]

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
        """Serve the cache until cancelled: this node is a candidate owner (it
        computes cold keys for the others, `MemberSet.run`) and sweeps every
        ``sweep_interval_s`` seconds. ``await nursery.start(cache.run)`` returns
        once it serves.

        Raises:
            ValueError: this node serves this cache already.
        """
        async with trio.open_nursery() as nursery:
            await nursery.start(self.members.run)
            task_status.started()
            while True:
                await trio.sleep(self._sweep_interval_s)
                with contextlib.suppress(WriteRefused):
                    self.sweep()

    def __len__(self) -> int:
        """Entries held, expired ones not yet swept included."""
        return len(self._map)


class SyncCache(Serving):
    """A `ReplicatedCache` for threaded apps, over a running `BackgroundNode`.

    Made, it serves the cache (``serve=True``: this node is a candidate owner,
    computes cold keys for the others and sweeps what it owns) until `close`; use
    it as a context manager, or close it before stopping the node. Every method may
    be called from any thread:

    - `get` is a local dict lookup and a clock read, with no hop to the node's thread;
    - writes (`set`, `invalidate`, `clear`) run in the node's thread
      (`BackgroundNode.run_sync`) and return once applied there; bad input raises
      in the caller, and nothing is written;
    - `get_or_compute` blocks the calling thread while the node asks the owner (or
      computes). ``load`` runs in a worker thread of the node, never in the node's
      thread, so a slow computation never stalls the node; it computes for callers
      on any node, so it gets the key alone, not the calling request's context.

    Args:
        background: the running node.
        name, ttl_s, timeout_s, sweep_interval_s, max_concurrent: as for
            `ReplicatedCache`.
        load: ``load(key)``, a plain function computing a cold key's value (run in
            a worker thread; at most ``max_concurrent`` at once).
        serve: serve the cache from this node (else it only asks the nodes that
            do, and computes with ``load`` when none can be reached).

    Raises:
        RuntimeError: the node is not running.
        TypeError, ValueError: as for `ReplicatedCache`.
    """

    def __init__(
        self,
        background: BackgroundNode,
        name: str = "cache",
        *,
        load: Callable[[Key], Any] | None = None,
        ttl_s: float = 60.0,
        timeout_s: float = 5.0,
        sweep_interval_s: float = 1.0,
        max_concurrent: int = 64,
        serve: bool = True,
    ) -> None:
        self._background = background
        self._node = background.node
        threaded: Callable[[Key], Awaitable[Any]] | None = None
        if load is not None:
            sync_load = load
            if type(max_concurrent) is not int or max_concurrent < 1:
                raise ValueError(f"max_concurrent must be a positive int, got {max_concurrent!r}")
            threads = trio.CapacityLimiter(max_concurrent)

            async def threaded(key: Key) -> Any:
                # Never abandoned: the thread keeps its place among max_concurrent
                # until it returns (see BackgroundNode.serve).
                return await trio.to_thread.run_sync(sync_load, key, limiter=threads)

        self.cache: ReplicatedCache = background.run_sync(
            lambda: ReplicatedCache(
                self._node,
                name,
                load=threaded,
                ttl_s=ttl_s,
                timeout_s=timeout_s,
                sweep_interval_s=sweep_interval_s,
                max_concurrent=max_concurrent,
            )
        )
        self._map = background.map(name)
        self._task = NodeTask(background, self.cache) if serve else None

    @property
    def computed(self) -> int:
        """Values this node computed with ``load`` (see `ReplicatedCache`)."""
        return self.cache.computed

    @property
    def fallbacks(self) -> int:
        """Computations made here because the owner could not be reached."""
        return self.cache.fallbacks

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

    def get_or_compute(self, key: Key, *, ttl_s: float | None = None) -> Any:
        """Return the cached value, or the value the owner (or, as a fallback, this
        node) computed with ``load`` (see `ReplicatedCache.get_or_compute`). A hit
        is a local lookup; a miss blocks the calling thread until the answer.

        Raises:
            As `ReplicatedCache.get_or_compute`, in the caller.
            RuntimeError: the node is not running, or this is the node's thread.
        """
        if ttl_s is not None:
            _check_ttl(ttl_s)
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        return self._background.run(lambda: self.cache.get_or_compute(key, ttl_s=ttl_s))
