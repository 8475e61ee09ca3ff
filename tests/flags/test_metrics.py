"""GET /metrics: Prometheus text from a node's, its transport's and its flags' counters;
evaluation counts per flag, and a check that costs nothing more when they are off."""

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from flags import FlagStore, LocalMap
from flags._metrics import metrics_registry
from flags.http import create_app
from tests.helpers import Serve, eventually, three_served
from transport.simulation import Simulation

SECRET, TOKEN = "5e1c0f3a9d2b4e6f8a7c1d0e2f3b4a59", "metrics-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: The families every node exports (names as the parser gives them: no ``_total``).
NODE_FAMILIES = {
    "chorus_info",
    "chorus_ready",
    "chorus_synced",
    "chorus_members",
    "chorus_peers",
    "chorus_membership_changes",
    "chorus_messages",
    "chorus_message_bytes",
    "chorus_anti_entropy_rounds",
    "chorus_held_entries",
    "chorus_held_back",
    "chorus_clock_offset_seconds",
    "chorus_clock_steps",
    "chorus_flag_changes",
    "chorus_flag_ignored_entries",
}
TCP_FAMILIES = {
    "chorus_transport_handshake_failures",
    "chorus_transport_connections_accepted",
    "chorus_transport_protocol_errors",
    "chorus_transport_links",
}
COUNTED_FAMILIES = {"chorus_flag_evaluations", "chorus_flag_unknown_evaluations"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of a Prometheus text document."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def families(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


# -- counting evaluations in the store -------------------------------------------------


def test_a_store_counts_nothing_and_stays_a_plain_flag_store_by_default() -> None:
    store = FlagStore(LocalMap())
    store.enable("a")
    assert type(store) is FlagStore  # the default check is FlagStore.enabled itself
    assert type(store).enabled is FlagStore.enabled
    assert store.enabled("a")
    assert store.evaluations() is None


def test_a_counting_store_counts_each_check_per_flag_and_unknown_names_together() -> None:
    store = FlagStore(LocalMap(), defaults={"dark": True}, count_evaluations=True)
    assert isinstance(store, FlagStore)
    store.enable("a")
    store.enable_percentage_of_actors("ramp", 0.5)
    check = store.enabled  # bound once, as FlagClient binds it
    for _ in range(3):
        assert check("a")
    store.enabled("ramp", "ann")
    assert store.enabled("dark")
    assert store.explain("a") == (True, "boolean")  # the HTTP admin's check
    for name in ("x", "y", "z" * 150):
        assert not store.enabled(name)
    assert store.evaluations() == ({"a": 4, "dark": 1, "ramp": 1}, 3)
    store.enable("later")  # a flag that appears later gets its own counter
    store.enabled("later")
    store.clear("a")  # a flag that goes keeps its count: a counter never goes down
    store.enabled("a")
    assert store.evaluations() == ({"a": 5, "dark": 1, "ramp": 1, "later": 1}, 3)


# -- the collector over simulated nodes ------------------------------------------------


def test_the_collector_over_a_simulated_cluster(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=7) as sim:
            await sim.start("a", "b", "c")
            assert await sim.settle(timeout=30) is not None
            node = sim.node("a")
            store = FlagStore(node.map("flags"), count_evaluations=True)
            writer = FlagStore(sim.node("b").map("flags"))
            registry = metrics_registry(store, node)
            before = generate_latest(registry).decode()
            assert families(before) >= NODE_FAMILIES | COUNTED_FAMILIES
            assert value(before, "chorus_members") == 3
            assert value(before, "chorus_peers", state="up") == 2
            assert value(before, "chorus_peers", state="down") == 0
            assert value(before, "chorus_ready") == 1
            assert value(before, "chorus_info", node="a", incarnation=str(node.incarnation)) == 1
            assert value(before, "chorus_flag_changes_total", flag="checkout") is None
            sent = value(before, "chorus_messages_total", kind="heartbeat", direction="sent")
            assert sent is not None
            assert sent > 0
            # Unix seconds, not trio's monotonic clock (a simulation's starts near 0).
            last_sync = value(before, "chorus_last_sync_timestamp_seconds")
            assert node.stats.last_sync_time is not None
            age = trio.current_time() - node.stats.last_sync_time
            assert last_sync is not None
            assert abs(last_sync - (time.time() - age)) < 1

            writer.enable("checkout", author="bob")  # on b: replicated to a

            async def echo(caller: str, payload: Any) -> Any:
                return payload

            sim.node("b").serve("echo", echo)
            assert await node.call("b", "echo", 1) == 1
            await sim.run_for(2)
            for _ in range(5):
                assert store.enabled("checkout")
            store.enabled("nope")
            sim.crash("c")
            await sim.run_for(10)
            after = generate_latest(registry).decode()
            assert value(after, "chorus_flag_changes_total", flag="checkout") == 1
            assert value(after, "chorus_flag_evaluations_total", flag="checkout") == 5
            assert value(after, "chorus_flag_unknown_evaluations_total") == 1
            assert value(after, "chorus_calls_total", direction="out", outcome="ok") == 1
            assert value(after, "chorus_peers", state="up") == 1
            assert value(after, "chorus_peers", state="down") == 1
            assert value(after, "chorus_membership_changes_total", change="leave") == 1
            received = value(after, "chorus_messages_total", kind="map", direction="received")
            assert received is not None
            assert received >= 1

    sim_run(main)


# -- the HTTP route ------------------------------------------------------------------


def test_metrics_route_serves_prometheus_text_only_when_given_a_registry() -> None:
    store = FlagStore(LocalMap("n1"), count_evaluations=True)
    common: dict[str, Any] = {
        "token": TOKEN,
        "node_id": "n1",
        "synced": lambda: True,
        "cluster": lambda: {},
    }
    assert TestClient(create_app(store, **common)).get("/metrics").status_code == 404
    api = TestClient(create_app(store, metrics=metrics_registry(store), **common))
    assert api.put("/flags/f", json={"enabled": True}, headers=AUTH).status_code == 200
    api.get("/flags/f")
    api.get("/flags/f")
    answer = api.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    assert value(answer.text, "chorus_flag_changes_total", flag="f") == 1
    assert value(answer.text, "chorus_flag_evaluations_total", flag="f") == 2


# -- a real cluster of chorus serve ----------------------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Serve]]:
    with three_served(tmp_path, SECRET, TOKEN) as nodes:
        yield nodes


@pytest.mark.timeout(120)
def test_chorus_serve_exports_metrics_that_move(cluster: list[Serve]) -> None:
    a, b, _ = cluster
    assert eventually(lambda: value(a.get("/metrics").text, "chorus_members") == 3)
    text = a.get("/metrics").text
    assert families(text) >= NODE_FAMILIES | TCP_FAMILIES | COUNTED_FAMILIES
    assert value(text, "chorus_peers", state="up") == 2
    assert value(text, "chorus_ready") == 1
    assert value(text, "chorus_transport_handshake_failures_total") == 0
    assert value(text, "chorus_clock_offset_seconds") is not None
    last_sync = value(text, "chorus_last_sync_timestamp_seconds")
    assert last_sync is not None  # b and c pulled from a
    assert abs(last_sync - time.time()) < 30

    put = httpx.put(b.url + "/flags/new-checkout", json={"enabled": True}, headers=AUTH, timeout=2)
    assert put.status_code == 200
    assert eventually(
        lambda: value(a.get("/metrics").text, "chorus_flag_changes_total", flag="new-checkout") == 1
    )
    for _ in range(4):
        assert a.get("/flags/new-checkout").json()["enabled"] is True
    text = a.get("/metrics").text
    assert value(text, "chorus_flag_evaluations_total", flag="new-checkout") == 4
    received = value(text, "chorus_messages_total", kind="map", direction="received")
    assert received is not None
    assert received >= 1

    # A connection that is no cluster handshake (here HTTP) counts as a failed one.
    with socket.create_connection(("127.0.0.1", a.gossip), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(OSError):
            sock.recv(100)
    assert eventually(
        lambda: (
            (value(a.get("/metrics").text, "chorus_transport_handshake_failures_total") or 0) >= 1
        )
    )
    reason = "chorus_transport_handshake_failures_by_reason_total"
    assert (value(a.get("/metrics").text, reason, reason="http") or 0) >= 1
