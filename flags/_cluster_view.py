"""The ``GET /cluster`` document of a node: what it knows of itself, its peers and
its transport, as JSON-ready data.

Times the node keeps on trio's monotonic clock (seconds since an arbitrary origin)
are shown as wall times too: ``{"at": ISO-8601 UTC, "age_s": seconds ago}``,
converted by the distance between trio's clock now and the wall clock now.
"""

from __future__ import annotations

import datetime
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import trio

from hlc import Timestamp
from transport import MemberEvent, Node


def wall_time(at: float, *, now: float, now_wall: float) -> float:
    """The wall time, in seconds since the epoch, of ``at`` (seconds of trio's
    clock), given trio's clock ``now`` and the wall clock ``now_wall`` at one moment."""
    return now_wall - (now - at)


def moment(at: float | None, *, now: float, now_wall: float) -> dict[str, Any] | None:
    """``{"at": ISO-8601 UTC with ms, "age_s": seconds ago (ms precision)}`` for the
    trio time ``at``; None for None (never). ``now``/``now_wall`` as in `wall_time`."""
    if at is None:
        return None
    wall = datetime.datetime.fromtimestamp(wall_time(at, now=now, now_wall=now_wall), datetime.UTC)
    return {"at": wall.isoformat(timespec="milliseconds"), "age_s": round(now - at, 3)}


def cluster_document(
    node: Node, transport: Any, *, now_wall: float | None = None
) -> dict[str, Any]:
    """The ``/cluster`` document of ``node`` over ``transport`` (call in its trio run).

    Keys: ``node``, ``incarnation``, ``synced``, ``ready``, ``not_ready_reason``,
    ``clock_offset_ms``, ``clock`` (`transport.Node.clock_status`), ``members``,
    ``membership``, ``floor``, ``held``, ``stats`` (`transport.NodeStats`; its
    ``last_sync_time`` is in seconds of trio's monotonic clock), ``last_sync``
    (wall time and age of that last sync step, or None), ``peers`` (below) and
    ``transport`` (`transport.TcpStats` counters, with ``dialling``, the number of
    addresses dialled, and ``dial_errors`` by address; a transport without those
    gives what it has).

    ``peers``: one dict per peer the node knows (`transport.Node.peer_view`),
    sorted by id: ``id``, ``address`` (``"host:port"`` it advertised, None if the
    transport does not know it), ``incarnation``, ``member``, ``state`` (``"up"``,
    ``"suspect"``, ``"down"``), ``connected``, ``last_heard`` (as ``last_sync``),
    ``clock_offset_ms`` (this node's clock minus the peer's), ``dial_error`` and
    ``refused`` (why dialling that address fails, why that peer refuses our node
    id; None when neither) and ``refused_incarnation``.

    Args:
        now_wall: the wall clock now, in seconds since the epoch (default
            `time.time`); simulations pass their own.
    """
    now = trio.current_time()
    if now_wall is None:
        now_wall = time.time()
    membership = node.membership
    stats = node.stats
    addresses: dict[str, str] = {}
    dial_errors: dict[str, str] = {}
    refusals: dict[str, str] = {}
    transport_view: dict[str, Any] = {}
    if attrs.has(type(getattr(transport, "stats", None))):
        transport_view.update(attrs.asdict(transport.stats))
    if callable(getattr(transport, "dialling", None)):
        addresses = transport.peer_addresses()
        dial_errors, refusals = transport.dial_errors(), transport.refusals()
        transport_view["dialling"] = len(transport.dialling())
        transport_view["dial_errors"] = dial_errors
    peers = []
    for peer in node.peer_view():
        address = addresses.get(peer.node_id)
        refused = refusals.get(address or "")
        peers.append(
            {
                "id": peer.node_id,
                "address": address,
                "incarnation": peer.incarnation,
                "member": peer.member,
                "state": peer.state,
                "connected": peer.connected,
                "last_heard": moment(peer.last_heard, now=now, now_wall=now_wall),
                "clock_offset_ms": peer.clock_offset_ms,
                "dial_error": None if refused else dial_errors.get(address or ""),
                "refused": refused,
                "refused_incarnation": peer.refused_incarnation,
            }
        )
    return {
        "node": node.node_id,
        "incarnation": node.incarnation,
        "synced": node.synced,
        "ready": node.ready,
        "not_ready_reason": node.not_ready_reason(),
        "clock_offset_ms": node.clock_offset_ms(),
        "clock": node.clock_status(),  # steps of the wall clock, HLC lead
        "members": sorted(node.members()),
        "membership": {
            "cluster": membership.cluster,
            "members": sorted(membership.members()),
            "removed": dict(sorted(membership.removed.items())),
        },
        "floor": str(node.floor),
        "held": node.held,
        "stats": attrs.asdict(stats),
        "last_sync": moment(stats.last_sync_time, now=now, now_wall=now_wall),
        "peers": peers,
        "transport": transport_view,
    }


