"""MemoryNetwork: a deterministic, in-process network with fault injection.

Runs under ``trio.testing.MockClock(autojump_threshold=0)``, so hours of simulated
time take milliseconds. Every random choice (latency, loss, duplication, incarnation
ids) comes from one ``random.Random(seed)``, and deliveries are ordered by
(delivery time, send order), so a seed replays the same history.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable

import attrs
import trio

from crdt import DecodeError

from ._interface import Event, PeerDown, PeerUp, Received, Transport, TransportClosed
from ._wire import peek_kind

#: Where simulated wall clocks start: 2023-11-14T22:13:20Z, in ms since the epoch.
SIM_EPOCH_MS = 1_700_000_000_000


@attrs.define
class LinkFaults:
    """Faults on the link from one node to another.

    Attributes:
        loss: probability in [0, 1] that a message is lost.
        duplication: probability in [0, 1] that a message is delivered twice.
        latency_ms: ``(low, high)``: each copy is delayed uniformly in this range, so
            messages sent close together may be reordered.
    """

    loss: float = 0.0
    duplication: float = 0.0
    latency_ms: tuple[float, float] = (1.0, 5.0)

    def __attrs_post_init__(self) -> None:
        if not (0 <= self.loss <= 1 and 0 <= self.duplication <= 1):
            raise ValueError("loss and duplication are probabilities in [0, 1]")
        low, high = self.latency_ms
        if not 0 <= low <= high:
            raise ValueError(
                f"latency_ms must be (low, high) with 0 <= low <= high: {self.latency_ms}"
            )


@attrs.define
class NetworkStats:
    """Counters for the whole network. ``*_by_kind`` split by message kind."""

    sent: int = 0
    sent_bytes: int = 0
    delivered: int = 0
    dropped: int = 0  # lost, cut by a partition or clog, or to a crashed node
    duplicated: int = 0
    largest: int = 0  # the largest message sent, in bytes
    sent_by_kind: dict[str, int] = attrs.field(factory=dict)
    bytes_by_kind: dict[str, int] = attrs.field(factory=dict)


class MemoryNetwork:
    """An in-memory network of named nodes, deterministic for a given seed.

    Args:
        seed: seeds every random choice the network makes.
        loss, duplication, latency_ms: the default `LinkFaults` of every link.
        max_message_bytes: the largest message a transport accepts, in bytes.
        inbox_size: messages queued for one node beyond which new ones are dropped.

    Faults: `partition` and `heal`; `clog` and `unclog` one node (FoundationDB's
    simulator does the same); `set_link` for per-link loss, duplication and latency;
    `crash` a node (its transport closes and peers see it go down). A node restarted
    after a crash gets a new transport from `transport` and comes back empty, as a
    real process would.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        loss: float = 0.0,
        duplication: float = 0.0,
        latency_ms: tuple[float, float] = (1.0, 5.0),
        max_message_bytes: int = 1 << 20,
        inbox_size: int = 10_000,
    ) -> None:
        self.rng = random.Random(seed)
        self.default_faults = LinkFaults(loss, duplication, latency_ms)
        self.max_message_bytes = max_message_bytes
        self.inbox_size = inbox_size
        self.stats = NetworkStats()
        self._links: dict[tuple[str, str], LinkFaults] = {}
        self._nodes: dict[str, MemoryTransport] = {}
        self._groups: list[frozenset[str]] = []
        self._clogged: set[str] = set()
        self._order = itertools.count()

    # -- membership ----------------------------------------------------------------

    def transport(self, node_id: str) -> MemoryTransport:
        """Attach a node and return its transport. Peers see it come up.

        Raises:
            ValueError: a node of that name is attached and has not crashed.
        """
        if node_id in self._nodes:
            raise ValueError(f"node {node_id!r} is already on the network")
        transport = MemoryTransport(self, node_id, seeded=bool(self._nodes))
        for other in self._nodes.values():
            other._deliver_down(node_id)  # a crash of that name not seen yet: first
            other._event(PeerUp(node_id))
            transport._event(PeerUp(other.node_id))
        self._nodes[node_id] = transport
        return transport

    def crash(self, node_id: str) -> None:
        """Detach a node at once: its transport closes, messages queued for it are
        lost. Each peer sees it down after the messages it had already sent arrive,
        as a TCP peer reads what was sent before the connection's end."""
        transport = self._nodes.pop(node_id, None)
        if transport is None:
            return
        transport._close()
        now = trio.current_time()
        for other in self._nodes.values():
            last = max(
                (at for at, _, e in other._heap if isinstance(e, Received) and e.peer == node_id),
                default=None,
            )
            if last is None or last <= now:
                other._event(PeerDown(node_id))
            else:
                other._schedule(last, next(self._order), PeerDown(node_id), force=True)

    def incarnation(self, node_id: str) -> str:
        """A fresh, seeded incarnation id for a node (8 hex digits)."""
        return f"{self.rng.getrandbits(32):08x}"

    @property
    def nodes(self) -> frozenset[str]:
        """The nodes attached now."""
        return frozenset(self._nodes)

    def wall_clock(self, skew_ms: int = 0) -> Callable[[], int]:
        """A wall clock in ms that follows trio's (mock) clock, offset by ``skew_ms``.

        Call the result inside the trio run: it reads ``trio.current_time()``.
        """

        def wall_ms() -> int:
            return SIM_EPOCH_MS + skew_ms + math.floor(trio.current_time() * 1000)

        return wall_ms

    # -- faults --------------------------------------------------------------------

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between nodes of different groups (replacing any partition).

        A node in no group keeps all its links.
        """
        self._groups = [frozenset(g) for g in groups]

    def clog(self, node_id: str) -> None:
        """Drop every message to or from ``node_id`` until `unclog` or `heal`."""
        self._clogged.add(node_id)

    def unclog(self, node_id: str) -> None:
        self._clogged.discard(node_id)

    def heal(self) -> None:
        """Remove every partition and clog (link faults set by `set_link` stay)."""
        self._groups = []
        self._clogged.clear()

    def set_link(
        self,
        a: str,
        b: str,
        *,
        loss: float | None = None,
        duplication: float | None = None,
        latency_ms: tuple[float, float] | None = None,
        both_ways: bool = True,
    ) -> None:
        """Set faults on the link from ``a`` to ``b`` (and back, by default)."""
        for src, dst in [(a, b), (b, a)] if both_ways else [(a, b)]:
            current = self._links.get((src, dst), self.default_faults)
            self._links[(src, dst)] = LinkFaults(
                current.loss if loss is None else loss,
                current.duplication if duplication is None else duplication,
                current.latency_ms if latency_ms is None else latency_ms,
            )

    def connected(self, a: str, b: str) -> bool:
        """True when a message from ``a`` to ``b`` can get through (loss aside)."""
        if a in self._clogged or b in self._clogged:
            return False
        group_a = next((g for g in self._groups if a in g), None)
        group_b = next((g for g in self._groups if b in g), None)
        return group_a is None or group_b is None or group_a is group_b

    # -- delivery ------------------------------------------------------------------

    def _route(self, src: str, dst: str, data: bytes) -> bool:
        stats = self.stats
        try:
            kind = peek_kind(data)
        except DecodeError:
            kind = "other"
        stats.sent += 1
        stats.sent_bytes += len(data)
        stats.largest = max(stats.largest, len(data))
        stats.sent_by_kind[kind] = stats.sent_by_kind.get(kind, 0) + 1
        stats.bytes_by_kind[kind] = stats.bytes_by_kind.get(kind, 0) + len(data)
        target = self._nodes.get(dst)
        faults = self._links.get((src, dst), self.default_faults)
        rng = self.rng
        if target is None or not self.connected(src, dst) or rng.random() < faults.loss:
            stats.dropped += 1
            return False
        copies = 1
        if faults.duplication and rng.random() < faults.duplication:
            copies = 2
            stats.duplicated += 1
        now = trio.current_time()
        low, high = faults.latency_ms
        for _ in range(copies):
            delay_s = rng.uniform(low, high) / 1000
            if not target._schedule(now + delay_s, next(self._order), Received(src, data)):
                stats.dropped += 1
        return True


class MemoryTransport(Transport):
    """One node's transport on a `MemoryNetwork` (made by `MemoryNetwork.transport`)."""

    def __init__(self, network: MemoryNetwork, node_id: str, *, seeded: bool) -> None:
        self._network = network
        self._node_id = node_id
        self._seeded = seeded
        self._heap: list[tuple[float, int, Event]] = []
        self._ready: deque[Event] = deque()
        self._wakeup = trio.Event()
        self._closed = False

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def seeded(self) -> bool:
        return self._seeded

    @property
    def max_message_bytes(self) -> int:
        return self._network.max_message_bytes

    def peers(self) -> frozenset[str]:
        if self._closed:
            return frozenset()
        return frozenset(n for n in self._network._nodes if n != self._node_id)

    def send(self, peer: str, data: bytes) -> bool:
        limit = self._network.max_message_bytes
        if len(data) > limit:
            raise ValueError(f"message of {len(data)} bytes is over the {limit}-byte limit")
        if self._closed or peer == self._node_id:
            return False
        return self._network._route(self._node_id, peer, data)

    async def receive(self) -> Event:
        while True:
            if self._closed:
                raise TransportClosed(f"{self._node_id}: transport closed")
            now = trio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                self._ready.append(heapq.heappop(heap)[2])
            if self._ready:
                event = self._ready.popleft()
                if isinstance(event, Received):
                    self._network.stats.delivered += 1
                return event
            self._wakeup = trio.Event()
            with trio.move_on_at(heap[0][0] if heap else math.inf):
                await self._wakeup.wait()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            if self._network._nodes.get(self._node_id) is self:
                self._network.crash(self._node_id)  # leaving: peers see it go down
            self._close()

    # -- called by the network -------------------------------------------------------

    def _schedule(self, at: float, order: int, event: Event, *, force: bool = False) -> bool:
        full = len(self._heap) + len(self._ready) >= self._network.inbox_size
        if self._closed or (full and not force):
            return False
        heapq.heappush(self._heap, (at, order, event))
        self._wakeup.set()
        return True

    def _deliver_down(self, peer: str) -> None:
        """Make a `PeerDown` of ``peer`` still scheduled (see `MemoryNetwork.crash`)
        ready at once."""
        if any(isinstance(e, PeerDown) and e.peer == peer for _, _, e in self._heap):
            self._heap = [
                x for x in self._heap if not (isinstance(x[2], PeerDown) and x[2].peer == peer)
            ]
            heapq.heapify(self._heap)
            self._ready.append(PeerDown(peer))

    def _event(self, event: Event) -> None:
        if not self._closed:
            self._ready.append(event)
            self._wakeup.set()

    def _close(self) -> None:
        self._closed = True
        self._heap.clear()
        self._ready.clear()
        self._wakeup.set()
