"""TcpTransport with two live processes of one node id: the first keeps its link."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from tests.helpers import free_port
from transport import PeerDown, TransportClosed
from transport._tcp import TcpTransport

pytestmark = pytest.mark.timeout(60)
SECRET = b"7e57c0de5ec4e7a1b2c3d4e5f6071829"


def fast(**options: Any) -> dict[str, Any]:
    return {"backoff_initial_s": 0.05, "backoff_max_s": 0.5, "handshake_timeout_s": 2.0, **options}


async def _host(transport: TcpTransport, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.serve)
            task_status.started(scope)


async def _drain(transport: TcpTransport, downs: list[str]) -> None:
    """Consume a transport's events, as a Node would; note which peers went down."""
    while True:
        try:
            event = await transport.receive()
        except TransportClosed:
            return
        if isinstance(event, PeerDown):
            downs.append(event.peer)


def test_a_second_process_with_a_linked_node_id_is_refused_and_told_why(caplog: Any) -> None:
    async def main() -> None:
        port_a = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port_a), **fast())
        b1 = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port_a}"], **fast())
        b2 = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port_a}"], **fast())
        downs: dict[str, list[str]] = {"a": [], "b1": []}
        async with trio.open_nursery() as nursery:
            await nursery.start(_host, a)
            scope_b1 = await nursery.start(_host, b1)
            nursery.start_soon(_drain, a, downs["a"])
            nursery.start_soon(_drain, b1, downs["b1"])
            with trio.fail_after(10):
                while "b" not in a.peers():
                    await trio.sleep(0.01)
            await nursery.start(_host, b2)
            nursery.start_soon(_drain, b2, [])
            with trio.fail_after(10):
                while not b2.refusals():
                    await trio.sleep(0.01)
            await trio.sleep(3)  # b2 redials meanwhile, and is refused every time
            assert a._links["b"].listen == b1.advertised  # the first keeps its link
            assert downs == {"a": [], "b1": []}  # and it never dropped
            (reason,) = b2.refusals().values()
            assert reason.startswith(
                f"node id b is already taken by a live node at {b1.advertised}"
            )
            assert "is a second process running with --node-id b?" in reason
            assert b2.dial_errors() == b2.refusals()
            assert b1.refusals() == {}

            scope_b1.cancel()  # the first stops: the second gets the link
            with trio.fail_after(10):
                while "b" not in a.peers() or a._links["b"].listen != b2.advertised:
                    await trio.sleep(0.01)
            assert a.send("b", b"hello")
            with trio.fail_after(10):
                while b2.refusals():  # gone with the first message on the link
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.INFO, logger="chorus.tcp"):
        trio.run(main)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # once, not once per redial
    assert "refuses this node: node id b is already taken" in errors[0].getMessage()


