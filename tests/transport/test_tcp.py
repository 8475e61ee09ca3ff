"""TcpTransport over real sockets on 127.0.0.1: the conformance suite and bad input."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tests.helpers import authenticate, free_port
from transport import PeerUp, Received, Transport
from transport._tcp import TcpTransport
from transport._tcp_protocol import VERSION, Connection
from transport.testing import check_transport

pytestmark = pytest.mark.timeout(60)
SECRET = b"7e57c0de5ec4e7a1b2c3d4e5f6071829"
OTHER_SECRET = b"0e1f5ecae7a1b2c3d4e5f60718293a4b"


def fast(**options: Any) -> dict[str, Any]:
    return {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, "handshake_timeout_s": 2.0, **options}


@asynccontextmanager
async def tcp_pair(**options: Any) -> AsyncIterator[tuple[Transport, Transport]]:
    port = free_port()
    a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast(**options))
    b = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast(**options))
    yield a, b


def test_tcp_transport_conforms() -> None:
    trio.run(check_transport, tcp_pair)


@asynccontextmanager
async def serving(*transports: TcpTransport) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for t in transports:
            await nursery.start(t.serve)
        yield
        nursery.cancel_scope.cancel()


async def wait_for_peer(t: Transport, peer: str, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while peer not in t.peers():
            await trio.sleep(0.01)


def test_three_nodes_meet_through_one_seed() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast())
        b = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
        c = TcpTransport("c", secret=SECRET, seeds=[f"localhost:{port}"], **fast())  # DNS name
        async with serving(a, b, c):
            await wait_for_peer(b, "c")  # learned from a's gossip
            await wait_for_peer(c, "b")
            assert a.peers() == {"b", "c"}
            addresses = a.peer_addresses()  # where each says it listens
            assert addresses == {"b": b.advertised, "c": c.advertised}
            assert b.peer_addresses()["a"] == f"127.0.0.1:{port}"

    trio.run(main)


def test_a_node_with_the_wrong_secret_learns_nothing_and_changes_nothing() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast())
        rogue = TcpTransport("rogue", secret=OTHER_SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
        async with serving(a, rogue):
            await trio.sleep(1.0)
            assert a.peers() == frozenset()
            assert rogue.peers() == frozenset()
            assert a.stats.handshakes_failed >= 1
            assert rogue.send("a", b"x") is False
            # Each side counts its failures by reason: a fixed word, not the peer's text.
            failed = a.stats.handshakes_failed
            assert a.stats.handshakes_failed_by_reason == {"secret": failed}
            failed = rogue.stats.handshakes_failed
            assert rogue.stats.handshakes_failed_by_reason == {"secret": failed}
            assert a.peer_addresses() == {} == rogue.peer_addresses()

    trio.run(main)


async def raw(port: int, data: bytes, *, read: bool = True) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        if not read:
            return b""
        received = b""
        with trio.move_on_after(3):
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                received += chunk
        return received


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x01\x02garbage that is not a frame", "malformed"),
        ((10_000_000).to_bytes(4, "big"), "malformed"),  # a length over the maximum
        ((50).to_bytes(4, "big") + b"short", "timeout"),  # a truncated frame, then silence
        ((3).to_bytes(4, "big") + b"\x82\x01\x02", "version"),  # valid CBOR: [1, 2]
    ],
)
def test_bad_input_ends_that_connection_and_the_node_keeps_serving(
    data: bytes, reason: str
) -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast())
        b = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
        async with serving(a, b):
            await wait_for_peer(a, "b")
            await raw(port, data)
            assert a.stats.handshakes_failed >= 1
            assert a.stats.handshakes_failed_by_reason == {reason: 1}
            assert b.send("a", b"still here")
            with trio.fail_after(5):
                while (event := await a.receive()) != Received("b", b"still here"):
                    assert isinstance(event, PeerUp | Received)

    trio.run(main)


def test_a_replayed_handshake_is_refused_over_the_wire() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast())
        async with serving(a):
            # Record a genuine client's side of a handshake, then replay it.
            client = Connection("b", "127.0.0.1:1", SECRET, client=True, max_frame_bytes=1 << 20)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                sent = await authenticate(stream, client)
                await wait_for_peer(a, "b")
            await trio.sleep(0.2)
            failed = a.stats.handshakes_failed
            await raw(port, sent)
            assert a.stats.handshakes_failed == failed + 1
            assert a.peers() == frozenset()

    trio.run(main)


def test_a_flood_of_idle_connections_is_refused_and_others_still_get_in() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport(
            "a",
            secret=SECRET,
            listen=("127.0.0.1", port),
            **fast(max_pending_handshakes=8, handshake_timeout_s=1.0),
        )
        b = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
        async with serving(a):
            streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(50)]
            await trio.sleep(0.2)
            assert a.stats.connections_refused >= 40
            async with serving(b):
                await wait_for_peer(a, "b", timeout=10)  # got in once the flood timed out
            for s in streams:
                await s.aclose()

    trio.run(main)


def test_a_peer_that_stops_reading_is_dropped_without_blocking_others() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport(
            "a",
            secret=SECRET,
            listen=("127.0.0.1", port),
            **fast(write_timeout_s=0.5, queue_size=64),
        )
        b = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
        c = TcpTransport("c", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
        async with serving(a, b, c):
            await wait_for_peer(a, "b")
            await wait_for_peer(a, "c")
            # b's node never calls receive(): its buffers fill, then a's writes block.
            for _ in range(2_000):
                a.send("b", b"x" * 60_000)
                await trio.sleep(0)
            assert a.send("c", b"for c")
            with trio.fail_after(5):
                while await c.receive() != Received("a", b"for c"):
                    pass
            assert a.stats.sends_dropped > 0 or a.stats.slow_closed > 0

    trio.run(main)


def test_addresses() -> None:
    from transport._tcp import format_address, parse_address

    assert parse_address("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    assert format_address("::1", 7000) == "[::1]:7000"
    for bad in ["nope", "host:", ":7000", "host:99999", "host:x"]:
        with pytest.raises(ValueError, match=r"address|host:port"):
            parse_address(bad)
    with pytest.raises(ValueError, match="secret"):
        TcpTransport("a", secret=b"")


def test_an_authenticated_but_silent_connection_is_closed_after_the_idle_timeout() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast(idle_timeout_s=0.5))
        async with serving(a):
            client = Connection("b", "127.0.0.1:1", SECRET, client=True, max_frame_bytes=1 << 20)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await authenticate(stream, client)
                await wait_for_peer(a, "b")
                with trio.fail_after(5):  # then say nothing: a must hang up
                    while await stream.receive_some(65536):
                        pass
            assert a.stats.idle_closed == 1
            assert "b" not in a.peers()

    trio.run(main)


def test_a_message_in_the_same_read_as_the_handshake_is_delivered() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast())
        async with serving(a):
            client = Connection("b", "127.0.0.1:1", SECRET, client=True, max_frame_bytes=1 << 20)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                while not client.open:
                    await stream.send_all(client.data_to_send())
                    client.receive_data(bytes(await stream.receive_some(65536)))
                client.send_message(b"first")  # one write: the identity, then a message
                await stream.send_all(client.data_to_send())  # (so not `authenticate`)
                with trio.fail_after(5):
                    while (event := await a.receive()) != Received("b", b"first"):
                        assert isinstance(event, PeerUp)

    trio.run(main)


def test_an_unauthenticated_client_learns_no_node_id_address_or_mac() -> None:
    async def main() -> None:
        import cbor2

        port = free_port()
        a = TcpTransport("node-a-7f3e", secret=SECRET, listen=("127.0.0.1", port), **fast())
        async with serving(a):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                hello = cbor2.dumps([VERSION, "hello", b"\x07" * 32])
                await stream.send_all(len(hello).to_bytes(4, "big") + hello)
                received = b""
                with trio.move_on_after(1):
                    while len(received) < 4 or len(received) < 4 + int.from_bytes(
                        received[:4], "big"
                    ):
                        received += await stream.receive_some(65536)
                message = cbor2.loads(received[4:])
                assert message[:2] == [VERSION, "challenge"]
                assert len(message) == 3  # one nonce: no id, no address, no MAC
                assert len(message[2]) == 32
                assert b"node-a-7f3e" not in received
                assert str(port).encode() not in received
                # A wrong proof: the connection closes and nothing more is said.
                proof = cbor2.dumps([VERSION, "proof", b"\x00" * 32])
                await stream.send_all(len(proof).to_bytes(4, "big") + proof)
                rest = b""
                with trio.fail_after(5):
                    while chunk := await stream.receive_some(65536):
                        rest += chunk
                assert rest == b""
            assert a.peers() == frozenset()
            assert a.stats.handshakes_failed == 1

    trio.run(main)
