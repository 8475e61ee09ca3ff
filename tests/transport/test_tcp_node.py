"""Nodes over TcpTransport on 127.0.0.1, in one process with the real clock."""

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import free_port
from transport import Node, TcpTransport

pytestmark = pytest.mark.timeout(120)
SECRET = b"40de7e57a1b2c3d4e5f60718293a4b5c"
FAST: dict[str, Any] = {
    "heartbeat_interval_s": 0.1,
    "failure_timeout_s": 1.0,
    "sync_interval_s": 0.3,
    "join_timeout_s": 2.0,
}
TCP_FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.3}


class Cluster:
    """Nodes over TCP in one trio run; node i listens on ports[i], seeds are node 0."""

    def __init__(self, nursery: trio.Nursery, size: int, **tcp: Any) -> None:
        self.nursery = nursery
        self.ports = [free_port() for _ in range(size)]
        self.tcp = tcp
        self.nodes: dict[str, Node] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    async def start(self, i: int) -> Node:
        name = f"n{i}"
        seeds = (
            []
            if i == 0 and name not in self.scopes
            else [f"127.0.0.1:{p}" for p in self.ports if p != self.ports[i]]
        )
        transport = TcpTransport(
            name,
            secret=SECRET,
            listen=("127.0.0.1", self.ports[i]),
            seeds=seeds,
            **{**TCP_FAST, **self.tcp},
        )
        node = Node(name, transport, **FAST)

        async def host(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                async with node:
                    task_status.started(scope)
                    await trio.sleep_forever()

        self.scopes[name] = await self.nursery.start(host)
        self.nodes[name] = node
        return node

    def stop(self, i: int) -> None:
        self.scopes[f"n{i}"].cancel()
        del self.nodes[f"n{i}"]

    async def converged(self, timeout: float = 15) -> bool:
        with trio.move_on_after(timeout):
            while True:
                states = [n.state() for n in self.nodes.values()]
                if all(s == states[0] for s in states[1:]):
                    return True
                await trio.sleep(0.05)
        return False


@asynccontextmanager
async def cluster(size: int, **tcp: Any) -> AsyncIterator[Cluster]:
    async with trio.open_nursery() as nursery:
        c = Cluster(nursery, size, **tcp)
        for i in range(size):
            await c.start(i)
        for node in c.nodes.values():
            assert await node.wait_synced(10)
        yield c
        nursery.cancel_scope.cancel()


def test_writes_on_each_node_appear_on_all() -> None:
    async def main() -> None:
        async with cluster(3) as c:
            for name, node in c.nodes.items():
                node.map("flags").set(name, True)
            assert await c.converged()
            for node in c.nodes.values():
                assert dict(node.map("flags").items()) == {"n0": True, "n1": True, "n2": True}

    trio.run(main)


def test_a_restarted_node_catches_up() -> None:
    async def main() -> None:
        async with cluster(3) as c:
            for i in range(300):
                c.nodes["n0"].map("m").set(i, "v" * 30)
            assert await c.converged()
            c.stop(2)
            c.nodes["n1"].map("m").set("while-down", 1)
            node = await c.start(2)
            assert await node.wait_synced(10)
            assert len(node.map("m")) == 301

    trio.run(main)


@settings(max_examples=5, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from("abcd"), st.integers(0, 9) | st.none()),
        max_size=30,
    )
)
def test_random_writes_converge_to_the_lww_answer_over_tcp(
    ops: list[tuple[int, str, int | None]],
) -> None:
    async def main() -> None:
        async with cluster(3) as c:
            expected: dict[str, int] = {}
            for index, key, value in ops:
                node = c.nodes[f"n{index}"]
                if value is None:
                    node.map("m").delete(key)
                    expected.pop(key, None)
                else:
                    node.map("m").set(key, value)
                    expected[key] = value
                await trio.sleep(0.02)  # writes in order: each later than the last
            assert await c.converged()
            for node in c.nodes.values():
                assert dict(node.map("m").items()) == expected

    trio.run(main)


def test_nodes_over_tls() -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    for context in (server, client):  # mutual TLS: each side proves itself to the other
        ca.configure_trust(context)
        cert.configure_cert(context)
    server.verify_mode = ssl.CERT_REQUIRED

    async def main() -> None:
        async with cluster(2, ssl_context=server, client_ssl_context=client) as c:
            c.nodes["n0"].map("m").set("secret", "over TLS")
            assert await c.converged()
            assert c.nodes["n1"].map("m").get("secret") == "over TLS"
            # A plain-TCP client speaking garbage to a TLS node ends only its own link.
            stream = await trio.open_tcp_stream("127.0.0.1", c.ports[0])
            async with stream:
                await stream.send_all(b"\x00" * 100)
                with trio.move_on_after(2):
                    while await stream.receive_some(1024):
                        pass
            c.nodes["n1"].map("m").set("after", "garbage")
            assert await c.converged()
            assert c.nodes["n0"].map("m").get("after") == "garbage"

    trio.run(main)


def test_tls_needs_both_contexts() -> None:
    with pytest.raises(ValueError, match="both"):
        TcpTransport("a", secret=SECRET, ssl_context=ssl.create_default_context())
