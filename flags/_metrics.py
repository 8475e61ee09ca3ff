"""Prometheus metrics of a node, its transport and its flags (``GET /metrics``).

A custom collector (`ChorusCollector`) reads the counters the node, its transport and
its `FlagStore` already keep, at scrape time, in the node's thread (the HTTP admin runs
in the node's trio run): nothing is updated per message or per check on their behalf.
Each app gets its own `CollectorRegistry`, never the process-global one, so two nodes
in one process (tests, simulations) do not mix.

Exported (counters end in ``_total``; times in seconds, sizes in bytes):

- ``chorus_info{node, incarnation}`` (1), ``chorus_ready`` and ``chorus_synced`` (0/1);
- ``chorus_members``: incarnations in the replicated member set;
  ``chorus_peers{state="up"|"down"}``: member peers heard from lately, or not;
  ``chorus_membership_changes_total{change="join"|"leave"}``;
- ``chorus_messages_total`` and ``chorus_message_bytes_total``, by ``kind`` and
  ``direction`` (``sent``/``received``);
- ``chorus_anti_entropy_rounds_total``; ``chorus_last_sync_timestamp_seconds``: the
  wall time (Unix seconds) of the last one this node answered (no sample before
  one); ``chorus_held_entries`` (now),
  ``chorus_held_back_total``, ``chorus_held_dropped_total``;
- ``chorus_clock_offset_seconds`` (to the median of live member peers' clocks; no
  sample without one), ``chorus_clock_lead_seconds``, ``chorus_clock_steps_total``;
- ``chorus_node_<counter>_total`` for the node's other counters (writes, merges,
  rejected messages, ...), ``chorus_unconfirmed_writes`` (now);
- ``chorus_transport_<counter>_total`` for the transport's counters (among them
  ``chorus_transport_handshake_failures_total``, and
  ``chorus_transport_handshake_failures_by_reason_total{reason}``: ``secret``,
  ``identity``, ``version``, ``http``, ``timeout``, ``closed``, ``own_node_id``,
  ``self``, ``malformed``), ``chorus_transport_links``,
  ``chorus_transport_dialling``, ``chorus_transport_dial_errors`` (now);
- ``chorus_flag_changes_total{flag}``: changes to a flag's gates or metadata seen by
  this node, local or replicated, since it started;
- ``chorus_flag_evaluations_total{flag}`` and ``chorus_flag_unknown_evaluations_total``:
  checks on this node (needs a store made with ``count_evaluations=True``, as
  ``chorus serve`` makes it); ``chorus_flag_ignored_entries_total``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from transport import Node

from ._cluster_view import wall_time
from ._store import FlagStore

#: `transport.NodeStats` fields exported by families of their own, or not at all.
_NODE_OWN = frozenset(
    {
        "messages_sent",
        "bytes_sent",
        "messages_received",
        "bytes_received",
        "sync_rounds",
        "last_sync_time",
        "joins",
        "leaves",
        "held_back",
        "held_dropped",
        "clock_steps",
        "unconfirmed",
        "calls_out",
        "calls_in",
    }
)
#: `transport.TcpStats` fields under clearer names.
_TRANSPORT_NAMES = {
    "handshakes_failed": "handshake_failures",
    "handshakes_failed_by_reason": "handshake_failures_by_reason",
}


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class ChorusCollector(Collector):
    """Yields the metric families of one node at each scrape (see the module).

    Args:
        store: the node's flags.
        node: a `transport.Node` (None: flag families only).
        transport: its transport; `transport.TcpTransport` adds its counters.
        ready: tells whether the node is ready (the ``/ready`` answer); None: the
            node's own `transport.Node.ready`.

    Subscribes to ``store`` to count flag changes: one dict increment per change, in
    the node's thread.
    """

    def __init__(
        self,
        store: FlagStore,
        node: Node | None = None,
        transport: Any = None,
        *,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self._store, self._node, self._transport, self._ready = store, node, transport, ready
        self._changes: dict[str, int] = {}
        store.subscribe(self._on_change)

    def _on_change(self, names: frozenset[str]) -> None:
        for name in names:
            self._changes[name] = self._changes.get(name, 0) + 1

    def collect(self) -> Iterable[Metric]:
        if self._node is not None:
            yield from self._node_families(self._node)
        if self._transport is not None:
            yield from self._transport_families(self._transport)
        yield from self._flag_families()

    def _node_families(self, node: Node) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "chorus_info", "This node's id and incarnation.", labels=["node", "incarnation"]
        )
        info.add_metric([node.node_id, str(node.incarnation)], 1)
        yield info
        ready = self._ready() if self._ready is not None else node.ready
        yield _gauge("chorus_ready", "1 when the node takes writes (/ready is 200).", ready)
        yield _gauge("chorus_synced", "1 once the node has pulled a member's state.", node.synced)

        me = node.node_id
        member_ids = node.membership.members()
        live = node.members()  # this node and the peers heard from lately
        member_names = {member.rsplit("/", 1)[0] for member in member_ids}
        yield _gauge("chorus_members", "Incarnations in the cluster's member set.", len(member_ids))
        peers = GaugeMetricFamily(
            "chorus_peers",
            "Peers heard from lately (up), and members not heard from lately (down).",
            labels=["state"],
        )
        peers.add_metric(["up"], len(live - {me}))
        peers.add_metric(["down"], len(member_names - live - {me}))
        yield peers

        stats = node.stats
        changes = CounterMetricFamily(
            "chorus_membership_changes",
            "Peers seen coming up or restarting (join), or declared down (leave).",
            labels=["change"],
        )
        changes.add_metric(["join"], stats.joins)
        changes.add_metric(["leave"], stats.leaves)
        yield changes

        messages = CounterMetricFamily(
            "chorus_messages", "Cluster messages, by kind.", labels=["kind", "direction"]
        )
        message_bytes = CounterMetricFamily(
            "chorus_message_bytes",
            "Bytes of cluster messages, by kind.",
            labels=["kind", "direction"],
        )
        for direction, counts, sizes in (
            ("sent", stats.messages_sent, stats.bytes_sent),
            ("received", stats.messages_received, stats.bytes_received),
        ):
            for kind, count in sorted(counts.items()):
                messages.add_metric([kind, direction], count)
            for kind, size in sorted(sizes.items()):
                message_bytes.add_metric([kind, direction], size)
        yield messages
        yield message_bytes

        yield _counter(
            "chorus_anti_entropy_rounds", "Anti-entropy (sync) steps answered.", stats.sync_rounds
        )
        last_sync = GaugeMetricFamily(
            "chorus_last_sync_timestamp_seconds",
            "Wall time of the last anti-entropy (sync) step answered, in Unix seconds.",
        )
        if stats.last_sync_time is not None:  # trio's monotonic clock: to wall time
            at = wall_time(stats.last_sync_time, now=trio.current_time(), now_wall=time.time())
            last_sync.add_metric([], at)
        yield last_sync
        yield _gauge(
            "chorus_held_entries", "Entries held back for being too far ahead now.", node.held
        )
        yield _counter(
            "chorus_held_back", "Entries held back for being too far ahead.", stats.held_back
        )
        yield _counter(
            "chorus_held_dropped", "Held entries refused or dropped.", stats.held_dropped
        )

        offset = GaugeMetricFamily(
            "chorus_clock_offset_seconds",
            "This node's clock minus the median of its live member peers' clocks and its own.",
        )
        offset_ms = node.clock_offset_ms()
        if offset_ms is not None:
            offset.add_metric([], offset_ms / 1000)
        yield offset
        yield _gauge(
            "chorus_clock_lead_seconds",
            "How far the hybrid clock runs ahead of the node's clock.",
            node.clock_lead_ms() / 1000,
        )
        yield _counter("chorus_clock_steps", "Wall-clock steps noticed.", stats.clock_steps)
        yield _gauge(
            "chorus_unconfirmed_writes",
            "Own writes no peer is known to hold yet.",
            stats.unconfirmed,
        )
        calls = CounterMetricFamily(
            "chorus_calls",
            "Calls between nodes by direction (out: made here; in: served here) and outcome.",
            labels=["direction", "outcome"],
        )
        for direction, counts in (("out", stats.calls_out), ("in", stats.calls_in)):
            for outcome, count in sorted(counts.items()):
                calls.add_metric([direction, outcome], count)
        yield calls
        for field, value in attrs.asdict(stats).items():
            if field not in _NODE_OWN and isinstance(value, int):
                yield _counter(f"chorus_node_{field}", f"Node counter {field}.", value)

    def _transport_families(self, transport: Any) -> Iterator[Metric]:
        stats: Any = getattr(transport, "stats", None)
        if attrs.has(type(stats)):
            for field, value in attrs.asdict(stats).items():
                name = _TRANSPORT_NAMES.get(field, field)
                if isinstance(value, dict):  # by label: handshake failures by reason
                    family = CounterMetricFamily(
                        f"chorus_transport_{name}", f"Transport counter {field}.", labels=["reason"]
                    )
                    for reason, count in sorted(value.items()):
                        family.add_metric([reason], count)
                    yield family
                else:
                    yield _counter(f"chorus_transport_{name}", f"Transport counter {field}.", value)
        yield _gauge(
            "chorus_transport_links", "Peers with a connection up.", len(transport.peers())
        )
        if callable(getattr(transport, "dialling", None)):
            yield _gauge(
                "chorus_transport_dialling",
                "Addresses being dialled (seeds and learned).",
                len(transport.dialling()),
            )
            yield _gauge(
                "chorus_transport_dial_errors",
                "Addresses where dialling fails now.",
                len(transport.dial_errors()),
            )

    def _flag_families(self) -> Iterator[Metric]:
        changes = CounterMetricFamily(
            "chorus_flag_changes",
            "Changes to a flag's gates or metadata, local or replicated, since start.",
            labels=["flag"],
        )
        for name, count in sorted(self._changes.items()):
            changes.add_metric([name], count)
        yield changes
        counted = self._store.evaluations()
        if counted is not None:
            per_flag, unknown = counted
            evaluations = CounterMetricFamily(
                "chorus_flag_evaluations", "Checks of a flag on this node.", labels=["flag"]
            )
            for name, count in sorted(per_flag.items()):
                evaluations.add_metric([name], count)
            yield evaluations
            yield _counter(
                "chorus_flag_unknown_evaluations",
                "Checks of flags this node never knew.",
                unknown,
            )
        yield _counter(
            "chorus_flag_ignored_entries",
            "Malformed flag entries found and ignored.",
            self._store.ignored_entries,
        )


def metrics_registry(
    store: FlagStore,
    node: Node | None = None,
    transport: Any = None,
    *,
    ready: Callable[[], bool] | None = None,
) -> CollectorRegistry:
    """A registry of its own holding a `ChorusCollector` (arguments as there)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ChorusCollector(store, node, transport, ready=ready))
    return registry
