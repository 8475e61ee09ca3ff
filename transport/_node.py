"""Node: replicated maps over a Transport, with membership, anti-entropy and stability."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import secrets
import statistics
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, cast

import attrs
import trio

import crdt
from crdt import Coverage, DecodeError, Key, LWWMap
from crdt._stability import ZERO, Point, Stability
from crdt._values import canonical_value
from hlc import HLC, ClockSkewError, Timestamp, system_wall_ms

from ._calls import CallResult, Calls, Handler, MemberEvent, UnknownService, check_service
from ._holdback import HeldEntries
from ._hrw import rendezvous_owner
from ._interface import PeerDown, PeerUp, Received, Transport, TransportClosed
from ._membership import LEFT, Membership, name_of
from ._replicated import ReplicatedMap
from ._wire import (
    Heartbeat,
    decode_ack,
    decode_call,
    decode_heartbeat,
    decode_members,
    decode_reply,
    decode_services,
    encode_ack,
    encode_heartbeat,
    encode_members,
    encode_services,
    peek_kind,
)

log = logging.getLogger("chorus.node")
_MISSING: Any = object()


class WriteRefused(RuntimeError):
    """This node takes no writes now; ``reason`` says why (and the message).

    A node refuses writes until it has joined the cluster and synced, and whenever
    its clock is further than ``max_offset_ms`` from its peers' median, or its
    hybrid clock runs ahead of it: a write stamped by a wrong clock would beat later
    writes everywhere (or be beaten by older ones), so the node with the wrong clock
    refuses its own writes instead. See `Node.not_ready_reason`.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@attrs.define
class NodeStats:
    """Counters of one node, readable at any time (cumulative, but for ``unconfirmed``)."""

    messages_sent: dict[str, int] = attrs.field(factory=dict)
    bytes_sent: dict[str, int] = attrs.field(factory=dict)
    messages_received: dict[str, int] = attrs.field(factory=dict)
    bytes_received: dict[str, int] = attrs.field(factory=dict)
    writes: int = 0
    writes_refused: int = 0  # WriteRefused raised: not ready, or this node's clock is off
    merges: int = 0
    keys_changed: int = 0
    rejected: int = 0  # malformed or unknown messages, dropped
    not_members: int = 0  # map and sync messages from incarnations not (or no longer) members
    held_back: int = 0  # entries further ahead than max_offset_ms, held for later
    held_dropped: int = 0  # held entries refused or dropped: see HeldEntries
    deltas_dropped: int = 0  # outbox full: left to anti-entropy
    sync_rounds: int = 0  # sync steps answered
    last_sync_time: float | None = None  # trio time of the last sync step answered
    joins: int = 0  # peers seen coming up or restarting
    leaves: int = 0  # peers declared down
    tombstones_collected: int = 0
    stale_dropped: int = 0  # entries below the floor, for absent keys
    state_drops: int = 0  # times this node was removed and re-synced from empty
    writes_lost: int = 0  # own writes the cluster did not hold when this node was removed
    unconfirmed: int = 0  # own writes no peer is known to hold yet (now, not cumulative)
    clock_steps: int = 0  # wall-clock steps noticed (see Node.last_clock_step)
    # Calls by outcome: made by this node (``calls_out``: "ok", "timeout",
    # "unavailable", "error", "unknown_service", "overloaded") and served here
    # (``calls_in``: "ok", "error", "expired", "overloaded", "unknown_service",
    # "restarted", "duplicate").
    calls_out: dict[str, int] = attrs.field(factory=dict)
    calls_in: dict[str, int] = attrs.field(factory=dict)


@attrs.frozen
class ClockStep:
    """A step of a node's wall clock, as NTP makes when it sets a clock at once.

    Noticed when the wall clock moved more than ``max_offset_ms`` further (or less
    far) than trio's monotonic clock between two readings. A machine suspended and
    resumed looks the same: its monotonic clock stood still meanwhile.

    Attributes:
        by_ms: how far the wall clock jumped, in ms: positive forward, negative back.
        wall_ms: the wall clock just after the step, in ms since the epoch.
        time: when the node noticed it, in seconds of trio's clock.
    """

    by_ms: int
    wall_ms: int
    time: float

    @property
    def direction(self) -> str:
        """``"forward"`` or ``"back"``."""
        return "forward" if self.by_ms > 0 else "back"


@attrs.frozen
class PeerStatus:
    """What a node knows of one peer, at the moment `Node.peer_view` was called.

    Attributes:
        node_id: the peer's name.
        incarnation: its incarnation id, from its last heartbeat this node took (else
            from the member set); None if neither says.
        member: an incarnation of that name is a current member of this node's
            cluster.
        alive: the failure detector's verdict: heard within ``failure_timeout_s``,
            and not reported down by the transport since (a link that drops
            declares its peer down at once).
        connected: the transport has a link to it now (`Transport.peers`).
        state: ``"up"`` (alive, connected, heard within half of
            ``failure_timeout_s``), ``"suspect"`` (alive, but silent for longer than
            that, as a stopped process whose connection stays open, or not
            connected) or ``"down"`` (not alive: declared down, or never heard).
        last_heard: when this node last heard it, in seconds of trio's clock (None:
            never).
        clock_offset_ms: this node's clock minus the peer's, in ms (positive: this
            node is ahead), from its last heartbeat; None without one.
        refused_incarnation: an incarnation of that name whose heartbeats this node
            refuses, another holding the name (see `Node`); None when none is.
    """

    node_id: str
    incarnation: str | None
    member: bool
    alive: bool
    connected: bool
    state: str
    last_heard: float | None
    clock_offset_ms: int | None
    refused_incarnation: str | None


@attrs.define
class _Peer:
    incarnation: str | None = None
    last_seen: float = -math.inf
    alive: bool = False
    synced: bool = False  # as its last heartbeat said: may a joiner pull from it?
    cluster: str | None = None
    membership: bytes = b""
    wall_ms: int | None = None  # its clock in its last heartbeat...
    wall_at: float = 0.0  # ...received at this trio time
    step_ms: int = 0  # its wall clock is its clock plus this (a step it has not adopted)
    members_sent: float = -math.inf  # when we last sent it our membership...
    members_sent_digest: bytes = b""  # ...and its digest then
    floor: Point = ZERO  # its tombstone floor, as its last heartbeat said
    # The incarnation id of its last heartbeat when that one was refused (another
    # incarnation of the name is a member, heard lately): see Node._refusal.
    refused: str | None = None
    # The services it serves, as its incarnation `services_of` last said (see calls).
    services: frozenset[str] = frozenset()
    services_of: str | None = None
    services_seq: int = 0
    # The incarnation a member event last announced as up (None: down or never up).
    announced: str | None = None


