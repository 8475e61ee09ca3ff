"""Node: replicated maps over a Transport, with membership and anti-entropy."""

from __future__ import annotations

import logging
import math
import random
import secrets
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

import attrs
import trio

import crdt
from crdt import Coverage, DecodeError, Key, LWWMap
from hlc import HLC, ClockSkewError, Timestamp, system_wall_ms

from ._hrw import rendezvous_owner
from ._interface import PeerDown, PeerUp, Received, Transport, TransportClosed
from ._replicated import ReplicatedMap
from ._wire import decode_heartbeat, encode_heartbeat, peek_kind

log = logging.getLogger("chorus.node")
_MISSING: Any = object()


@attrs.define
class NodeStats:
    """Counters of one node, readable at any time (all cumulative)."""

    messages_sent: dict[str, int] = attrs.field(factory=dict)
    bytes_sent: dict[str, int] = attrs.field(factory=dict)
    messages_received: dict[str, int] = attrs.field(factory=dict)
    bytes_received: dict[str, int] = attrs.field(factory=dict)
    writes: int = 0
    merges: int = 0
    keys_changed: int = 0
    rejected: int = 0  # malformed or unknown messages, dropped
    held_back: int = 0  # entries further ahead than max_offset_ms, retried later
    deltas_dropped: int = 0  # outbox full: left to anti-entropy
    sync_rounds: int = 0  # sync steps answered
    last_sync_time: float | None = None  # trio time of the last sync step answered
    joins: int = 0  # peers seen coming up or restarting
    leaves: int = 0  # peers declared down
    tombstones_collected: int = 0
    stale_dropped: int = 0  # entries older than the collection floor, for absent keys
    state_drops: int = 0  # times this node was cut off too long and re-synced from scratch


@attrs.define
class _Peer:
    incarnation: str | None = None
    last_seen: float = -math.inf
    alive: bool = False
    converged_wall_ms: int | None = None  # our wall clock when its root digest equalled ours
    synced: bool = False  # as its last heartbeat said: may a joiner pull from it?
    floor_ms: int = 0  # as its last heartbeat said: how far it collected tombstones


