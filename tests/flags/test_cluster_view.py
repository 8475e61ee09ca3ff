"""GET /cluster: peers with their addresses and state, and wall-clock times."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flags._cluster_view import ClusterHistory, cluster_document, moment
from hlc import Timestamp
from tests.helpers import Serve, eventually, three_served
from transport import MemberEvent
from transport.simulation import Simulation

SECRET, TOKEN = "c1a55e7f39a04b6d8f1c07b2e9d46e2e", "cluster-view-admin-token-5d2a"

# -- the history the cluster page draws ---------------------------------------------


def test_history_records_remote_changes_and_member_events_only() -> None:
    wall_s = 1_800_000_000.250
    stamps = {
        ("f", "bool"): Timestamp(1_800_000_000_000, 0, "b"),  # from b, 250 ms ago
        ("f", "audit", "x"): Timestamp(1_799_999_999_900, 0, "b"),
        ("g", "bool"): Timestamp(1_800_000_000_200, 0, "a"),  # our own write
    }
    history = ClusterHistory("a", stamps.get, wall_s=lambda: wall_s, limit=2)
    history.map_changed(frozenset([("f", "bool"), ("f", "audit", "x")]))
    history.map_changed(frozenset([("g", "bool")]))
    history.map_changed(frozenset([("gone", "bool")]))  # deleted since: no timestamp
    history.member_event(MemberEvent("up", "b", "b/1", frozenset()))
    history.member_event(MemberEvent("services", "b", "b/1", frozenset({"x"})))
    for kind in ("restarted", "down"):
        history.member_event(MemberEvent(kind, "b", "b/2", frozenset()))
    view = history.view()
    assert view["propagation"] == [
        {"at": "2027-01-15T08:00:00.250+00:00", "flag": "f", "ms": 250.0}
    ]
    assert [(e["event"], e["incarnation"]) for e in view["member_events"]] == [
        ("restarted", "b/2"),
        ("down", "b/2"),
    ]  # the last two: limit=2


# -- the document over a simulated cluster -----------------------------------------


def test_moment_converts_trio_time_to_wall_time_and_age() -> None:
    # trio's clock reads 1,000 s when the wall clock reads 2026-01-01T00:00:00Z.
    now_wall = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()
    assert moment(None, now=1000.0, now_wall=now_wall) is None
    assert moment(997.5, now=1000.0, now_wall=now_wall) == {
        "at": "2025-12-31T23:59:57.500+00:00",
        "age_s": 2.5,
    }


def test_cluster_document_over_a_simulated_cluster(sim_run: Any) -> None:
    now_wall = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()

    async def main() -> None:
        async with Simulation(seed=3) as sim:
            await sim.start("a", "b", "c")
            assert await sim.settle(timeout=30) is not None
            await sim.run_for(3)  # an anti-entropy round or two
            a = sim.node("a")

            def seen_by_a() -> dict[str, dict[str, Any]]:
                doc = cluster_document(a, a._transport, now_wall=now_wall)
                return {peer["id"]: peer for peer in doc["peers"]}

            doc = cluster_document(a, a._transport, now_wall=now_wall)
            # The old fields stay.
            assert doc["node"] == "a"
            assert doc["members"] == ["a", "b", "c"]
            assert isinstance(doc["stats"]["last_sync_time"], float)
            assert doc["transport"] == {}  # a MemoryTransport keeps no TcpStats
            # last_sync: the trio time of stats.last_sync_time, on the wall clock.
            age = doc["last_sync"]["age_s"]
            assert 0 <= age < 10
            at = datetime.datetime.fromisoformat(doc["last_sync"]["at"])
            assert at.tzinfo is not None
            assert abs(at.timestamp() - (now_wall - age)) < 0.002
            peers = {p["id"]: p for p in doc["peers"]}
            assert [p["id"] for p in doc["peers"]] == ["b", "c"]
            for name in ("b", "c"):
                peer = peers[name]
                assert peer["incarnation"] == sim.node(name).incarnation
                assert peer["member"]
                assert peer["connected"]
                assert peer["state"] == "up"
                assert peer["address"] is None  # the memory transport has no addresses
                assert 0 <= peer["last_heard"]["age_s"] < 1.5
                assert abs(peer["clock_offset_ms"]) < 50  # no skew: network delay only
                assert peer["dial_error"] is None
                assert peer["refused"] is None

            # Silent but linked (the memory transport keeps its link): suspect, then
            # down once the failure timeout (3 s) passes.
            sim.network.clog("c")
            await sim.run_for(2)
            c = seen_by_a()
            assert c["c"]["state"] == "suspect"
            assert c["c"]["connected"]
            await sim.run_for(2)
            c = seen_by_a()
            assert c["c"]["state"] == "down"
            sim.network.unclog("c")
            await sim.run_for(2)
            c = seen_by_a()
            assert c["c"]["state"] == "up"

            sim.crash("c")
            await sim.run_for(10)
            c = seen_by_a()
            assert c["c"]["state"] == "down"
            assert not c["c"]["connected"]
            assert c["c"]["last_heard"]["age_s"] >= 9

    sim_run(main)


def test_a_skewed_peer_shows_its_clock_offset(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=5, skew_ms={"b": 300}) as sim:
            await sim.start("a", "b")
            assert await sim.settle(timeout=30) is not None
            await sim.run_for(2)
            a = sim.node("a")
            (b,) = cluster_document(a, a._transport, now_wall=0.0)["peers"]
            assert -350 < b["clock_offset_ms"] < -250  # a's clock is 300 ms behind b's

    sim_run(main)


# -- three chorus serve processes ---------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Serve]]:
    with three_served(tmp_path, SECRET, TOKEN) as nodes:
        yield nodes


def _cluster(node: Serve) -> dict[str, Any]:
    return dict(node.get("/cluster").json())


def _peers(node: Serve) -> dict[str, dict[str, Any]]:
    return {peer["id"]: peer for peer in _cluster(node)["peers"]}


@pytest.mark.timeout(60)
def test_cluster_shows_each_peer_its_address_and_state_and_wall_times(
    cluster: list[Serve],
) -> None:
    a, b, c = cluster
    incarnations = {n.name: _cluster(n)["incarnation"] for n in (b, c)}

    def all_up() -> bool:
        peers = _peers(a)
        return sorted(peers) == ["b", "c"] and all(
            p["state"] == "up" and p["connected"] and p["member"] for p in peers.values()
        )

    assert eventually(all_up, 15), _cluster(a)["peers"]
    document = _cluster(a)
    for node in (b, c):
        peer = next(p for p in document["peers"] if p["id"] == node.name)
        assert peer["address"] == f"127.0.0.1:{node.gossip}"  # its --listen
        assert peer["incarnation"] == incarnations[node.name]
        assert peer["dial_error"] is None
        assert peer["refused"] is None
        assert 0 <= peer["last_heard"]["age_s"] < 2
        assert isinstance(peer["clock_offset_ms"], int)
        assert abs(peer["clock_offset_ms"]) < 500  # one machine, one clock

    # b and c pulled a's state when they joined; a answers their anti-entropy steps.
    assert eventually(lambda: _cluster(a)["last_sync"] is not None, 10)
    last_sync = _cluster(a)["last_sync"]
    at = datetime.datetime.fromisoformat(last_sync["at"])
    now = datetime.datetime.now(datetime.UTC)
    assert 0 <= last_sync["age_s"] < 5  # anti-entropy runs every 2 s or so
    assert abs((now - at).total_seconds() - last_sync["age_s"]) < 1
    assert _cluster(a)["stats"]["last_sync_time"] is not None  # kept, in trio time

    c.process.kill()  # SIGKILL: no goodbye
    c.process.wait(10)

    def c_down() -> bool:
        peer = _peers(a)["c"]
        return peer["state"] == "down" and not peer["connected"]

    # A link that drops declares its peer down at once; silence would within the
    # failure timeout (3 s, Node's default, as chorus serve has no option for it).
    assert eventually(c_down, 10), _peers(a)["c"]
    peer = _peers(a)["c"]
    assert peer["address"] == f"127.0.0.1:{c.gossip}"  # still dialled there
    assert peer["member"]  # until the cluster removes it
    assert eventually(lambda: _peers(a)["c"]["dial_error"] is not None, 5)  # nobody there
    assert _peers(a)["b"]["state"] == "up"