class Node:
    """One member of a chorus cluster: replicated maps over a `Transport`.

    Use inside trio: ``async with Node("a", transport) as node:``. Entering starts the
    node's tasks (receive, broadcast, heartbeat, anti-entropy, collection, join) in a
    nursery of its own; leaving cancels them and closes the transport.

    Args:
        node_id: this node's name, as peers know it on the transport.
        transport: a `Transport` whose ``node_id`` is ``node_id``.
        wall_ms: the wall clock, in ms since the epoch, for the HLC. Simulations pass
            `MemoryNetwork.wall_clock` (skewed as they like). Its steps are noticed
            against trio's clock (see "Clock steps" below).
        incarnation: an id for this run of the node (default: 8 random hex digits).
            Timestamps carry ``node_id/incarnation``, so a restart never reuses one,
            even with a clock that went backwards.
        max_offset_ms: the most two clocks may differ, in ms. Entries further ahead
            of the local clock are held back (see `HeldEntries`); a node whose clock
            is further than this from its peers' median refuses its own writes.
        max_hold_ms: entries further ahead than this, in ms, are refused outright
            (logged and counted in ``stats.held_dropped``; default one hour).
        heartbeat_interval_s: seconds between heartbeats to each peer.
        failure_timeout_s: a peer not heard from for this long is declared down.
            With the defaults a dead peer is noticed within 3 s.
        sync_interval_s: mean seconds between anti-entropy rounds with a random live
            peer; each wait is jittered by +-50%.
        join_timeout_s: with ``bootstrap``, how long a node with seeds waits for a
            cluster before it founds one (logged as a warning); it does so only when
            no live peer belongs to a cluster and none with a smaller node id is
            waiting too.
        join_retry_s: while joining, how often to re-pull what has not arrived.
        held_retry_s: seconds between looks at the held entries.
        max_message_bytes: sync messages are cut to this size (at most the
            transport's limit).
        max_value_bytes: the largest encoded value a write accepts, in bytes.
        outbox_size: deltas queued for broadcast beyond which new ones are dropped
            and left to anti-entropy, so a slow network never blocks writers.
        tombstone_horizon_s: how long, in seconds, a member may stay silent before
            the others vote to expel it (default one day). See "Tombstones".
        gc_interval_s: seconds between tombstone collections and expulsion votes
            (default 1).
        bootstrap: a node with seeds may found a new cluster when none answers
            within ``join_timeout_s`` (for starting a whole cluster at once). Without
            it (the default) a node with seeds waits for its cluster however long it
            takes, and reports not ready meanwhile: a node restarted while cut off
            must not start a second cluster, whose writes the first would discard.
            A node without seeds always founds one.
        bootstrap_expect: as Consul's ``bootstrap_expect``: the number of nodes,
            this one included, that start a new cluster together. A node with seeds
            founds a cluster only once it hears at least ``bootstrap_expect - 1``
            live peers, none of which belongs to a cluster, and its node id is the
            smallest of them all (logged as a warning); the others join it. There is
            no timeout: a cluster is never founded with fewer. So every node can be
            started with the same options on every start: the first start of all
            founds the cluster, a restart while the others are up joins it, and a
            restart while cut off waits (not ready, saying so). Start exactly that
            many nodes the first time (with more, two groups that cannot hear each
            other could each found one; the younger then gives way). Not with
            ``bootstrap``.

    Raises:
        ValueError: ``transport`` is for another node id; ``bootstrap_expect`` is
            under 1, or given with ``bootstrap``.

    Membership: members are incarnations (``name/incarnation``) in a replicated
    `Membership` (see its rules). A node without seeds founds a cluster; one with
    seeds joins one, founding one only with ``bootstrap`` or ``bootstrap_expect``. A
    new node is admitted by votes of a majority of the members; a restarted node (a
    new incarnation of a member's name) is admitted by the first member that hears
    it and has not heard the old incarnation for ``failure_timeout_s`` (at once
    after a graceful stop, which leaves), and its old incarnation is removed. While
    the old incarnation is heard, the new one is refused: two live processes with
    one node id do not replace each other. The refused one learns the member set,
    reports not ready with the reason (`not_ready_reason`), logs it at WARNING,
    and is admitted once the other stops. So is a node whose transport says peers
    refuse its node id (``TcpTransport.refusals``: another live process holds it
    there). A node takes writes only once admitted, synced from
    a member (pulled after its admission), and with its clocks sane (`ready`); else
    writes raise `WriteRefused`. A node that did not run for longer than
    ``failure_timeout_s`` (a stopped process, a frozen machine) is not ready until it
    hears a member peer again. `drain` hands every write to a peer and leaves.

    Tombstones (causal stability, see `crdt._stability.Stability`): heartbeats carry
    the sender's HLC reading, the root digest of its state and its coverage vector.
    When a peer's root digest equals ours, we hold everything it held at that
    reading. The stable point is the least reading every member is known to cover
    of every member; tombstones below it are collected, and entries below it for
    keys this node does not hold are refused (``stats.stale_dropped``), so a
    deleted key never comes back. No node's clock or membership view decides alone.
    A member silent for ``tombstone_horizon_s`` holds collection back until a
    majority of members stands accusing it (a minority never expels the majority,
    neither half of an even split expels the other, and members accusing each other
    cancel out: their tombstones wait for the heal). An expelled node that comes
    back learns it from the others, drops its state, and joins again under a new
    incarnation: its writes the others did not hold are lost, logged at ERROR and
    counted in ``stats.writes_lost``.

    Time: timers use trio's clock, so ``trio.testing.MockClock`` drives a whole
    simulated cluster; the HLC reads only the node's clock (`wall_ms`).

    Clock steps: each time the node reads its wall clock it compares the wall clock's
    advance since the last reading with trio's monotonic clock's. When they differ
    by more than ``max_offset_ms`` the wall clock stepped (NTP set it at once, or
    the machine was suspended): the node counts it (``stats.clock_steps``), keeps it
    (`last_clock_step`) and logs it at WARNING. It cannot tell yet whether the step
    set a wrong clock right or a right clock wrong, so its own clock (`wall_ms`,
    what its HLC reads) keeps the time it had: its last reading before the step,
    advanced by trio's monotonic clock; `unconfirmed_step_ms` is the wall clock
    minus that. Then:

    - as soon as the wall clock comes back within ``max_offset_ms`` of that time,
      however it comes back (stepped back, or slewed back gradually as chrony and
      ntpd do), the step is over and the node's clock is the wall clock again;
    - the node adopts the step when other clocks agree with it (it had been
      wrong): the median of its wall clock and theirs is within ``max_offset_ms``
      of its wall clock. Those clocks are the member peers' whose heartbeats
      arrived after the step (at least one): the wall clocks of them all when,
      with itself, they count strictly more than half of the members; or the
      clocks of those whose clocks did not step (no unconfirmed step of their
      own); or, when every one of them has a step of its own and the time this
      node kept is more than ``max_offset_ms`` off its live member peers' median
      anyway (so it refuses writes), the wall clocks of them all. Otherwise it
      keeps its time, and is ready as long as that time agrees with the median
      of its live member peers' clocks (`clock_offset_ms`). A node with live
      member peers refuses writes while the heartbeats since the step make no
      majority and a live member peer has not been heard since (within
      ``heartbeat_interval_s``);
    - so the only member keeps its time until it hears a peer. Nodes that step
      together on the minority side of a split, from times that agree, do not
      confirm each other: none of them is fenced by the times they kept. A clock
      that did not step confirms a clock set right, whether or not other peers
      stepped too (most members down, say, and two clocks that ran fast together
      set right beside one that was right all along). And when every live peer
      stepped and the times kept leave this node fenced (most members down, one
      clock ran fast and one slow, both set right), it adopts the step its
      peers' wall clocks agree with, and then, its clock no longer stepped,
      confirms theirs: keeping those times would fence a node for good. The
      limit: one fault on top of another (a node already off its peers' median,
      then a time source gone wrong that steps the others to its time) can set a
      minority's clocks wrong together; a clock that did not step confirming a
      step (the rule before) had the same limit.

    Only members count: heartbeats of nodes that are not current members of this
    node's cluster (never admitted, removed, or of another cluster) move no
    median, here or in `clock_offset_ms`. Gradual drift with no step is not
    noticed here: the offset check against the live member peers' median
    (`clock_offset_ms`) is what catches it, so a node cut off from its peers
    follows its wall clock's drift until it hears them again. The kept time lives
    in memory: a node restarted while its wall clock is still off starts from the
    wall clock, and its peers' median decides as usual.

    Writes made during a step are therefore stamped with the time the node kept:
    a step that is undone, or that the other clocks disagree with, leaves no write
    and no HLC reading in the future, and later writes of other nodes to the same
    keys win as they would have. Adopting a step forward moves the HLC ahead.
    Adopting a step back (a clock that ran fast was set right) leaves the HLC
    ahead of the wall clock, since an HLC never goes back: the node then refuses
    writes until real time catches up, or a restart gives it a fresh clock
    (`not_ready_reason` says how far ahead, and which step). The writes it
    stamped while fast stay as they are: its peers hold those more than
    ``max_offset_ms`` ahead of their clocks until their time comes (see
    `HeldEntries`).
    """

    def __init__(
        self,
        node_id: str,
        transport: Transport,
        *,
        wall_ms: Callable[[], int] = system_wall_ms,
        incarnation: str | None = None,
        max_offset_ms: int = 500,
        max_hold_ms: int = 3_600_000,
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
        gc_interval_s: float = 1.0,
        bootstrap: bool = False,
        bootstrap_expect: int | None = None,
    ) -> None:
        if transport.node_id != node_id:
            raise ValueError(f"transport is for {transport.node_id!r}, not {node_id!r}")
        if bootstrap_expect is not None and (
            type(bootstrap_expect) is not int or bootstrap_expect < 1
        ):
            raise ValueError(
                f"bootstrap_expect must be an int of at least 1, not {bootstrap_expect!r}"
            )
        if bootstrap_expect is not None and bootstrap:
            raise ValueError("give bootstrap or bootstrap_expect, not both")
        self.node_id = node_id
        self.incarnation = incarnation or secrets.token_hex(4)
        self._transport = transport
        self._wall_ms = wall_ms
        self._max_offset_ms = max_offset_ms
        self._wall_reading: tuple[int, float] | None = None  # (wall ms, trio s), last read
        # While a step is unconfirmed: this node's clock at a trio time (ms, s), the
        # last reading before the step; the clock runs on from it on trio's clock.
        self._anchor: tuple[int, float] | None = None
        self._unconfirmed_step_ms = 0  # the wall clock minus this node's clock, last read
        self._last_clock_step: ClockStep | None = None
        self._clock = HLC(self._me, max_offset_ms=max_offset_ms, wall_ms=self._checked_wall_ms)
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
        self._gc_interval_s = gc_interval_s
        self._bootstrap = bootstrap
        self._bootstrap_expect = bootstrap_expect
        self._refusals_logged: set[str] = set()  # incarnations refused, logged once each
        self._taken_logged: str | None = None  # the member holding our name, logged
        self._rng = random.Random(self._me)

        self.stats = NodeStats()
        self._state = LWWMap()  # every map's entries, keyed (map name, key)
        self._held = HeldEntries(max_hold_ms=max_hold_ms)
        self._floor: Point = ZERO  # tombstones below it were collected
        self._tombstone_keepers: list[Callable[[Any], bool]] = []
        self._write_floor: Point = ZERO  # our writes stamp above this (see _on_members)
        self._membership = Membership(silent=self._lost_touch)
        self._stability = Stability(self._me)
        self._heard: dict[str, float] = {}  # member incarnation id -> trio time last heard
        self._lost_check: dict[Key, tuple[int, int, str, bytes]] = {}  # see _drop_state
        self._maps: dict[str, ReplicatedMap] = {}
        self._peers: dict[str, _Peer] = {}
        self._coverage: dict[str, Coverage] = {}
        self._synced = trio.Event()
        self._candidate_heard = trio.Event()  # a synced peer spoke: see _join
        self._page_arrived = trio.Event()  # a page of a pull arrived: see _join
        self._outbox: list[LWWMap] = []
        self._outbox_ready = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._joining = False
        self._pulling_from: str | None = None
        # Own writes no peer is known to hold yet, and the batches they went out in
        # (keyed by each batch's newest timestamp, which peers acknowledge).
        self._unconfirmed: dict[Key, tuple[int, int, str, bytes]] = {}
        self._batches: dict[Point, list[tuple[Key, tuple[int, int, str, bytes]]]] = {}
        self._confirmed = trio.Event()
        self._draining = False
        # The heartbeat loop's last run (trio time), and a pause it found: (how long
        # the node did not run, when it ran again). See _paused_reason.
        self._last_tick: float | None = None
        self._pause: tuple[float, float] | None = None
        self._calls = Calls(self)
        self._member_watchers: list[Callable[[MemberEvent], None]] = []
        # Counts changes of this node's services: once above 0, it tells them again
        # now and then (and to each peer that links up).
        self._services_seq = 0
        self._ticks = 0

    @property
    def _me(self) -> str:
        return f"{self.node_id}/{self.incarnation}"

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
        log.info("node %s started", self._me)
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
        log.info("node %s stopped", self._me)
        return await self._nursery_manager.__aexit__(exc_type, exc, tb)

    # -- public surface --------------------------------------------------------------

    def keep_tombstones(self, predicate: Callable[[tuple[str, Key]], bool]) -> Callable[[], None]:
        """Keep the tombstones of the keys ``predicate`` holds for, however stable:
        ``predicate((map_name, key))`` is asked at each collection, in this node's
        thread, of each tombstone about to go. For a layer that joins a map's
        entries with writes of its own (the schedules of `flags.FlagStore`), to
        which a collected tombstone would read as "never written".

        Returns:
            A function that stops keeping them.
        """
        self._tombstone_keepers.append(predicate)

        def stop() -> None:
            if predicate in self._tombstone_keepers:
                self._tombstone_keepers.remove(predicate)

        return stop

    def _keeps_tombstone(self, full_key: Key) -> bool:
        return any(keep(full_key) for keep in self._tombstone_keepers)

    def start_soon(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``async_fn(*args)`` in this node's nursery: cancelled when the node
        stops; an exception it raises stops the node.

        Raises:
            RuntimeError: the node is not running.
        """
        if self._nursery is None:
            raise RuntimeError(f"node {self.node_id!r} is not running")
        self._nursery.start_soon(async_fn, *args)

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
        """True once the node has pulled a member's whole state, or founded the cluster."""
        return self._synced.is_set()

    @property
    def admitted(self) -> bool:
        """True while this incarnation is a member of the cluster."""
        return self._me in self._membership.members()

    @property
    def ready(self) -> bool:
        """True when the node takes writes: admitted, synced, and its clock not off."""
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why the node is not `ready` (None when it is)."""
        if self._draining:
            return "shutting down"
        refusals = self._transport_refusals()
        if refusals:
            return f"the cluster refuses this node: {refusals}"
        taken = self._name_taken()
        if taken is not None:
            return taken
        if not self._synced.is_set():
            waiting = self._bootstrap_wait()
            return "not synced with the cluster yet" + (f": {waiting}" if waiting else "")
        if not self.admitted:
            return "not a member of the cluster (joining)"
        paused = self._paused_reason()
        if paused is not None:
            return paused
        wall = self._checked_wall_ms()  # notices a step this very moment
        self._settle_clock_step()
        step = self._last_clock_step
        if self._unconfirmed_step_ms and step is not None:
            # Undecided while a live member peer may still make a majority with the
            # heartbeats since the step (each sends one per heartbeat interval).
            heard = len(self._peer_walls(since=step.time))
            if heard < len(self._peer_walls()) and not self._majority(heard):
                return (
                    f"this node's {self._step_text()}: waiting for a heartbeat from its "
                    "live peers, whose clocks with its own must make a majority of the "
                    "members to tell whether the step or the time it kept is right: "
                    "refusing writes"
                )
        offset = self.clock_offset_ms()
        if offset is not None and abs(offset) > self._max_offset_ms:
            unconfirmed = (
                f"; its {self._step_text()}, and its peers' clocks agree with neither"
                if self._unconfirmed_step_ms
                else ""
            )
            return (
                f"this node's clock is {offset:+d} ms off its peers' median "
                f"(max_offset_ms={self._max_offset_ms}{unconfirmed}): refusing writes"
            )
        lead = self._clock.last.wall_ms - wall
        if lead > 2 * self._max_offset_ms:
            # A clock that ran fast and was set right leaves the HLC ahead: writes
            # would be stamped in the future until real time catches up.
            why = (
                f"its {self._step_text()}, and its peers' clocks agreed with the step"
                if step is not None and step.by_ms < 0
                else "its clock ran ahead and was set back"
            )
            return (
                f"this node's hybrid clock is {lead} ms ahead of its wall clock "
                f"(over 2 * max_offset_ms; {why}): refusing writes until real time "
                f"catches up in {lead / 1000:.0f} s, or a restart gives it a fresh clock"
            )
        return None

    def _transport_refusals(self) -> str:
        """What the transport says of peers refusing our node id ("" if nothing, or
        a transport that cannot tell): another live process holds it there."""
        refusals = getattr(self._transport, "refusals", None)
        found = refusals() if callable(refusals) else None
        if not found or not isinstance(found, dict):
            return ""
        return "; ".join(sorted({str(reason) for reason in found.values()}))

    def _name_taken(self) -> str | None:
        """Why this incarnation waits while another of its name is a member (None if
        it does not): it is refused while the cluster still hears that one."""
        membership = self._membership
        if membership.cluster is None or self.admitted or self._me in membership.removed:
            return None
        older = membership.member_of_name(self.node_id)
        if older is None:
            return None
        reason = (
            f"node id {self.node_id} is taken by the member {older}, which the cluster "
            f"still hears: is a second process running with --node-id {self.node_id}? "
            f"(a restart is admitted {self._failure_timeout_s:g} s after its old "
            "incarnation stops being heard, at once after a graceful stop)"
        )
        if self._taken_logged != older:
            self._taken_logged = older
            log.warning("node %s: waiting to be admitted: %s", self._me, reason)
        return reason

    def _waiting_peers(self) -> list[str] | None:
        """The live peers heard (by heartbeat) waiting for a cluster, by name; None
        if a live peer belongs to a cluster (join it, found none)."""
        live = [(n, p) for n, p in self._peers.items() if p.alive and p.incarnation is not None]
        if any(p.cluster is not None for _, p in live):
            return None
        return sorted(n for n, _ in live)

    def _bootstrap_wait(self) -> str:
        """With ``bootstrap_expect``, what founding waits for ("" otherwise)."""
        expect = self._bootstrap_expect
        if expect is None or self._membership.cluster is not None:
            return ""
        waiting = self._waiting_peers()
        if waiting is None:
            return "joining the cluster of its peers"
        smaller = [n for n in waiting if n < self.node_id]
        if len(waiting) + 1 >= expect and smaller:
            return (
                f"{len(waiting) + 1} nodes wait for a cluster; {smaller[0]}, whose node id "
                "is the smallest, founds it"
            )
        return (
            f"waiting for a cluster to join, or for {expect} nodes to found one "
            f"(bootstrap_expect={expect}); it hears {len(waiting)} other node(s) "
            f"waiting{': ' + ', '.join(waiting) if waiting else ''}"
        )

    def clock_offset_ms(self) -> int | None:
        """This node's clock (`wall_ms`) minus the median of its live member peers'
        clocks and its own, in ms, estimated from heartbeats (network delay counts as
        error; a peer's clock is what its HLC reads: see "Clock steps"); None with no
        live peer that is a current member of this node's cluster. With two nodes
        the median is their mean, so a clock gap beyond ``2 * max_offset_ms`` makes
        both refuse writes: neither can tell which is right.
        """
        mine = self._checked_wall_ms()
        walls = self._peer_walls()
        if not walls:
            return None
        return int(mine - statistics.median([mine, *walls]))

    def clock_lead_ms(self) -> int:
        """How far this node's hybrid clock runs ahead of its clock (`wall_ms`), in
        ms: at most a few ms normally, and negative while it has issued nothing for
        a while. Far ahead after a step back was adopted (see "Clock steps")."""
        return self._clock.last.wall_ms - self._checked_wall_ms()

    def clock_status(self) -> dict[str, Any]:
        """This node's clock as a JSON-ready dict, for status pages (``/cluster``).

        Keys: ``offset_ms`` (`clock_offset_ms`), ``lead_ms`` (`clock_lead_ms`),
        ``steps`` (``stats.clock_steps``), ``unconfirmed_step_ms``
        (`unconfirmed_step_ms`), and ``last_step``: None, or the `last_clock_step`
        as ``by_ms`` (ms, positive forward), ``direction``, ``wall_ms`` (the wall
        clock just after it, ms since the epoch) and ``seconds_ago``.
        """
        step = self._last_clock_step
        return {
            "offset_ms": self.clock_offset_ms(),
            "lead_ms": self.clock_lead_ms(),
            "steps": self.stats.clock_steps,
            "unconfirmed_step_ms": self._unconfirmed_step_ms,
            "last_step": None
            if step is None
            else {
                "by_ms": step.by_ms,
                "direction": step.direction,
                "wall_ms": step.wall_ms,
                "seconds_ago": round(trio.current_time() - step.time, 3),
            },
        }

    @property
    def last_clock_step(self) -> ClockStep | None:
        """The last step of the wall clock this node noticed (None: none yet)."""
        return self._last_clock_step

    @property
    def unconfirmed_step_ms(self) -> int:
        """How far the wall clock is off the time this node kept through steps a
        majority of the members' clocks has not confirmed yet, in ms (positive:
        ahead), as of the node's last reading of its wall clock; 0 when no step is
        pending. This node's clock (`wall_ms`, what its HLC reads) is the wall
        clock minus this. See "Clock steps"."""
        return self._unconfirmed_step_ms

    def _peer_walls(self, since: float = -math.inf) -> list[int]:
        """Live member peers' clocks now, in ms (what their HLCs read), from their
        heartbeats received at or after trio time ``since``. See `_peer_clocks`."""
        return [clock for clock, _ in self._peer_clocks(since)]

    def _peer_clocks(self, since: float = -math.inf) -> list[tuple[int, int]]:
        """``(clock, step)`` of each live member peer whose last heartbeat arrived at
        or after trio time ``since``: its clock now, in ms (what its HLC reads), and
        the step it has not adopted, in ms (its wall clock is the sum).

        Only current members of this node's cluster count (incarnations in its
        `Membership`, not removed): anyone who can reach the transport may send
        heartbeats, and a few senders that are not members must not move the
        medians that readiness and step confirmation rest on.
        """
        now, members = trio.current_time(), self._membership.members()
        return [
            (p.wall_ms + int((now - p.wall_at) * 1000), p.step_ms)
            for n, p in self._peers.items()
            if p.alive
            and p.wall_ms is not None
            and p.wall_at >= since
            and f"{n}/{p.incarnation}" in members
        ]

    def _majority(self, peers: int) -> bool:
        """Whether this node's clock and ``peers`` member peers' clocks are a strict
        majority of the members (this node counted once), with at least one peer."""
        count = len(self._membership.members() | {self._me})
        return peers >= 1 and 1 + peers > count / 2

    def _checked_wall_ms(self) -> int:
        """Read the wall clock, notice a step (or the end of one), and return this
        node's clock in ms: the wall clock, or while a step is unconfirmed the time
        it kept (its last reading before the step, advanced by trio's clock).

        What the HLC reads. Must run in trio: it reads trio's clock too.
        """
        wall, now = self._wall_ms(), trio.current_time()
        last, self._wall_reading = self._wall_reading, (wall, now)
        if last is not None:
            step = wall - last[0] - round((now - last[1]) * 1000)
            if abs(step) > self._max_offset_ms:
                self._on_clock_step(step, wall, now, now - last[1], last)
                return wall - self._unconfirmed_step_ms
        anchor = self._anchor
        if anchor is None:
            return wall
        clock = anchor[0] + round((now - anchor[1]) * 1000)
        if abs(wall - clock) > self._max_offset_ms:
            self._unconfirmed_step_ms = wall - clock
            return clock
        # Back without a step: slewed (as chrony and ntpd correct a clock gradually).
        was = self._unconfirmed_step_ms
        self._anchor, self._unconfirmed_step_ms = None, 0
        log.info(
            "node %s: wall clock came back to within max_offset_ms of the time this node "
            "kept (it was %+d ms off at the last reading): the step is over",
            self._me,
            was,
        )
        return wall

    def _on_clock_step(
        self, step: int, wall: int, now: float, interval_s: float, last: tuple[int, float]
    ) -> None:
        self.stats.clock_steps += 1
        self._last_clock_step = ClockStep(by_ms=step, wall_ms=wall, time=now)
        if self._anchor is None:
            self._anchor = last  # the last reading before the step was trusted
        anchor = self._anchor
        unconfirmed = wall - (anchor[0] + round((now - anchor[1]) * 1000))
        if abs(unconfirmed) <= self._max_offset_ms:
            self._anchor, unconfirmed = None, 0
            then = "back to the time this node's clock kept: the step is over"
        else:
            then = (
                f"this node's clock keeps its time ({-unconfirmed:+d} ms from the wall "
                "clock) until its member peers' clocks confirm the step"
            )
        self._unconfirmed_step_ms = unconfirmed
        log.warning(
            "node %s: wall clock stepped %+d ms (%s) between two readings %.3f s apart; %s",
            self._me,
            step,
            "forward" if step > 0 else "back",
            interval_s,
            then,
        )

    def _settle_clock_step(self) -> None:
        """Adopt an unconfirmed step once other clocks agree with the wall clock: the
        median of its wall clock and theirs is within ``max_offset_ms`` of it. The
        clocks asked are those of member peers heard since the step (at least one),
        any of: the wall clocks of them all, when with this node they make a
        majority of the members; the clocks of those with no unconfirmed step of
        their own; the wall clocks of them all, when every one has a step of its
        own and the time this node kept is off its live peers' median anyway (it
        refuses writes). See "Clock steps"."""
        # Read the wall clock through the check: a step not noticed yet would be
        # adopted as agreeing with the peers, then noticed as a step of its own.
        kept = self._checked_wall_ms()
        step = self._last_clock_step
        if not self._unconfirmed_step_ms or step is None:
            return
        assert self._wall_reading is not None  # set by the check above
        wall = self._wall_reading[0]
        peers = self._peer_clocks(since=step.time)
        walls = [clock + peer_step for clock, peer_step in peers]
        settled = [clock for clock, peer_step in peers if not peer_step]

        def agree(clocks: list[int]) -> bool:
            median = statistics.median([wall, *clocks])
            return bool(clocks) and abs(wall - median) <= self._max_offset_ms

        def fenced() -> bool:  # the time it kept is off its live peers' median
            others = self._peer_walls()
            return abs(kept - statistics.median([kept, *others])) > self._max_offset_ms

        if not (
            (self._majority(len(walls)) and agree(walls))
            or agree(settled)
            # Peers whose clocks stepped too could confirm each other's steps when
            # they stepped together: only when the time this node kept is off their
            # median (the kept times do not hold the live members together) are
            # their wall clocks, which agree with its own, the better bet.
            or (walls and not settled and fenced() and agree(walls))
        ):
            return  # keep the time it kept: clock_offset_ms says if that one agrees
        adopted, self._unconfirmed_step_ms = self._unconfirmed_step_ms, 0
        self._anchor = None
        lead = self._clock.last.wall_ms - wall
        log.log(
            logging.WARNING if lead > 2 * self._max_offset_ms else logging.INFO,
            "node %s: its peers' clocks agree with its wall clock: step of %+d ms adopted%s",
            self._me,
            adopted,
            f"; its hybrid clock is {lead} ms ahead, so it refuses writes until real time "
            "catches up"
            if lead > 2 * self._max_offset_ms
            else "",
        )

    def _step_text(self) -> str:
        step = self._last_clock_step
        assert step is not None
        ago = trio.current_time() - step.time
        return f"wall clock stepped {step.by_ms:+d} ms ({step.direction}) {ago:.1f} s ago"

    @property
    def floor(self) -> Timestamp:
        """Tombstones below this point were collected (``(0, 0)``: none yet)."""
        return Timestamp(self._floor[0], self._floor[1], "\x00")

    @property
    def membership(self) -> Membership:
        """The replicated member set, as this node knows it (do not modify)."""
        return self._membership

    @property
    def held(self) -> int:
        """How many entries are held back for being too far ahead of this clock."""
        return len(self._held)

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

    async def wait_replicated(self, timeout_s: float = 2.0) -> bool:
        """Wait until another node holds every write made here so far.

        A write returns once applied locally; this is the stronger acknowledgement:
        at least one peer has merged it (it acknowledged the delta, or its coverage
        report includes it), so it survives this node's crash.

        Args:
            timeout_s: seconds to wait at most.

        Returns:
            True when every write made before the call is held by a peer (or was
            superseded there); False on timeout, or at once when no peer is up.
        """
        waiting = dict(self._unconfirmed)
        with trio.move_on_after(timeout_s):
            while True:
                unconfirmed = self._unconfirmed
                if all(unconfirmed.get(k) != e for k, e in waiting.items()):
                    return True
                if not any(p.alive for p in self._peers.values()):
                    return False
                self._confirmed = trio.Event()
                await self._confirmed.wait()
        return False

    async def drain(self, timeout_s: float = 5.0) -> int:
        """Stop gracefully: refuse writes, hand every write made here to a peer, leave.

        Writes are resent to every member peer until one acknowledges each, for at
        most ``timeout_s`` seconds. Then the node leaves the member set (peers stop
        waiting for it before collecting tombstones) and tells its peers.

        Returns:
            How many writes no peer is known to hold: 0 when nothing can be lost.
            Callers log a positive count as an error.
        """
        self._draining = True
        with trio.move_on_after(timeout_s):
            while self._unconfirmed:
                peers = [p for p in sorted(self._transport.peers()) if self._from_member(p)]
                # A write since superseded here by another node's is that write's
                # business now: only our entries still current are resent.
                regs = self._state._regs
                self._confirm([(k, e) for k, e in self._unconfirmed.items() if regs.get(k) != e])
                if peers and self._unconfirmed:
                    delta = self._state._subset(self._unconfirmed)
                    self._batches[max(e[:2] for e in self._unconfirmed.values())] = list(
                        self._unconfirmed.items()
                    )
                    for part in crdt.split_step(crdt.SyncStep(delta=delta), self.max_message_bytes):
                        data = crdt.encode_map(part.delta)
                        for peer in peers:
                            self._send(peer, data, "map")
                self._confirmed = trio.Event()
                with trio.move_on_after(0.2):
                    await self._confirmed.wait()
        left = len(self._unconfirmed)
        if self._membership.leave(self._me):
            # Tell the peers until one has it (its heartbeat shows our member set).
            digest = self._membership.digest()
            with trio.move_on_after(min(1.0, timeout_s)):
                while not any(p.alive and p.membership == digest for p in self._peers.values()):
                    for peer in sorted(self._transport.peers()):
                        self._send_members(peer, force=True)
                    await trio.sleep(0.05)
        log.log(
            logging.ERROR if left else logging.INFO,
            "node %s: drained; %d writes not held by any peer",
            self._me,
            left,
        )
        return left

    def _confirm(self, items: list[tuple[Key, tuple[int, int, str, bytes]]]) -> None:
        unconfirmed = self._unconfirmed
        for key, entry in items:
            if unconfirmed.get(key) == entry:
                del unconfirmed[key]
        self.stats.unconfirmed = len(unconfirmed)
        self._confirmed.set()

    def members(self) -> frozenset[str]:
        """The live nodes as this node sees them: itself and peers heard from lately."""
        return frozenset([self.node_id, *(n for n, p in self._peers.items() if p.alive)])

    def peer_view(self) -> list[PeerStatus]:
        """One `PeerStatus` per peer this node knows, sorted by node id: peers it
        has heard from, names in its member set, and peers its transport links it
        to now. Cheap (one pass over those, one reading of this node's clock, no
        I/O), for status pages (``/cluster``)."""
        now = trio.current_time()
        linked = self._transport.peers()
        by_name = {name_of(m): m.rpartition("/")[2] for m in self._membership.members()}
        mine = self.wall_ms()
        view = []
        for peer in sorted((self._peers.keys() | by_name.keys() | linked) - {self.node_id}):
            record = self._peers.get(peer) or _Peer()
            heard = record.last_seen if record.last_seen > -math.inf else None
            connected = peer in linked
            if not record.alive:
                state = "down"
            elif connected and now - record.last_seen <= self._failure_timeout_s / 2:
                state = "up"
            else:
                state = "suspect"
            offset = None
            if record.wall_ms is not None:
                offset = mine - (record.wall_ms + int((now - record.wall_at) * 1000))
            view.append(
                PeerStatus(
                    node_id=peer,
                    incarnation=record.incarnation or by_name.get(peer),
                    member=peer in by_name,
                    alive=record.alive,
                    connected=connected,
                    state=state,
                    last_heard=heard,
                    clock_offset_ms=offset,
                    refused_incarnation=record.refused,
                )
            )
        return view

    def owner(self, key: Key) -> str:
        """The member that owns ``key`` by rendezvous (HRW) hashing over `members`."""
        return rendezvous_owner(key, self.members())

    # -- calls (see transport._calls) ---------------------------------------------------

    def serve(
        self, service: str, handler: Handler, *, max_concurrent: int = 64
    ) -> Callable[[], None]:
        """Serve ``service``: ``await handler(caller_node_id, payload)`` answers each
        call of it, from a peer (`call`) or from this node (`call_owner`).

        The handler runs in the node's trio thread, in a task of its own, cancelled
        when the caller's timeout has passed here. What it returns is the answer
        (a value a map can hold); what it raises reaches the caller as
        `RemoteError`, and is logged here. Peers learn which services each node
        serves within a heartbeat or two (`services_of`, `MemberEvent`).

        Args:
            service: 1 to 100 ASCII characters.
            handler: an async function of ``(caller, payload)``.
            max_concurrent: handlers of this service running at once; a call
                beyond that is answered `Overloaded` at once.

        Returns:
            A function that stops serving it (calls arriving after answer
            `UnknownService`).

        Raises:
            ValueError: a bad name or ``max_concurrent``, a service served already,
                or more than 64 services.
            TypeError: ``handler`` is not callable.
        """
        return self._calls.serve(service, handler, max_concurrent)

    def services(self) -> frozenset[str]:
        """The services this node serves."""
        return self._calls.services()

    def services_of(self, peer: str) -> frozenset[str]:
        """The services ``peer`` serves, as its current incarnation last told this
        node (empty when unknown); this node's own for its own id."""
        if peer == self.node_id:
            return self.services()
        record = self._peers.get(peer)
        if record is None or record.services_of is None or record.services_of != record.incarnation:
            return frozenset()
        return record.services

    def serving(self, service: str) -> frozenset[str]:
        """The live members that serve ``service``: the candidates of `call_owner`.
        A node counts while it is live (`members`), its current incarnation is a
        member of the cluster, and that incarnation said it serves ``service``."""
        members = self._membership.members()
        found = set()
        for name in self.members():
            if service not in self.services_of(name):
                continue
            incarnation = (
                self.incarnation if name == self.node_id else self._peers[name].incarnation
            )
            if f"{name}/{incarnation}" in members:
                found.add(name)
        return frozenset(found)

    def owner_of(self, key: Key, service: str) -> str | None:
        """The owner of ``key`` among the nodes `serving` ``service``, by rendezvous
        (HRW) hashing; None when none does. Two nodes agree on it once they see the
        same live members and services; see `call_owner` for the window when they
        do not."""
        candidates = self.serving(service)
        return rendezvous_owner(key, candidates) if candidates else None

    async def call(
        self, peer: str, service: str, payload: Any = None, *, timeout_s: float = 5.0
    ) -> Any:
        """Call ``service`` on ``peer`` and return its answer (see `serve`).

        At most once: the call is sent once, never retried (see `transport._calls`).

        Args:
            peer: a node id; this node's own id serves the call here.
            payload: the argument, a value a map can hold, at most the transport's
                message size less 256 bytes once encoded.
            timeout_s: how long to wait for the answer, in seconds; the callee gives
                up on the handler after that long too.

        Raises:
            CallTimeout: no answer in time.
            PeerUnavailable: not linked to ``peer``, or it went down or restarted
                while the call was in flight.
            UnknownService: ``peer`` does not serve ``service``.
            Overloaded: too many calls in flight, there or from here.
            RemoteError: the handler raised (or its answer could not be sent).
            TypeError, ValueError: the payload cannot be sent (a type a map cannot
                hold; too big); nothing is sent.
        """
        check_service(service)
        if not (timeout_s > 0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive finite number, got {timeout_s!r}")
        encoded = self._calls.encode_payload(peer, service, payload)
        if peer == self.node_id:
            return await self._calls.call_here(service, encoded, timeout_s)
        return await self._calls.call(peer, service, encoded, timeout_s)

    async def call_owner(
        self, key: Key, service: str, payload: Any = None, *, timeout_s: float = 5.0
    ) -> CallResult:
        """Call ``service`` on the owner of ``key`` (`owner_of`) and say who answered.

        The owner is elected among the live members that serve ``service`` by
        rendezvous (HRW) hashing, so each key has one owner while the nodes agree on
        who is live, and a node leaving moves only its own keys. While membership
        changes two nodes may each see a different owner for a while. Measured in
        the simulator (`transport.scenarios.ownership_window`, 1-5 ms hops,
        defaults): a crash whose connections drop, or a graceful stop, is seen by
        every node within one hop; a node that starts serving is counted everywhere
        within a few hops (up to 4 heartbeats if its announcement is lost); a host
        that goes silent without its connections dropping is seen down after the
        failure timeout plus up to a heartbeat (3.5 s by default), and until then
        calls routed to it fail with `PeerUnavailable` or `CallTimeout`. A node cut
        off from the rest names itself the owner of every key for as long as the
        cut lasts: no bound. Work that must happen once per key should tolerate
        that (`ReplicatedCache` does: a value computed twice is written twice, the
        later one wins).

        Raises:
            UnknownService: no live member serves ``service``.
            The errors of `call`.
        """
        owner = self.owner_of(key, service)
        if owner is None:
            raise UnknownService(self.node_id, service, "no live member serves it")
        return CallResult(owner, await self.call(owner, service, payload, timeout_s=timeout_s))

    def watch_members(self, callback: Callable[[MemberEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every `MemberEvent`: a peer up, down,
        restarted, or serving other services (Erlang's ``net_kernel:monitor_nodes``).
        Runs in the node's trio thread; an exception it raises is logged.

        Returns:
            A function that stops the calls.
        """
        self._member_watchers.append(callback)

        def unwatch() -> None:
            if callback in self._member_watchers:
                self._member_watchers.remove(callback)

        return unwatch

    def _tell_members(self, event: MemberEvent) -> None:
        for callback in list(self._member_watchers):
            try:
                callback(event)
            except Exception:
                log.exception("node %s: member watcher %r raised", self._me, callback)

    def _services_message(self) -> bytes:
        return encode_services(self.incarnation, self._services_seq, self.services())

    def _services_changed(self) -> None:
        self._services_seq += 1
        message = self._services_message()
        for peer in sorted(self._transport.peers()):
            self._send(peer, message, "services")

    def _on_services(self, peer: str, incarnation: str, seq: int, services: frozenset[str]) -> None:
        record = self._peers[peer]
        if record.incarnation is not None and incarnation != record.incarnation:
            return  # an older (or not yet heard) incarnation's: its heartbeat decides
        if record.services_of == incarnation and seq < record.services_seq:
            return  # overtaken by a newer announcement of the same incarnation
        record.services_seq = seq
        before = record.services if record.services_of == incarnation else frozenset()
        changed = services != before
        record.services, record.services_of = services, incarnation
        if changed and record.announced == incarnation:
            self._tell_members(MemberEvent("services", peer, incarnation, services))

    def wall_ms(self) -> int:
        """This node's clock, in ms since the epoch: the wall clock it was given, less
        any step not confirmed yet (`unconfirmed_step_ms`, as of the node's last
        reading). Its HLC reads the same clock, read afresh. Cheap, and callable
        from any thread (it notices no step, and reads no trio clock)."""
        return self._wall_ms() - self._unconfirmed_step_ms

    @property
    def clock(self) -> HLC:
        """This node's hybrid logical clock."""
        return self._clock

    def state(self) -> LWWMap:
        """A copy of the node's full replicated state (all maps, tombstones included)."""
        return self._state.copy()

    # -- writes --------------------------------------------------------------------

    def _check_write(self, full_key: tuple[str, Key]) -> Point:
        """Raise what a write of ``full_key`` would be refused with now; else return
        the point it must be stamped after. Writes nothing (a refusal is counted)."""
        if self._nursery is None:
            raise RuntimeError(f"node {self.node_id!r} is not running")
        reason = self.not_ready_reason()
        if reason is not None:
            self.stats.writes_refused += 1
            raise WriteRefused(f"node {self.node_id!r}: {reason}")
        # Order the write after everything this node has seen of the key, held
        # entries included, and after what the members that admitted it had seen.
        after = max(self._held.timestamp(full_key) or ZERO, self._write_floor)
        ahead = after[0] - self._checked_wall_ms()
        if ahead > 2 * self._max_offset_ms:
            self.stats.writes_refused += 1
            raise WriteRefused(
                f"node {self.node_id!r}: an entry for {full_key[1]!r} from "
                f"{ahead} ms in the future is held back here; "
                "a write now would have to be stamped after it (retry later)"
            )
        return after

    def _check_value(self, value: Any) -> None:
        """Raise what a write of ``value`` would be refused with (see `_write`)."""
        self._check_size(len(canonical_value(value)[0]))

    def _check_size(self, size: int) -> None:
        """Raise ValueError for an encoded value of ``size`` bytes over the limit."""
        if size > self.max_value_bytes:
            raise ValueError(
                f"value of {size} bytes is over max_value_bytes={self.max_value_bytes}"
            )

    def _write(self, name: str, key: Key, value: Any, *, delete: bool = False) -> None:
        self._write_many(name, [(key, value, delete)])

    def _write_many(self, name: str, writes: list[tuple[Key, Any, bool]]) -> None:
        """Write ``(key, value, delete)`` triples of map ``name`` as one delta: every
        key and value is checked first, and a refusal writes nothing.
        The keys get increasing timestamps, the map's subscribers one notification
        with every key, and the broadcast one outbox entry."""
        full_keys = [(name, key) for key, _, _ in writes]
        afters = [self._check_write(full_key) for full_key in full_keys]
        scratch = LWWMap()
        for full_key, after, (_, value, delete) in zip(full_keys, afters, writes, strict=True):
            ts = self._clock.now_after(Timestamp(after[0], after[1], "\x00"))
            if delete:
                scratch.delete(full_key, ts)
            else:
                scratch.set(full_key, value, ts)
                self._check_size(len(scratch._regs[full_key][3]))
        self.stats.writes += len(writes)
        regs = scratch._regs
        for full_key in full_keys:
            self._unconfirmed[full_key] = regs[full_key]
        self.stats.unconfirmed = len(self._unconfirmed)
        self._after_merge(self._state.merge(scratch))
        if len(self._outbox) >= self._outbox_size:
            self.stats.deltas_dropped += 1
        else:
            self._outbox.append(scratch)
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
                self._send(event.peer, self._heartbeat(), "heartbeat")
                if self._services_seq:
                    self._send(event.peer, self._services_message(), "services")
            elif isinstance(event, PeerDown):
                self._declare_down(event.peer, "transport reports it down")

    def _on_message(self, peer: str, data: bytes) -> None:
        try:
            kind = peek_kind(data)
            if kind == "map":
                message: Any = crdt.decode_map(data, max_bytes=self.max_message_bytes)
            elif kind == "sync":
                message = crdt.decode_sync_step(data, max_bytes=self.max_message_bytes)
            elif kind == "members":
                message = decode_members(data)
            elif kind == "ack":
                message = decode_ack(data)
            elif kind == "call":
                message = decode_call(data)
            elif kind == "reply":
                message = decode_reply(data)
            elif kind == "services":
                message = decode_services(data)
            else:
                message = decode_heartbeat(data)
        except DecodeError as exc:
            self.stats.rejected += 1
            log.warning("node %s: rejected a message from %s: %s", self._me, peer, exc)
            return
        # Only a well-formed message counts as a sign of life.
        self._count(self.stats.messages_received, self.stats.bytes_received, kind, len(data))
        self._heard_from(peer)
        if kind == "heartbeat":
            self._on_heartbeat(peer, message)
        elif kind == "members":
            self._on_members(peer, *message)
        elif kind == "call":
            self._calls.on_call(peer, message)
        elif kind == "reply":
            self._calls.on_reply(peer, *message)
        elif kind == "services":
            self._on_services(peer, *message)
        elif kind == "ack":
            if self._peers[peer].refused is not None:
                # Maybe from the refused process (it merges our deltas too): not
                # proof that a member holds our writes. Coverage confirms them.
                return
            batch = self._batches.pop(message, None)
            if batch is not None:
                self._confirm(batch)
        elif not self._from_member(peer):
            # Data only from members: a removed incarnation's data stops here, which
            # is what lets the others cover everything it left (see Stability).
            self.stats.not_members += 1
        elif kind == "map":
            self._acknowledge(peer, self._admit(message))
        else:
            self._on_sync(peer, message)

    def _acknowledge(self, peer: str, delta: LWWMap) -> None:
        """Tell a peer we merged (not held back) its entries (see `wait_replicated`).

        Only a member acknowledges: a node waiting to be admitted (a joiner, or a
        second process refused for its node id) merges deltas too, but may never be
        admitted, so its copy proves nothing about durability."""
        if not self.admitted:
            return
        author = f"{peer}/{self._peers[peer].incarnation}"
        newest = max((e[:2] for e in delta._regs.values() if e[2] == author), default=None)
        if newest is not None:
            self._send(peer, encode_ack(newest), "ack")

    def _from_member(self, peer: str) -> bool:
        record = self._peers.get(peer)
        return (
            record is not None
            and record.incarnation is not None
            and f"{peer}/{record.incarnation}" in self._membership.members()
        )

    def _hold_back(self, delta: LWWMap) -> LWWMap:
        """Return the part of ``delta`` to merge now, passed through the HLC.

        Entries not keyed ``(map name, key)`` are dropped and counted as rejected.
        Entries below the floor for keys this node does not hold were superseded by
        a collected tombstone: dropped (``stats.stale_dropped``). Entries more than
        ``max_offset_ms`` ahead of the local clock are held (see `HeldEntries`).
        """
        regs = delta._regs
        if not all(type(k) is tuple and len(k) == 2 and type(k[0]) is str for k in regs):
            good = [k for k in regs if type(k) is tuple and len(k) == 2 and type(k[0]) is str]
            self.stats.rejected += len(regs) - len(good)
            log.warning(
                "node %s: dropped %d entries not keyed (map, key)", self._me, len(regs) - len(good)
            )
            delta = delta._subset(good)
            regs = delta._regs
        floor, ours = self._floor, self._state._regs
        if floor > ZERO and any((e[0], e[1]) < floor and k not in ours for k, e in regs.items()):
            fresh = [k for k, e in regs.items() if (e[0], e[1]) >= floor or k in ours]
            self.stats.stale_dropped += len(regs) - len(fresh)
            delta = delta._subset(fresh)
            regs = delta._regs
        removed = {w for w, why in self._membership.removed.items() if why != LEFT}
        if removed and any(e[2] in removed for e in regs.values()):
            # Future entries of an incarnation known to be gone are not waited for.
            limit = self._checked_wall_ms() + self._max_offset_ms
            keep = [k for k, e in regs.items() if e[0] <= limit or e[2] not in removed]
            self._count_held_dropped(len(regs) - len(keep), "their writer is gone")
            delta = delta._subset(keep)
        before = len(self._held)
        delta, refused = self._held.split(delta, self._checked_wall_ms(), self._max_offset_ms)
        if len(self._held) > before:
            self.stats.held_back += len(self._held) - before
            log.info(
                "node %s: holding back %d entries ahead of the clock",
                self._me,
                len(self._held) - before,
            )
        self._count_held_dropped(
            refused, f"over {self._held.max_hold_ms} ms ahead or held set full"
        )
        newest = delta.max_timestamp()
        if newest is not None:
            try:
                self._clock.update(newest)
            except ClockSkewError:  # the wall clock stepped back since `split`
                # Hold all of it (an offset below any timestamp), under the usual bound.
                _, refused = self._held.split(delta, self._checked_wall_ms(), -(2**62))
                self._count_held_dropped(
                    refused, f"over {self._held.max_hold_ms} ms ahead or held set full"
                )
                return LWWMap()
        return delta

    def _count_held_dropped(self, count: int, why: str) -> None:
        if count:
            self.stats.held_dropped += count
            log.warning("node %s: dropped %d entries from the future: %s", self._me, count, why)

    def _admit(self, delta: LWWMap) -> LWWMap:
        """Merge what ``delta`` has that may be merged now; return that part."""
        accepted = self._hold_back(delta)
        changed = self._state.merge(accepted)
        self.stats.merges += 1
        self._after_merge(changed)
        return accepted

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
            due = self._held.due(self._checked_wall_ms(), self._max_offset_ms)
            if due._regs:
                self._admit(due)

    # -- membership ----------------------------------------------------------------

    def _heard_from(self, peer: str) -> None:
        record = self._peers.setdefault(peer, _Peer())
        # The name is heard. Its incarnation is heard only through its heartbeats
        # (see _on_heartbeat): other messages do not say which process sent them,
        # and a second process with this name must not keep the first one's alive.
        record.last_seen = trio.current_time()
        if not record.alive:
            record.alive = True
            self.stats.joins += 1
            log.info("node %s: peer %s is up", self._me, peer)
            self._start_sync(peer)

    def _on_heartbeat(self, peer: str, heartbeat: Heartbeat) -> None:
        record = self._peers[peer]
        incarnation = heartbeat.incarnation
        ours = self._membership.cluster
        if heartbeat.cluster is not None and ours is not None and heartbeat.cluster < ours:
            # A node of an older cluster: ours gives way below, whoever holds the
            # name here (a duplicate that founded ours while the original was
            # paused must not keep the original out).
            refusal = None
        else:
            refusal = self._refusal(peer, f"{peer}/{incarnation}")
        if refusal is not None:
            self._refuse(peer, f"{peer}/{incarnation}", refusal)
            return
        record.refused = None
        if self._pause is not None and f"{peer}/{incarnation}" in self._membership.members():
            self._pause = None  # a member heard since the pause: its news comes next
        if record.incarnation is not None and record.incarnation != incarnation:
            self.stats.joins += 1
            log.info("node %s: peer %s restarted (%s)", self._me, peer, incarnation)
            self._calls.peer_lost(peer, f"it restarted as {incarnation}")
            self._start_sync(peer)
        record.incarnation = incarnation
        if record.announced != incarnation:
            kind = "up" if record.announced is None else "restarted"
            record.announced = incarnation
            self._tell_members(MemberEvent(kind, peer, incarnation, self.services_of(peer)))
        record.synced = heartbeat.synced
        record.cluster = heartbeat.cluster
        record.membership = heartbeat.membership
        record.floor = heartbeat.floor
        record.wall_ms, record.wall_at = heartbeat.wall_ms, trio.current_time()
        record.step_ms = heartbeat.step_ms
        self._settle_clock_step()
        sender = f"{peer}/{incarnation}"
        self._heard[sender] = record.wall_at
        membership = self._membership
        if heartbeat.cluster is not None and ours is not None and heartbeat.cluster != ours:
            if heartbeat.cluster < ours:  # the older cluster wins
                self._drop_state(f"met {peer} of the older cluster {heartbeat.cluster}", fresh=True)
            return
        if sender in membership.removed:
            self._send_members(peer)  # it must learn that it was removed
            return
        fresh = not heartbeat.synced
        if ours is not None and membership.propose(sender, self._me, fresh=fresh):
            self._membership_changed()
        if heartbeat.membership != membership.digest() and (heartbeat.cluster or ours):
            self._send_members(peer)
        if record.synced and sender in membership.members():
            self._candidate_heard.set()
        # A clock far ahead is refused (see clock_offset_ms and not_ready_reason).
        with contextlib.suppress(ClockSkewError):
            self._clock.update(Timestamp(*heartbeat.clock, sender))
        self._on_stability(sender, heartbeat)

    def _refusal(self, peer: str, sender: str) -> str | None:
        """Why the heartbeat of incarnation ``sender`` of node ``peer`` is refused
        (None: it is not): another incarnation of that name is a member, and this
        node heard that one's own heartbeat less than ``failure_timeout_s`` ago (or
        learned it was a member less than that ago). A restart after a crash is
        admitted once the old incarnation has been silent that long; after a
        graceful stop, at once (it left). Two live processes with one node id
        never replace each other: the one admitted first stays."""
        membership = self._membership
        if membership.cluster is None or sender in membership.admitted:
            return None
        if sender in membership.removed:
            return None  # it is told so below
        older = membership.member_of_name(peer)
        if older is None or older == sender:
            return None
        quiet = trio.current_time() - self._heard.get(older, -math.inf)
        if quiet >= self._failure_timeout_s:
            return None
        return (
            f"node id {peer} is taken by the member {older}, heard {quiet:.1f} s ago: "
            f"refusing its new incarnation {sender} until {older} is silent for "
            f"{self._failure_timeout_s:g} s (a second process with --node-id {peer}?)"
        )

    def _refuse(self, peer: str, sender: str, why: str) -> None:
        """Refuse a heartbeat: it changes nothing of what this node knows of ``peer``
        (whose member incarnation stays heard and trusted), and the sender learns the
        member set, which tells it why it waits."""
        record = self._peers[peer]
        record.refused = sender
        if sender not in self._refusals_logged:
            if len(self._refusals_logged) >= 1024:
                self._refusals_logged.clear()
            self._refusals_logged.add(sender)
            log.warning("node %s: %s", self._me, why)
        self._send_members(peer)

    def _on_stability(self, sender: str, heartbeat: Heartbeat) -> None:
        stability = self._stability
        if heartbeat.epoch != stability.epoch or sender not in stability.members:
            return
        stability.merge_reports(heartbeat.reports, heartbeat.epoch)
        mine = stability.index_of(self._me)
        if mine is not None and self._unconfirmed and len(heartbeat.coverage) > mine:
            # It holds everything we held when our clock read its coverage of us.
            covered = heartbeat.coverage[mine]
            self._confirm([(k, e) for k, e in self._unconfirmed.items() if e[:2] <= covered])
        # A peer's floor is a stable point of the same members: safe to adopt once
        # we hold a member's state (a joiner's partial state proves nothing). A true
        # stable point is below every member's clock: never adopt one from the future.
        if self._synced.is_set() and heartbeat.floor > self._floor:
            now = self._clock.now()
            self._raise_floor(min(heartbeat.floor, heartbeat.clock, (now.wall_ms, now.logical)))
        if self.admitted and self._synced.is_set():
            summary = self._state.digest().summaries[0]
            if (summary[1], summary[2]) == heartbeat.root:
                stability.covered(sender, heartbeat.clock, heartbeat.coverage, heartbeat.epoch)

    def _send_members(self, peer: str, *, force: bool = False) -> None:
        record = self._peers.setdefault(peer, _Peer())
        now, digest = trio.current_time(), self._membership.digest()
        # Once per heartbeat interval at most, and the same state again only after a
        # few intervals (in case it was lost): a joining crowd changes it often.
        since = now - record.members_sent
        repeat = digest == record.members_sent_digest
        due = force or since >= self._heartbeat_interval_s * (4 if repeat else 1)
        if due and self._membership.cluster:
            record.members_sent, record.members_sent_digest = now, digest
            clock = self._clock.now()
            self._send(
                peer, encode_members((clock.wall_ms, clock.logical), self._membership), "members"
            )

    def _on_members(self, peer: str, clock: Point, other: Membership) -> None:
        ours = self._membership
        if other.cluster is None or (ours.cluster is not None and other.cluster != ours.cluster):
            return  # another cluster: heartbeats settle which one wins
        was_member = self.admitted
        try:
            changed = ours.merge(other)
        except ValueError:  # pragma: no cover - checked above
            return
        if not was_member and self.admitted:
            # Our first writes go above what the members that admitted us had seen,
            # but not above our clock's max_offset_ms: a member whose hybrid clock
            # runs ahead (a fast clock set right) would fence us for as long.
            limit = (self._checked_wall_ms() + self._max_offset_ms, 0)
            self._write_floor = max(self._write_floor, min(clock, limit))
            self._pulling_from = peer  # it knows we are a member: pull from it first
            for neighbour in sorted(self._transport.peers()):  # tell them before pulling
                self._send_members(neighbour, force=True)
        if changed:
            self._membership_changed()
            # Answer at once: the sender learns what we now hold (a leaving node
            # waits for that) without waiting for our next heartbeat.
            self._send(peer, self._heartbeat(), "heartbeat")
        if other.digest() != ours.digest():
            self._send_members(peer)

    def _membership_changed(self) -> None:
        membership = self._membership
        self._transport.cluster = membership.cluster  # it tells peers (see TcpTransport)
        if self._draining:
            return
        if self._me in membership.removed:
            why = membership.removed[self._me]
            self._drop_state(f"the cluster removed this incarnation ({why})", fresh=False)
            return
        members = membership.members()
        now = trio.current_time()
        for member in members:
            self._heard.setdefault(member, now)
        if self._me in members and membership.second(self._me):
            self._membership_changed()  # our votes may have admitted someone
            return
        if self._stability.reset(members):
            log.info("node %s: members are now %s", self._me, ", ".join(sorted(members)))
        # A writer that left handed its writes over: they wait for our clock. One
        # that was replaced (restarted) or expelled will never vouch for them.
        removed = membership.removed
        dropped = self._held.purge(lambda writer: removed.get(writer, LEFT) != LEFT)
        self._count_held_dropped(dropped, "their writer is gone")
        if self.admitted:
            self._candidate_heard.set()

    def _declare_down(self, peer: str, why: str) -> None:
        record = self._peers.get(peer)
        if record is not None and record.alive:
            record.alive = False
            self.stats.leaves += 1
            log.info("node %s: peer %s is down (%s)", self._me, peer, why)
            self._calls.peer_lost(peer, f"it is down ({why})")
            if record.announced is not None:
                self._tell_members(MemberEvent("down", peer, record.announced, frozenset()))
                record.announced = None

    def _heartbeat(self) -> bytes:
        clock = self._clock.now()
        point = (clock.wall_ms, clock.logical)
        summary = self._state.digest().summaries[0]
        coverage: list[Point] = []
        reports: list[Point] = []
        if self.admitted:
            coverage, reports = self._stability.report(point)
        return encode_heartbeat(
            Heartbeat(
                incarnation=self.incarnation,
                synced=self._synced.is_set() and self.admitted,
                cluster=self._membership.cluster,
                membership=self._membership.digest(),
                epoch=self._stability.epoch,
                clock=point,
                # Its clock, not the raw wall clock: a step not confirmed yet
                # must not pull the peers' medians (with two nodes, it would fence
                # the node whose clock did not step). The step goes along, so that
                # peers can confirm steps against wall clocks.
                wall_ms=self._checked_wall_ms(),
                step_ms=self._unconfirmed_step_ms,
                root=(summary[1], summary[2]),
                floor=self._floor,
                coverage=tuple(coverage),
                reports=tuple(reports),
            )
        )

    def _paused_reason(self) -> str | None:
        """Why this node may hold stale state after it did not run for a while (None
        when it ran all along, or has heard a member peer since).

        A process stopped (SIGSTOP, a frozen VM) or starved for longer than
        ``failure_timeout_s`` could not hear its peers meanwhile: they may have
        written since, or declared it dead and admitted a replacement with its id.
        Until it hears a member peer again it is not ready. A node with no other
        member has nobody to wait for.
        """
        if self._last_tick is None or len(self._membership.members()) < 2:
            return None
        now = trio.current_time()
        if now - self._last_tick > self._failure_timeout_s:  # the loop has not run yet
            gap = now - self._last_tick
        elif self._pause is not None:
            gap = self._pause[0]
        else:
            return None
        return (
            f"this node did not run for {gap:.1f} s (a stopped process or a frozen "
            "machine?): waiting to hear a member peer before it serves again"
        )

    async def _heartbeat_loop(self) -> None:
        while True:
            now = trio.current_time()
            if self._last_tick is not None and now - self._last_tick > self._failure_timeout_s:
                self._pause = (now - self._last_tick, now)
                log.warning(
                    "node %s: did not run for %.1f s; not ready until a member peer is heard",
                    self._me,
                    now - self._last_tick,
                )
            self._last_tick = now
            message = self._heartbeat()
            self._ticks += 1
            # Services go on their own message (older nodes drop an unknown kind, but
            # would refuse a heartbeat of a new shape), told again now and then in
            # case one was lost.
            services = (
                self._services_message() if self._services_seq and self._ticks % 4 == 0 else None
            )
            for peer in sorted(self._transport.peers()):
                self._send(peer, message, "heartbeat")
                if services is not None:
                    self._send(peer, services, "services")
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
            if len(self._batches) >= 4096:  # acknowledgements lost: coverage confirms
                del self._batches[next(iter(self._batches))]
            for part in crdt.split_step(crdt.SyncStep(delta=merged), self.max_message_bytes):
                self._batches[max(e[:2] for e in part.delta._regs.values())] = list(
                    part.delta._regs.items()
                )
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
        if self._synced.is_set() and self._from_member(peer):  # a joiner pulls (see _join)
            self._send(peer, crdt.encode_sync_step(crdt.sync_start(self._state)), "sync")

    def _on_sync(self, peer: str, step: crdt.SyncStep) -> None:
        if not self._synced.is_set():
            # A joining node answers nothing: its state is partial, and answering
            # would make a peer resend everything, or let two joiners call each
            # other's empty state complete. It merges pages and counts coverage, and
            # builds no Merkle tree meanwhile. It takes no writes until synced.
            if not self.admitted or peer != self._pulling_from:
                return  # pages pulled before admission could miss a collection
            if not (step.complete or step.delta._regs):
                return  # an anti-entropy opening, not a page
            if step.complete:
                self._coverage.setdefault(peer, Coverage()).add(step.complete)
            if step.delta._regs:
                self._admit(step.delta)
            self.stats.sync_rounds += 1
            self.stats.last_sync_time = trio.current_time()
            if self._coverage.get(peer, Coverage()).complete:
                # The source collected below its floor before its pages left: so has
                # this copy of its state.
                self._raise_floor(self._peers[peer].floor)
                self._synced.set()
                log.info("node %s: synced from %s (%d keys)", self._me, peer, len(self._state))
                self._count_lost_writes()
            self._page_arrived.set()
            return
        if step.delta._regs:
            step = attrs.evolve(step, delta=self._hold_back(step.delta))
        answer, changed = crdt.sync_respond(self._state, step)
        self.stats.sync_rounds += 1
        self.stats.last_sync_time = trio.current_time()
        self._after_merge(changed)
        for part in crdt.split_step(
            answer, self.max_message_bytes, position_of=self._state.position_of
        ):
            self._send(peer, crdt.encode_sync_step(part), "sync")

    async def _gc_loop(self) -> None:
        while True:
            await trio.sleep(self._jittered(self._gc_interval_s))
            self._vote_expulsions()
            self.collect_tombstones()

    def _lost_touch(self, member: str) -> bool:
        """Whether this node has not heard ``member`` for ``failure_timeout_s`` (or
        never): its accusations then do not count toward an expulsion decided here
        (see `Membership.silent`)."""
        if member == self._me:
            return False
        # Its own heartbeats, not `_heard` (which a member learned from gossip gets
        # on admission, so that its horizon starts): an accuser this node merely
        # learned of, say on joining the minority side of a split, is not heard.
        name, _, incarnation = member.rpartition("/")
        record = self._peers.get(name)
        if record is None or record.incarnation != incarnation or record.wall_at <= 0:
            return True
        return trio.current_time() - record.wall_at > self._failure_timeout_s

    def _vote_expulsions(self) -> None:
        if not self.admitted:
            return
        membership = self._membership
        now, changed = trio.current_time(), False
        accused = membership.accused_by(self._me)
        for member in sorted(membership.members() - {self._me}):
            if now - self._heard.get(member, now) > self._horizon_s:
                if membership.vote_expel(member, self._me):
                    changed = True
                    log.warning(
                        "node %s: accuses %s of silence for over %s s (expelled by a majority)",
                        self._me,
                        member,
                        self._horizon_s,
                    )
            elif member in accused and membership.withdraw(member, self._me):
                changed = True
                log.info("node %s: hears %s again: accusation withdrawn", self._me, member)
        # Accusers count only while this node hears them (`_lost_touch`): ones that
        # were silent when their accusations arrived may be heard again with nothing
        # new to merge, so decide again while any accusation stands.
        if not changed and membership.accusations and membership.decide():
            changed = True
        if changed:
            self._membership_changed()

    def collect_tombstones(self) -> int:
        """Collect the tombstones below the stable point (see "Tombstones").

        Runs every ``gc_interval_s`` on its own; call it to force a collection. Only
        an admitted, synced node that knows every member's report computes one.

        Returns:
            How many tombstones were dropped.
        """
        if not (self.admitted and self._synced.is_set()):
            return 0
        clock = self._clock.now()
        self._stability.report((clock.wall_ms, clock.logical))
        stable = self._stability.stable()
        if stable is None or stable <= self._floor:
            return 0
        return self._raise_floor(stable)

    def _raise_floor(self, point: Point) -> int:
        lowest = self._held.lowest()
        if lowest is not None:
            point = min(point, lowest)  # never refuse what we hold back
        if point <= self._floor:
            return 0
        self._floor = point
        if not self._state.tombstone_count:
            return 0
        keep = self._keeps_tombstone if self._tombstone_keepers else None
        dropped = self._state.collect_tombstones(Timestamp(point[0], point[1], "\x00"), keep)
        self.stats.tombstones_collected += dropped
        if dropped:
            log.info("node %s: collected %d tombstones", self._me, dropped)
        return dropped

    def _drop_state(self, why: str, *, fresh: bool, new_clock: bool = False) -> None:
        """Drop all state and join again under a new incarnation.

        ``fresh``: forget the membership too (we met an older cluster).
        ``new_clock``: start the new incarnation's HLC from the wall clock, not above
        the old one's (which ran ahead of real time).
        """
        old_me = self._me
        log.warning("node %s: dropping its state and joining again: %s", old_me, why)
        self.stats.state_drops += 1
        old = self._state
        self._lost_check = {
            k: e for k, e in old._regs.items() if name_of(e[2]) == self.node_id and e[3]
        }
        self.incarnation = f"{self._rng.getrandbits(32):08x}"
        self._clock = HLC(
            self._me,
            max_offset_ms=self._max_offset_ms,
            wall_ms=self._checked_wall_ms,
            last=None if new_clock else self._clock.last,
        )
        self._state = LWWMap()
        self._unconfirmed.clear()
        self._batches.clear()
        self._held.clear()
        self._coverage.clear()
        self._floor = ZERO
        self._write_floor = ZERO
        if fresh:
            self._membership = Membership(silent=self._lost_touch)
            self._transport.cluster = None
        self._stability = Stability(self._me, self._membership.members())
        self._after_merge(set(old._live))  # views and subscribers see the keys go
        self._synced = trio.Event()
        if self._nursery is not None and not self._joining:
            self._nursery.start_soon(self._join)

    def _count_lost_writes(self) -> None:
        if not self._lost_check:
            return
        regs = self._state._regs
        # Lost: the cluster holds neither that entry nor a newer one for its key.
        lost = sum(1 for k, e in self._lost_check.items() if k not in regs or regs[k] < e)
        self._lost_check = {}
        if lost:
            self.stats.writes_lost += lost
            log.error(
                "node %s: %d writes made while this node was cut off are lost: the cluster "
                "removed it and collected past them",
                self._me,
                lost,
            )

    async def _anti_entropy_loop(self) -> None:
        while True:
            await trio.sleep(self._sync_interval_s * self._rng.uniform(0.5, 1.5))
            live = sorted(n for n, p in self._peers.items() if p.alive)
            if live:
                self._start_sync(self._rng.choice(live))

    def _found(self, why: str) -> None:
        self._membership.found(self._me, f"{self.wall_ms():015d}/{self._me}")
        self._membership_changed()
        self._synced.set()
        log.log(
            logging.INFO if why == "no seeds" else logging.WARNING,
            "node %s: founding a new cluster: %s",
            self._me,
            why,
        )

    async def _join(self) -> None:
        self._joining = True
        try:
            await self._join_cluster()
        finally:
            self._joining = False

    async def _join_cluster(self) -> None:
        if not self._transport.seeded and self.stats.state_drops == 0:
            self._found("no seeds")
            return
        deadline = trio.current_time() + self._join_timeout_s
        while not self._synced.is_set():
            members = self._membership.members()
            candidates = sorted(
                n
                for n, p in self._peers.items()
                if p.alive and p.synced and f"{n}/{p.incarnation}" in members
            )
            if self.admitted and candidates:
                if self._pulling_from not in candidates:
                    self._pulling_from = self._rng.choice(candidates)
                peer = self._pulling_from
                missing = self._coverage.setdefault(peer, Coverage()).missing()
                self._send(peer, crdt.encode_sync_step(crdt.sync_pull(missing)), "sync")
                # Pull again only when pages stop coming: a large state takes a peer
                # a while to page out, and pulling again would make it start over.
                while not self._synced.is_set():
                    self._page_arrived = trio.Event()
                    with trio.move_on_after(self._jittered(self._join_retry_s)) as waiting:
                        await self._page_arrived.wait()
                    if waiting.cancelled_caught:
                        self._pulling_from = None  # try another
                        break
                continue
            expect = self._bootstrap_expect
            if expect is not None and self._membership.cluster is None:
                peers_waiting = self._waiting_peers()
                if (
                    peers_waiting is not None
                    and len(peers_waiting) + 1 >= expect
                    and all(n > self.node_id for n in peers_waiting)
                ):
                    self._found(
                        f"{len(peers_waiting) + 1} nodes wait for a cluster (bootstrap_expect="
                        f"{expect}) and this one's id is the smallest: "
                        f"{', '.join([self.node_id, *peers_waiting])}"
                    )
                    return
            if (
                self._bootstrap
                and self._membership.cluster is None
                and trio.current_time() >= deadline
            ):
                live = {n: p for n, p in self._peers.items() if p.alive}
                if not any(p.cluster for p in live.values()) and all(
                    n > self.node_id for n in live
                ):
                    self._found(f"no cluster answered within {self._join_timeout_s} s")
                    return
            self._candidate_heard = trio.Event()
            with trio.move_on_after(self._jittered(self._heartbeat_interval_s)):
                await self._candidate_heard.wait()  # wake as soon as a synced member speaks

    def _jittered(self, seconds: float) -> float:
        """``seconds`` +-10%, from the node's seeded generator.

        Nodes' timers never line up exactly, which spreads their traffic, and keeps
        simulations replayable (trio breaks ties between equal deadlines arbitrarily).
        """
        return seconds * self._rng.uniform(0.9, 1.1)

    def __repr__(self) -> str:
        return f"<Node {self._me} members={sorted(self.members())}>"
