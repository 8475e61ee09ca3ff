"""A conformance suite for `Transport` implementations, like trio's check_*_stream.

Give it a factory that opens two transports, not yet serving, that can reach each
other once they serve; the suite starts and stops them itself::

    @asynccontextmanager
    async def open_pair():
        network = MemoryNetwork()
        yield network.transport("a"), network.transport("b")

    async def test_memory_transport():
        await check_transport(open_pair)

Each check fails with an AssertionError naming the broken part of the contract.
Every wait is bounded by ``timeout_s`` seconds of trio's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import trio

from ._interface import PeerDown, Received, Transport, TransportClosed

#: A factory of two transports that can reach each other once both serve.
OpenPair = Callable[[], AbstractAsyncContextManager[tuple[Transport, Transport]]]

__all__ = [
    "OpenPair",
    "check_close",
    "check_delivery",
    "check_send_never_blocks_or_raises",
    "check_transport",
]


async def _serve(transport: Transport, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.serve)
            task_status.started(scope)


async def _next_message(transport: Transport, timeout_s: float) -> Received:
    with trio.fail_after(timeout_s):
        while True:
            event = await transport.receive()
            if isinstance(event, Received):
                return event


async def _wait_peer(transport: Transport, peer: str, timeout_s: float) -> None:
    with trio.fail_after(timeout_s):
        while peer not in transport.peers():
            await trio.sleep(0.01)


async def check_transport(open_pair: OpenPair, *, timeout_s: float = 10.0) -> None:
    """Run every check of the Transport contract on pairs from ``open_pair``."""
    await check_delivery(open_pair, timeout_s=timeout_s)
    await check_send_never_blocks_or_raises(open_pair, timeout_s=timeout_s)
    await check_close(open_pair, timeout_s=timeout_s)


async def check_delivery(open_pair: OpenPair, *, timeout_s: float = 10.0) -> None:
    """Messages arrive whole, unaltered and attributed to their sender, both ways."""
    async with open_pair() as (a, b), trio.open_nursery() as nursery:
        assert a.node_id != b.node_id, "the pair must have distinct node ids"
        await nursery.start(_serve, a)
        await nursery.start(_serve, b)
        await _wait_peer(a, b.node_id, timeout_s)
        await _wait_peer(b, a.node_id, timeout_s)
        assert a.node_id not in a.peers(), "peers() must exclude the node itself"
        for data in [b"\x00", bytes(range(256)), b"x" * min(a.max_message_bytes, 100_000)]:
            assert a.send(b.node_id, data), "send to a reachable peer must queue"
            received = await _next_message(b, timeout_s)
            assert received == Received(a.node_id, data), "message altered or misattributed"
        assert b.send(a.node_id, b"back"), "send must work both ways"
        assert await _next_message(a, timeout_s) == Received(b.node_id, b"back")
        nursery.cancel_scope.cancel()


async def check_send_never_blocks_or_raises(
    open_pair: OpenPair, *, timeout_s: float = 10.0
) -> None:
    """send returns at once: False for unknown peers or oneself, ValueError for oversize."""
    async with open_pair() as (a, b), trio.open_nursery() as nursery:
        await nursery.start(_serve, a)
        await nursery.start(_serve, b)
        await _wait_peer(a, b.node_id, timeout_s)
        with trio.fail_after(1):
            assert a.send("no-such-peer", b"x") is False, "send to an unknown peer returns False"
            assert a.send(a.node_id, b"x") is False, "send to oneself returns False"
            try:
                a.send(b.node_id, b"x" * (a.max_message_bytes + 1))
            except ValueError:
                pass
            else:
                raise AssertionError("an oversized message must raise ValueError")
            for _ in range(20_000):  # a burst the peer does not read: bounded, never blocks
                a.send(b.node_id, b"burst")
        nursery.cancel_scope.cancel()


async def check_close(open_pair: OpenPair, *, timeout_s: float = 10.0) -> None:
    """When one side stops serving: its receive raises, and the other sees it go down."""
    async with open_pair() as (a, b), trio.open_nursery() as nursery:
        await nursery.start(_serve, a)
        scope_b = await nursery.start(_serve, b)
        await _wait_peer(a, b.node_id, timeout_s)
        scope_b.cancel()
        with trio.fail_after(timeout_s):
            while True:
                try:
                    await b.receive()
                except TransportClosed:
                    break
        assert b.send(a.node_id, b"x") is False, "a closed transport sends nothing"
        with trio.fail_after(timeout_s):
            while await a.receive() != PeerDown(b.node_id):
                pass
        assert b.node_id not in a.peers(), "a peer that went down is not in peers()"
        assert a.send(b.node_id, b"x") is False, "send to a peer that went down returns False"
        nursery.cancel_scope.cancel()