OLDER, YOUNGER = "001700000000000/a", "001700000000500/b"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("younger", [YOUNGER, None], ids=["younger-cluster", "no-cluster"])
@pytest.mark.parametrize("hub_dials", [False, True], ids=["they-dial", "hub-dials"])
def test_the_process_of_the_older_cluster_takes_the_link_from_a_younger_one(
    younger: str | None, hub_dials: bool
) -> None:
    """Two processes with one node id, of different clusters: the one of the older
    cluster gets the link even when the younger had it first, and the younger is
    refused (it would otherwise keep the older cluster, and its state, out)."""

    async def main() -> None:
        port_a, port_young, port_old = free_port(), free_port(), free_port()
        hub_seeds = [f"127.0.0.1:{port_young}"] if hub_dials else []  # the young one first
        their_seeds = [] if hub_dials else [f"127.0.0.1:{port_a}"]
        a = TcpTransport(
            "a", secret=SECRET, listen=("127.0.0.1", port_a), seeds=hub_seeds, **fast()
        )
        young = TcpTransport(
            "b", secret=SECRET, listen=("127.0.0.1", port_young), seeds=their_seeds, **fast()
        )
        old = TcpTransport(
            "b", secret=SECRET, listen=("127.0.0.1", port_old), seeds=their_seeds, **fast()
        )
        young.cluster, old.cluster, a.cluster = younger, OLDER, OLDER
        async with trio.open_nursery() as nursery:
            await nursery.start(_host, young)
            nursery.start_soon(_drain, young, [])
            await nursery.start(_host, a)
            nursery.start_soon(_drain, a, [])
            with trio.fail_after(10):
                while "b" not in a.peers():
                    await trio.sleep(0.01)
            assert a._links["b"].listen == young.advertised
            await nursery.start(_host, old)
            nursery.start_soon(_drain, old, [])
            if hub_dials:
                a._learn([f"127.0.0.1:{port_old}"])  # as if gossiped
            with trio.fail_after(10):
                while a._links.get("b") is None or a._links["b"].listen != old.advertised:
                    await trio.sleep(0.01)
            with trio.fail_after(10):
                while not young.refusals():
                    await trio.sleep(0.01)
            await trio.sleep(2)  # the young one redials meanwhile, and is refused
            assert a._links["b"].listen == old.advertised  # the older cluster's keeps it
            assert a._links["b"].cluster == OLDER
            (reason,) = young.refusals().values()
            assert reason.startswith(
                f"node id b is already taken by a live node at {old.advertised} "
                f"of the older cluster {OLDER}"
            )
            assert old.refusals() == {}
            assert a.send("b", b"to the older one")
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("cluster", [OLDER, None], ids=["same-cluster", "no-cluster"])
def test_between_processes_of_one_cluster_the_first_keeps_the_link(cluster: str | None) -> None:
    async def main() -> None:
        port_a = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port_a), **fast())
        first = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port_a}"], **fast())
        second = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port_a}"], **fast())
        first.cluster = second.cluster = cluster
        async with trio.open_nursery() as nursery:
            await nursery.start(_host, a)
            nursery.start_soon(_drain, a, [])
            await nursery.start(_host, first)
            nursery.start_soon(_drain, first, [])
            with trio.fail_after(10):
                while "b" not in a.peers():
                    await trio.sleep(0.01)
            await nursery.start(_host, second)
            nursery.start_soon(_drain, second, [])
            with trio.fail_after(10):
                while not second.refusals():
                    await trio.sleep(0.01)
            await trio.sleep(1)
            assert a._links["b"].listen == first.advertised
            assert a._links["b"].cluster == cluster
            (reason,) = second.refusals().values()
            assert reason.startswith(
                f"node id b is already taken by a live node at {first.advertised}: "
            )
            nursery.cancel_scope.cancel()

    trio.run(main)


@pytest.mark.timeout(30)
def test_a_process_that_joins_a_cluster_after_its_handshake_is_known_of_that_cluster() -> None:
    """A node links to a process while it joins (no cluster yet): once it belongs to
    one, a second process with its id and of that same cluster does not take the
    link from it (the first keeps it, as between any two of one cluster)."""

    async def main() -> None:
        port_a = free_port()
        options = fast(idle_timeout_s=60.0)  # the link must stay up: no reconnection
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port_a), **options)
        first = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port_a}"], **options)
        second = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port_a}"], **options)
        async with trio.open_nursery() as nursery:
            await nursery.start(_host, a)
            nursery.start_soon(_drain, a, [])
            await nursery.start(_host, first)
            nursery.start_soon(_drain, first, [])
            with trio.fail_after(10):
                while "b" not in a.peers():
                    await trio.sleep(0.01)
            assert a._links["b"].cluster is None
            first.cluster = OLDER  # it joined a's cluster
            a.cluster = OLDER
            link = a._links["b"]
            with trio.fail_after(3):  # told on the link up, not at a reconnection
                while link.cluster != OLDER:
                    await trio.sleep(0.01)
            second.cluster = OLDER
            await nursery.start(_host, second)
            nursery.start_soon(_drain, second, [])
            with trio.fail_after(10):
                while not second.refusals():
                    await trio.sleep(0.01)
            await trio.sleep(1)
            assert a._links["b"] is link  # the first keeps it
            assert first.refusals() == {}
            nursery.cancel_scope.cancel()

    trio.run(main)