class ClusterHistory:
    """What the cluster page draws: recent propagation times seen by this node and
    recent membership events, each kept to the last ``limit``.

    - `map_changed` (a `transport.ReplicatedMap` subscriber): for a change made on
      another node, the time from its HLC timestamp to now on this node's wall clock,
      in ms. It includes the clock offset between the two nodes (within the cluster's
      ``max_offset_ms``), and is the latest key's age for a batch of keys.
    - `member_event` (a `transport.Node.watch_members` callback): up, down and
      restarted peers.

    Both run in the node's trio thread; `view` gives JSON-ready lists, newest last:
    ``propagation``: ``[{"at": ISO-8601 UTC, "flag": name, "ms": float}]`` and
    ``member_events``: ``[{"at": ..., "event": kind, "member": node id,
    "incarnation": id or None}]``.

    Args:
        node_id: this node's id (its own changes are not propagation).
        read_timestamp: the HLC timestamp of a key of the map (``map.timestamp``).
        wall_s: the wall clock, in seconds since the epoch.
    """

    def __init__(
        self,
        node_id: str,
        read_timestamp: Callable[[Any], Timestamp | None],
        *,
        wall_s: Callable[[], float] = time.time,
        limit: int = 100,
    ) -> None:
        self._node_id = node_id
        self._timestamp = read_timestamp
        self._wall_s = wall_s
        self.propagation: deque[dict[str, Any]] = deque(maxlen=limit)
        self.member_events: deque[dict[str, Any]] = deque(maxlen=limit)

    def _now(self) -> tuple[float, str]:
        now = self._wall_s()
        at = datetime.datetime.fromtimestamp(now, datetime.UTC)
        return now, at.isoformat(timespec="milliseconds")

    def map_changed(self, keys: frozenset[Any]) -> None:
        """Record one propagation time for a change of ``keys`` (map keys) made on
        another node: now minus the newest key's HLC wall time, in ms."""
        latest: tuple[Timestamp, Any] | None = None
        for key in keys:
            ts = self._timestamp(key)
            if ts is not None and (latest is None or ts > latest[0]):
                latest = (ts, key)
        if latest is None or latest[0].node == self._node_id:
            return
        ts, key = latest
        now, at = self._now()
        flag = key[0] if type(key) is tuple and key else repr(key)
        self.propagation.append({"at": at, "flag": flag, "ms": round(now * 1000 - ts.wall_ms, 1)})

    def member_event(self, event: MemberEvent) -> None:
        """Record an up, down or restarted ``event`` (``"services"`` events are not
        kept)."""
        if event.kind == "services":
            return
        _, at = self._now()
        self.member_events.append(
            {"at": at, "event": event.kind, "member": event.node, "incarnation": event.incarnation}
        )

    def view(self) -> dict[str, list[dict[str, Any]]]:
        """``{"propagation": [...], "member_events": [...]}``, newest last (see the
        class notes for each entry's keys)."""
        return {"propagation": list(self.propagation), "member_events": list(self.member_events)}