class Node:
    """One member of a chorus cluster: replicated maps over a `Transport`.

    Use inside trio: ``async with Node("a", transport) as node:``. Entering starts the
    node's tasks (receive, broadcast, heartbeat, anti-entropy, join) in a nursery of
    its own; leaving cancels them and closes the transport.

    Args:
        node_id: this node's name, as peers know it on the transport.
        transport: a `Transport` whose ``node_id`` is ``node_id``.
        wall_ms: the wall clock, in ms since the epoch, for the HLC. Simulations pass
            `MemoryNetwork.wall_clock` (skewed as they like).
        incarnation: an id for this run of the node (default: 8 random hex digits).
            Timestamps carry ``node_id/incarnation``, so a restart never reuses one,
            even with a clock that went backwards.
        max_offset_ms: entries further ahead of the local clock are held back and
            retried every ``held_retry_s`` (HLC skew guard; see `hlc.HLC`).
        heartbeat_interval_s: seconds between heartbeats to each peer.
        failure_timeout_s: a peer not heard from for this long is declared down.
            With the defaults a dead peer is noticed within 3 s.
        sync_interval_s: mean seconds between anti-entropy rounds with a random live
            peer; each wait is jittered by +-50%.
        join_timeout_s: how long a new node waits for a synced peer (heartbeats say
            which peers are synced) before it decides it is alone (logged as a
            warning) and reports synced.
        join_retry_s: while joining, how often to re-pull what has not arrived.
        max_message_bytes: sync messages are cut to this size (at most the
            transport's limit).
        max_value_bytes: the largest encoded value a write accepts, in bytes.
        outbox_size: deltas queued for broadcast beyond which new ones are dropped
            and left to anti-entropy, so a slow network never blocks writers.
        tombstone_horizon_s: the hard horizon of tombstones, in seconds (default one
            day). See "Tombstones" below.
        gc_interval_s: seconds between tombstone collections (default: a tenth of
            the horizon, at most 60).

    Tombstones: a delete leaves a tombstone, collected once it is older than the
    last time every *known* member (heard from within the horizon, up or not) was
    seen holding exactly our state (its root digest equal to ours), less
    ``max_offset_ms`` for clock skew; and, whatever the members, once it is older
    than the hard horizon, or than a live peer's collection floor (heartbeats carry
    it: that peer checked every member it knew). Incoming entries older than what was
    collected, for keys
    this node does not hold, are dropped (``stats.stale_dropped``), so a stale
    replica cannot bring a deleted value back. A node that has heard from nobody for
    longer than the horizon, when it next hears from a peer it knew in the same
    incarnation (a healed partition), drops its state and re-syncs
    (``stats.state_drops``): its writes from while it was cut off are lost. When the
    peers it meets are new incarnations (restarted, hence empty), it is the
    survivor and keeps its state.

    Time: timers use trio's clock, so ``trio.testing.MockClock`` drives a whole
    simulated cluster; the HLC reads only ``wall_ms``.
    """

    def __init__(
        self,
        node_id: str,
        transport: Transport,
        *,
        wall_ms: Callable[[], int] = system_wall_ms,
        incarnation: str | None = None,
        max_offset_ms: int = 500,
        heartbeat_interval_s: float = 0.5,
        failure_timeout_s: float = 3.0,
        sync_interval_s: float = 2.0,
        join_timeout_s: float = 3.0,
        join_retry_s: float = 1.0,
        held_retry_s: float = 1.0,
        max_message_bytes: int | None = None,
        max_value_bytes: int | None = None,
        outbox_size: int = 4096,
        tombstone_horizon_s: float = 86_400.0,
        gc_interval_s: float | None = None,
    ) -> None:
        if transport.node_id != node_id:
            raise ValueError(f"transport is for {transport.node_id!r}, not {node_id!r}")
        self.node_id = node_id
        self.incarnation = incarnation or secrets.token_hex(4)
        self._transport = transport
        self._wall_ms = wall_ms
        self._clock = HLC(
            f"{node_id}/{self.incarnation}", max_offset_ms=max_offset_ms, wall_ms=wall_ms
        )
        self._max_offset_ms = max_offset_ms
        self._heartbeat_interval_s = heartbeat_interval_s
        self._failure_timeout_s = failure_timeout_s
        self._sync_interval_s = sync_interval_s
        self._join_timeout_s = join_timeout_s
        self._join_retry_s = join_retry_s
        self._held_retry_s = held_retry_s
        limit = transport.max_message_bytes
        self.max_message_bytes = min(limit, max_message_bytes or limit)
        self.max_value_bytes = max_value_bytes or self.max_message_bytes // 4
        self._outbox_size = outbox_size
        self._horizon_s = tombstone_horizon_s
        self._gc_interval_s = gc_interval_s or min(60.0, tombstone_horizon_s / 10)
        self._floor_ms = 0  # tombstones older than this were collected
        self._last_contact = -math.inf  # trio time of the last well-formed message
        self._cut_off = False  # silent for longer than the horizon: see _on_heartbeat
        self._rng = random.Random(f"{node_id}/{self.incarnation}")

        self.stats = NodeStats()
        self._state = LWWMap()  # every map's entries, keyed (map name, key)
        self._held = LWWMap()  # entries from too far in the future, retried later
        self._maps: dict[str, ReplicatedMap] = {}
        self._peers: dict[str, _Peer] = {}
        self._coverage: dict[str, Coverage] = {}
        self._synced = trio.Event()
        self._candidate_heard = trio.Event()  # a synced peer spoke: see _join
        self._page_arrived = trio.Event()  # a page of a pull arrived: see _join
        self._outbox: list[LWWMap] = []
        self._outbox_ready = trio.Event()
        self._nursery: trio.Nursery | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def __aenter__(self) -> Node:
        self._nursery_manager = trio.open_nursery()
        nursery = await self._nursery_manager.__aenter__()
        try:
            await nursery.start(self._transport.serve)
            for task in (
                self._receive_loop,
                self._broadcast_loop,
                self._heartbeat_loop,
                self._anti_entropy_loop,
                self._gc_loop,
                self._join,
                self._held_loop,
            ):
                nursery.start_soon(task)
        except BaseException:
            nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        self._nursery = nursery
        log.info("node %s/%s started", self.node_id, self.incarnation)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()
        self._nursery = None
        log.info("node %s/%s stopped", self.node_id, self.incarnation)
        return await self._nursery_manager.__aexit__(exc_type, exc, tb)

    # -- public surface --------------------------------------------------------------

    def map(self, name: str) -> ReplicatedMap:
        """Return the replicated map called ``name``, creating its view on first use.

        Maps exist cluster-wide: a peer's writes to a map this node never opened are
        kept all the same, and show up when it opens the map.

        Raises:
            TypeError: ``name`` is not a non-empty str.
        """
        found = self._maps.get(name)
        if found is not None:
            return found
        if type(name) is not str or not name:
            raise TypeError(f"map names are non-empty str, not {name!r}")
        view = ReplicatedMap(self, name)
        view._values.update(
            (key[1], value)
            for key, value in self._state.items()
            if type(key) is tuple and key[0] == name
        )
        self._maps[name] = view
        return view

    @property
    def synced(self) -> bool:
        """True once the node has pulled a live peer's whole state, or knows it is alone."""
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until `synced`.

        Args:
            timeout: seconds to wait at most (None: no limit).

        Returns:
            True when synced; False if ``timeout`` passed first.
        """
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self._synced.wait()
        return self._synced.is_set()

    async def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait until local writes have been broadcast and handed to the network.

        For a graceful shutdown: call it after the last write, before leaving.

        Returns:
            True if everything was handed over within ``timeout_s`` seconds.
        """
        with trio.move_on_after(timeout_s):
            while self._outbox:
                await trio.sleep(0.005)
            await trio.sleep(0)  # let the broadcaster finish its batch
            return await self._transport.flush(timeout_s)
        return False

    def members(self) -> frozenset[str]:
        """The live nodes as this node sees them: itself and peers heard from lately."""
        return frozenset([self.node_id, *(n for n, p in self._peers.items() if p.alive)])

    def owner(self, key: Key) -> str:
        """The member that owns ``key`` by rendezvous (HRW) hashing over `members`."""
        return rendezvous_owner(key, self.members())

    def wall_ms(self) -> int:
        """The node's wall clock, in ms since the epoch (the one its HLC reads)."""
        return self._wall_ms()

    @property
    def clock(self) -> HLC:
        """This node's hybrid logical clock."""
        return self._clock

    def state(self) -> LWWMap:
        """A copy of the node's full replicated state (all maps, tombstones included)."""
        return self._state.copy()

    # -- writes --------------------------------------------------------------------

    def _write(self, name: str, key: Key, value: Any, *, delete: bool = False) -> None:
        if self._nursery is None:
            raise RuntimeError(f"node {self.node_id!r} is not running")
        full_key = (name, key)
        scratch = LWWMap()
        ts = self._clock.now()
        if delete:
            delta = scratch.delete(full_key, ts)
        else:
            delta = scratch.set(full_key, value, ts)
            size = len(delta._regs[full_key][3])
            if size > self.max_value_bytes:
                raise ValueError(
                    f"value of {size} bytes is over max_value_bytes={self.max_value_bytes}"
                )
        self.stats.writes += 1
        self._after_merge(self._state.merge(delta))
        if len(self._outbox) >= self._outbox_size:
            self.stats.deltas_dropped += 1
        else:
            self._outbox.append(delta)
            self._outbox_ready.set()

    # -- receiving -----------------------------------------------------------------

    async def _receive_loop(self) -> None:
        transport = self._transport
        while True:
            try:
                event = await transport.receive()
            except TransportClosed:
                return
            if isinstance(event, Received):
                self._on_message(event.peer, event.data)
            elif isinstance(event, PeerUp):
                self._peers.setdefault(event.peer, _Peer())
                # Introduce ourselves at once: a joiner waits for a synced peer's
                # heartbeat before it pulls, so do not make it wait for the next tick.
                heartbeat = encode_heartbeat(
                    self.incarnation, self._synced.is_set(), self._floor_ms
                )
                self._send(event.peer, heartbeat, "heartbeat")
            elif isinstance(event, PeerDown):
                self._declare_down(event.peer, "transport reports it down")

    def _on_message(self, peer: str, data: bytes) -> None:
        try:
            kind = peek_kind(data)
            if kind == "map":
                message: Any = crdt.decode_map(data, max_bytes=self.max_message_bytes)
            elif kind == "sync":
                message = crdt.decode_sync_step(data, max_bytes=self.max_message_bytes)
            else:
                message = decode_heartbeat(data)
        except DecodeError as exc:
            self.stats.rejected += 1
            log.warning("node %s: rejected a message from %s: %s", self.node_id, peer, exc)
            return
        # Only a well-formed message counts as a sign of life.
        now = trio.current_time()
        if (
            now - self._last_contact > self._horizon_s
            and self._peers
            and self._last_contact > -math.inf
        ):
            self._cut_off = True  # decided by the next heartbeat: see _on_heartbeat
        self._last_contact = now
        self._count(self.stats.messages_received, self.stats.bytes_received, kind, len(data))
        self._heard_from(peer)
        if kind == "map":
            self._admit(message)
        elif kind == "sync":
            self._on_sync(peer, message)
        else:
            self._on_heartbeat(peer, message)

    def _hold_back(self, delta: LWWMap) -> LWWMap:
        """Return the part of ``delta`` to merge now, passed through the HLC.

        Entries not keyed ``(map name, key)`` are dropped and counted as rejected.

        Entries more than ``max_offset_ms`` ahead of the local clock go to the held
        map and are retried every ``held_retry_s``: a skewed clock delays them but
        never loses them, so no replica diverges for good.
        """
        regs = delta._regs
        if not all(type(k) is tuple and len(k) == 2 and type(k[0]) is str for k in regs):
            good = [k for k in regs if type(k) is tuple and len(k) == 2 and type(k[0]) is str]
            self.stats.rejected += len(regs) - len(good)
            log.warning(
                "node %s: dropped %d entries not keyed (map, key)",
                self.node_id,
                len(regs) - len(good),
            )
            delta = delta._subset(good)
            regs = delta._regs
        floor, ours = self._floor_ms, self._state._regs
        if floor and any(e[0] < floor and k not in ours for k, e in regs.items()):
            fresh = [k for k, e in regs.items() if e[0] >= floor or k in ours]
            self.stats.stale_dropped += len(regs) - len(fresh)
            delta = delta._subset(fresh)
            regs = delta._regs
        limit = self._wall_ms() + self._max_offset_ms
        if any(entry[0] > limit for entry in regs.values()):
            late = delta._subset([k for k, e in regs.items() if e[0] > limit])
            delta = delta._subset([k for k, e in regs.items() if e[0] <= limit])
            self._held.merge(late)
            self.stats.held_back += len(late._regs)
            log.info(
                "node %s: held back %d entries ahead of the clock", self.node_id, len(late._regs)
            )
        newest = delta.max_timestamp()
        if newest is not None:
            try:
                self._clock.update(newest)
            except ClockSkewError:  # the wall clock stepped back since `limit`
                self._held.merge(delta)
                return LWWMap()
        return delta

    def _admit(self, delta: LWWMap) -> None:
        changed = self._state.merge(self._hold_back(delta))
        self.stats.merges += 1
        self._after_merge(changed)

    def _after_merge(self, changed: set[Key]) -> None:
        if not changed:
            return
        self.stats.keys_changed += len(changed)
        by_map: dict[str, dict[Key, Any]] = {}
        state = self._state
        for full_key in changed:
            name, key = cast(tuple[str, Key], full_key)  # admitted keys are (map, key)
            if name in self._maps:
                by_map.setdefault(name, {})[key] = state.get(full_key, _MISSING)
        for name, updates in by_map.items():
            self._maps[name]._apply(updates, _MISSING)

    async def _held_loop(self) -> None:
        while True:
            await trio.sleep(self._jittered(self._held_retry_s))
            if self._held._regs:
                held, self._held = self._held, LWWMap()
                self._admit(held)

    # -- membership ----------------------------------------------------------------

    def _heard_from(self, peer: str) -> None:
        record = self._peers.setdefault(peer, _Peer())
        record.last_seen = trio.current_time()
        if not record.alive:
            record.alive = True
            self.stats.joins += 1
            log.info("node %s: peer %s is up", self.node_id, peer)
            self._start_sync(peer)

    def _on_heartbeat(self, peer: str, heartbeat: tuple[str, bool, int]) -> None:
        incarnation, record_synced, floor_ms = heartbeat
        record = self._peers[peer]
        record.synced = record_synced
        if record_synced:
            self._candidate_heard.set()
        record.floor_ms = floor_ms
        if self._cut_off:
            self._cut_off = False
            if record.incarnation == incarnation:
                self._drop_state(f"cut off for over {self._horizon_s} s; {peer} survived")
            else:
                log.warning(
                    "node %s: cut off for over %s s, and %s restarted: keeping this state",
                    self.node_id,
                    self._horizon_s,
                    peer,
                )
        if record.incarnation is not None and record.incarnation != incarnation:
            self.stats.joins += 1
            log.info("node %s: peer %s restarted (%s)", self.node_id, peer, incarnation)
            self._start_sync(peer)
        record.incarnation = incarnation

    def _declare_down(self, peer: str, why: str) -> None:
        record = self._peers.get(peer)
        if record is not None and record.alive:
            record.alive = False
            self.stats.leaves += 1
            log.info("node %s: peer %s is down (%s)", self.node_id, peer, why)

    async def _heartbeat_loop(self) -> None:
        while True:
            message = encode_heartbeat(self.incarnation, self._synced.is_set(), self._floor_ms)
            for peer in sorted(self._transport.peers()):
                self._send(peer, message, "heartbeat")
            now = trio.current_time()
            for peer, record in self._peers.items():
                if record.alive and now - record.last_seen > self._failure_timeout_s:
                    self._declare_down(peer, f"silent for {self._failure_timeout_s} s")
            await trio.sleep(self._jittered(self._heartbeat_interval_s))

    # -- broadcast -----------------------------------------------------------------

    async def _broadcast_loop(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready = trio.Event()
            batch, self._outbox = self._outbox, []
            merged = LWWMap()
            for delta in batch:
                merged.merge(delta)
            for part in crdt.split_step(crdt.SyncStep(delta=merged), self.max_message_bytes):
                data = crdt.encode_map(part.delta)
                for peer in sorted(self._transport.peers()):
                    self._send(peer, data, "map")
            await trio.sleep(0)

    def _send(self, peer: str, data: bytes, kind: str) -> None:
        if self._transport.send(peer, data):
            self._count(self.stats.messages_sent, self.stats.bytes_sent, kind, len(data))

    @staticmethod
    def _count(messages: dict[str, int], sizes: dict[str, int], kind: str, size: int) -> None:
        messages[kind] = messages.get(kind, 0) + 1
        sizes[kind] = sizes.get(kind, 0) + size

    # -- anti-entropy and join -----------------------------------------------------------

    def _start_sync(self, peer: str) -> None:
        if self._synced.is_set():  # a joining node pulls instead (see _join)
            self._send(peer, crdt.encode_sync_step(crdt.sync_start(self._state)), "sync")

    def _on_sync(self, peer: str, step: crdt.SyncStep) -> None:
        if not self._synced.is_set():
            # A joining node answers nothing: its state is partial, and answering
            # would make a peer resend everything, or let two joiners call each
            # other's empty state complete. It merges pages and counts coverage, and
            # builds no Merkle tree meanwhile. Its own writes, if any, reach the
            # others by anti-entropy once it is synced.
            if step.complete:
                self._coverage.setdefault(peer, Coverage()).add(step.complete)
            if step.delta._regs:
                self._admit(step.delta)
            self.stats.sync_rounds += 1
            self.stats.last_sync_time = trio.current_time()
            if self._coverage.get(peer, Coverage()).complete:
                self._synced.set()
                log.info("node %s: synced from %s (%d keys)", self.node_id, peer, len(self._state))
            self._page_arrived.set()
            return
        if step.delta._regs:
            step = attrs.evolve(step, delta=self._hold_back(step.delta))
        self._note_convergence(peer, step)
        answer, changed = crdt.sync_respond(self._state, step)
        self.stats.sync_rounds += 1
        self.stats.last_sync_time = trio.current_time()
        self._after_merge(changed)
        for part in crdt.split_step(
            answer, self.max_message_bytes, position_of=self._state.position_of
        ):
            self._send(peer, crdt.encode_sync_step(part), "sync")

    def _note_convergence(self, peer: str, step: crdt.SyncStep) -> None:
        """Record when a peer's root digest (an exchange's opening) equalled ours."""
        summaries = step.digest.summaries
        opening = bool(summaries) and summaries[0][0] == crdt.ROOT and not step.delta._regs
        if opening and self._state.digest().summaries[0] == summaries[0]:
            self._peers[peer].converged_wall_ms = self._wall_ms()

    async def _gc_loop(self) -> None:
        while True:
            await trio.sleep(self._jittered(self._gc_interval_s))
            self.collect_tombstones()

    def collect_tombstones(self) -> int:
        """Collect the tombstones that are safe to drop now (see "Tombstones").

        Runs every ``gc_interval_s`` on its own; call it to force a collection.

        Returns:
            How many tombstones were dropped.
        """
        now, now_ms = trio.current_time(), self._wall_ms()
        known = [p for p in self._peers.values() if now - p.last_seen <= self._horizon_s]
        safe = min(
            (-1 if p.converged_wall_ms is None else p.converged_wall_ms for p in known),
            default=now_ms,
        )
        # A live peer's floor is safe too: it checked that every member it knew held
        # those tombstones. Adopting it keeps the states equal, so digests still match.
        adopted = max((p.floor_ms for p in self._peers.values() if p.alive), default=0)
        cutoff = max(
            safe - self._max_offset_ms, now_ms - int(self._horizon_s * 1000), min(adopted, now_ms)
        )
        if cutoff <= self._floor_ms:
            return 0
        dropped = self._state.collect_tombstones(Timestamp(cutoff, 0, "\x00"))
        self._floor_ms = cutoff
        self.stats.tombstones_collected += dropped
        if dropped:
            log.info("node %s: collected %d tombstones", self.node_id, dropped)
        return dropped

    def _drop_state(self, why: str) -> None:
        log.warning("node %s: dropping its state and re-syncing: %s", self.node_id, why)
        self.stats.state_drops += 1
        old = self._state
        self._state, self._held = LWWMap(), LWWMap()
        self._coverage.clear()
        self._floor_ms = 0
        self._after_merge(set(old._live))  # views and subscribers see the keys go
        self._synced = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._join)

    async def _anti_entropy_loop(self) -> None:
        while True:
            await trio.sleep(self._sync_interval_s * self._rng.uniform(0.5, 1.5))
            live = sorted(n for n, p in self._peers.items() if p.alive)
            if live:
                self._start_sync(self._rng.choice(live))

    async def _join(self) -> None:
        if not self._transport.seeded:
            log.info("node %s: no seeds, starting alone", self.node_id)
            self._synced.set()
            return
        deadline = trio.current_time() + self._join_timeout_s
        while not self._synced.is_set():
            # Only a synced peer may vouch for the cluster's state (heartbeats say who).
            candidates = sorted(n for n, p in self._peers.items() if p.alive and p.synced)
            if candidates:
                peer = self._rng.choice(candidates)
                missing = self._coverage.setdefault(peer, Coverage()).missing()
                self._send(peer, crdt.encode_sync_step(crdt.sync_pull(missing)), "sync")
                # Pull again only when pages stop coming: a large state takes a peer
                # a while to page out, and pulling again would make it start over.
                while not self._synced.is_set():
                    self._page_arrived = trio.Event()
                    with trio.move_on_after(self._jittered(self._join_retry_s)) as waiting:
                        await self._page_arrived.wait()
                    if waiting.cancelled_caught:
                        break
                continue
            elif trio.current_time() >= deadline:
                log.warning(
                    "node %s: no peer answered within %s s; starting alone",
                    self.node_id,
                    self._join_timeout_s,
                )
                self._synced.set()
                return
            self._candidate_heard = trio.Event()
            with trio.move_on_after(self._jittered(self._heartbeat_interval_s)):
                await self._candidate_heard.wait()  # wake as soon as a synced peer speaks up

    def _jittered(self, seconds: float) -> float:
        """``seconds`` +-10%, from the node's seeded generator.

        Nodes' timers never line up exactly, which spreads their traffic, and keeps
        simulations replayable (trio breaks ties between equal deadlines arbitrarily).
        """
        return seconds * self._rng.uniform(0.9, 1.1)

    def __repr__(self) -> str:
        return f"<Node {self.node_id}/{self.incarnation} members={sorted(self.members())}>"
