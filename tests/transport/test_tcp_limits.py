"""TcpTransport under floods, over real sockets on 127.0.0.0/8.

Linux routes all of 127.0.0.0/8 to loopback, so an attacker can connect from
127.0.0.2, 127.0.0.3, ... while the nodes use 127.0.0.1: distinct sources on one host.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import authenticate, free_port
from transport._tcp import TcpTransport
from transport._tcp_protocol import Connection

pytestmark = pytest.mark.timeout(60)
SECRET = b"f100d7e5a1b2c3d4e5f60718293a4b5c"


def fast(**options: Any) -> dict[str, Any]:
    return {"backoff_initial_s": 0.05, "backoff_max_s": 0.2, **options}


@asynccontextmanager
async def serving(*transports: TcpTransport) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        for t in transports:
            await nursery.start(t.serve)
        yield nursery
        nursery.cancel_scope.cancel()


async def eventually(check: Any, timeout: float = 10) -> None:
    with trio.fail_after(timeout):
        while not check():
            await trio.sleep(0.02)


async def connect_from(source: str, port: int) -> trio.SocketStream:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def flood(port: int, sources: list[str], per_source: int, opened: list[int]) -> None:
    """Keep ``per_source`` idle connections open from each source, reopening each
    one as soon as the node closes it (the slowloris pattern)."""

    async def hold(source: str) -> None:
        while True:
            try:
                stream = await connect_from(source, port)
            except OSError:
                await trio.sleep(0.01)
                continue
            opened[0] += 1
            async with stream:
                try:
                    while await stream.receive_some(1024):  # never send, wait for close
                        pass
                except trio.BrokenResourceError:
                    pass

    async with trio.open_nursery() as nursery:
        for source in sources:
            for _ in range(per_source):
                nursery.start_soon(hold, source)


def test_a_slowloris_flood_cannot_keep_a_known_peer_out() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast())
        b = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
        async with serving(a) as nursery:
            b_scope = trio.CancelScope()

            async def run_b(transport: TcpTransport) -> None:
                with b_scope:
                    await transport.serve()

            nursery.start_soon(run_b, b)
            await eventually(lambda: "b" in a.peers())
            b_scope.cancel()  # b goes away (a restart)...
            await eventually(lambda: "b" not in a.peers())

            # ...while 40 sources hold 8 idle connections each: 320 > 64 slots.
            opened = [0]
            sources = [f"127.0.0.{i}" for i in range(2, 42)]
            nursery.start_soon(flood, port, sources, 8, opened)
            await eventually(lambda: a.stats.connections_refused > 200)

            b_scope = trio.CancelScope()
            again = TcpTransport("b", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
            nursery.start_soon(run_b, again)
            started = trio.current_time()
            await eventually(lambda: "b" in a.peers(), timeout=5)
            # In through the reserve, not by waiting for the flood's handshakes to
            # time out (the first-byte timeout is 1 s; the flood reopens at once).
            assert trio.current_time() - started < 1.0
            assert opened[0] > 320  # the flood kept reopening what a closed
            b_scope.cancel()

    trio.run(main)


def test_an_idle_connection_is_closed_after_the_first_byte_timeout() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), first_byte_timeout_s=0.5)
        async with serving(a):
            stream = await connect_from("127.0.0.2", port)
            started = trio.current_time()
            with trio.fail_after(5):
                assert await stream.receive_some(1024) == b""  # closed by a, never a byte
            assert 0.4 < trio.current_time() - started < 2.0
            assert a.stats.handshakes_failed == 1

    trio.run(main)


async def authenticated_client(port: int, node_id: str) -> tuple[trio.SocketStream, Connection]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    client = Connection(node_id, "127.0.0.1:9", SECRET, client=True, max_frame_bytes=1 << 20)
    await authenticate(stream, client)
    return stream, client


def test_ten_thousand_gossiped_addresses_are_capped_and_forgotten() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport(
            "a",
            secret=SECRET,
            listen=("127.0.0.1", port),
            max_learned_addresses=100,
            forget_after_s=1.0,
            **fast(),
        )
        async with serving(a):
            stream, liar = await authenticated_client(port, "liar")
            async with stream:
                for frame in range(10):  # 10 frames of 1,000 addresses nobody listens at
                    liar.send_peers([f"127.0.0.{frame + 2}:{p}" for p in range(1000, 2000)])
                    await stream.send_all(liar.data_to_send())
                book = a._book

                def handled() -> int:  # every address was dropped, or learned once
                    return a.stats.addresses_dropped + book.forgotten + len(book.learned())

                with trio.move_on_after(10):
                    while handled() < 10_000 + 1:  # and liar's own listen address
                        assert len(a.dialling()) <= 101  # the cap, and liar's address
                        await trio.sleep(0.01)
                assert handled() == 10_000 + 1, (a.stats, len(book.learned()))
                assert a.stats.addresses_dropped >= 8_000
                # None of them ever answered: all are forgotten, their loops end.
                await eventually(lambda: len(a.dialling()) <= 1, timeout=10)
                assert a.stats.addresses_forgotten >= 99  # one slot holds liar's own address

    trio.run(main)


def test_a_peer_that_restarts_on_a_new_address_is_not_dialled_at_the_old_one() -> None:
    async def main() -> None:
        port, old, new = free_port(), free_port(), free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), **fast())
        seed = [f"127.0.0.1:{port}"]
        async with serving(a) as nursery:
            first = TcpTransport("b", secret=SECRET, listen=("127.0.0.1", old), seeds=seed)
            scope = trio.CancelScope()

            async def run(transport: TcpTransport, scope: trio.CancelScope) -> None:
                with scope:
                    await transport.serve()

            nursery.start_soon(run, first, scope)
            await eventually(lambda: f"127.0.0.1:{old}" in a.dialling())
            scope.cancel()  # the pod is gone; its IP (here: port) will not come back
            await eventually(lambda: "b" not in a.peers())
            second = TcpTransport("b", secret=SECRET, listen=("127.0.0.1", new), seeds=seed)
            scope = trio.CancelScope()
            nursery.start_soon(run, second, scope)
            await eventually(lambda: "b" in a.peers())
            await eventually(lambda: f"127.0.0.1:{old}" not in a.dialling(), timeout=5)
            assert f"127.0.0.1:{new}" in a.dialling()
            assert a.stats.addresses_forgotten == 1
            scope.cancel()

    trio.run(main)


def test_failed_handshakes_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), first_byte_timeout_s=0.2)
        async with serving(a):
            for _ in range(20):
                stream = await connect_from("127.0.0.2", port)
                async with stream:
                    await stream.send_all(b"\x00\x00\xff\xff")  # over the handshake limit
            stream = await connect_from("127.0.0.2", port)  # and one that says nothing
            await eventually(lambda: a.stats.handshakes_failed == 21)
            await stream.aclose()

    with caplog.at_level("WARNING", logger="chorus.tcp"):
        trio.run(main)
    warnings = [r.getMessage() for r in caplog.records if "handshake failed" in r.getMessage()]
    assert len(warnings) == 1
    assert "over the 1024-byte limit" in warnings[0]


def test_a_timed_out_handshake_says_so() -> None:
    from transport._tcp import log

    async def main() -> None:
        port = free_port()
        a = TcpTransport("a", secret=SECRET, listen=("127.0.0.1", port), first_byte_timeout_s=0.2)
        async with serving(a), await connect_from("127.0.0.2", port):
            await eventually(lambda: a.stats.handshakes_failed == 1)

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Keep(logging.DEBUG)
    log.addHandler(handler)
    try:
        trio.run(main)
    finally:
        log.removeHandler(handler)
    assert any("handshake failed: TooSlowError" in r for r in records)


def test_a_node_seeded_with_its_own_address_stops_dialling_it_for_a_while() -> None:
    async def main() -> None:
        port = free_port()
        a = TcpTransport(
            "a",
            secret=SECRET,
            listen=("127.0.0.1", port),
            advertise=f"localhost:{port}",  # so the seed below is an alias of it
            seeds=[f"127.0.0.1:{port}"],
            forget_after_s=1.0,
            **fast(),
        )
        async with serving(a):
            await eventually(lambda: a.stats.connections_dialled >= 1)
            await trio.sleep(0.5)
            assert a.stats.connections_dialled == 1  # it saw the loop, and waits
            assert a.peers() == frozenset()
            # The mark expires (a relay could have faked it): it tries once more.
            await eventually(lambda: a.stats.connections_dialled == 2, timeout=5)
            assert a.peers() == frozenset()

    trio.run(main)


class _HungUp(trio.abc.Stream):
    """An accepted connection from ``host`` that hangs up at once."""

    def __init__(self, host: str) -> None:
        self.socket = self
        self.host = host

    def getpeername(self) -> tuple[str, int]:
        return (self.host, 40000)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        pass

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return b""

    async def aclose(self) -> None:
        pass


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["10.0.0.5", "::ffff:10.0.0.5", "2001:db8::1", "2001:db8::2", "203.0.113.7"]
            ),
            st.booleans(),  # make the host known first
        ),
        max_size=60,
    )
)
def test_pending_handshake_counters_always_return_to_zero(
    accepts: list[tuple[str, bool]],
) -> None:
    async def main() -> None:
        t = TcpTransport("a", secret=SECRET)
        t._advertise = "127.0.0.1:1"
        for host, learn in accepts:
            if learn:
                t._add_known_hosts([host])
            await t._accept(_HungUp(host))  # type: ignore[arg-type]
            assert (t._pending, t._pending_unknown, t._pending_by_source) == (0, 0, {})
        assert t.stats.connections_refused == 0

    trio.run(main)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("other-secret", "a different cluster secret"),
        ("http", "an HTTP port"),
        ("nothing", "connection refused"),
    ],
)
def test_dial_errors_name_the_usual_misconfigurations(kind: str, expected: str) -> None:
    async def http_server(stream: trio.SocketStream) -> None:
        await stream.receive_some(1024)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()

    async def main() -> None:
        port = free_port()
        async with trio.open_nursery() as nursery:
            if kind == "other-secret":
                other = TcpTransport(
                    "x", secret=b"0e1f5ecae7a1b2c3d4e5f60718293a4b", listen=("127.0.0.1", port)
                )
                await nursery.start(other.serve)
            elif kind == "http":
                await nursery.start(trio.serve_tcp, http_server, port)
            a = TcpTransport("a", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **fast())
            await nursery.start(a.serve)
            await eventually(lambda: f"127.0.0.1:{port}" in a.dial_errors())
            assert expected in a.dial_errors()[f"127.0.0.1:{port}"]
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_an_unresolvable_seed_is_named_in_dial_errors_and_once_at_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        seed = "no-such-host.invalid:7000"
        a = TcpTransport("a", secret=SECRET, seeds=[seed], resolve_interval_s=0.05, **fast())
        async with serving(a):
            await eventually(lambda: seed in a.dial_errors())
            assert "cannot resolve" in a.dial_errors()[seed]
            await trio.sleep(0.3)  # several more lookups fail the same way

    with caplog.at_level("WARNING", logger="chorus.tcp"):
        trio.run(main)
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "cannot resolve" in errors[0].getMessage()


def test_a_dial_error_leaves_once_that_node_connects_to_us() -> None:
    """a dialled b's address before b was up; b then dials a. The link is up, so
    ``dial_errors`` must not go on saying that b's address refuses connections."""

    async def main() -> None:
        port = free_port()
        options = {**fast(), "backoff_initial_s": 30.0, "backoff_max_s": 30.0}
        a = TcpTransport("a", secret=SECRET, seeds=[f"127.0.0.1:{port}"], **options)
        async with serving(a):
            await eventually(lambda: f"127.0.0.1:{port}" in a.dial_errors())
            assert a.address is not None
            b = TcpTransport(
                "b", secret=SECRET, listen=("127.0.0.1", port), seeds=[f"127.0.0.1:{a.address[1]}"]
            )
            async with serving(b):
                await eventually(lambda: "b" in a.peers())
                assert a.dial_errors() == {}  # a has not dialled again (30 s backoff)

    trio.run(main)


class _SlowDns(trio.abc.HostnameResolver):
    """``seed.test`` resolves to nothing for its first ``empty`` lookups, then to
    127.0.0.1: a StatefulSet's pods appearing in DNS late."""

    def __init__(self, empty: int) -> None:
        self.empty, self.lookups = empty, 0

    async def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        assert host in (b"seed.test", "seed.test"), host
        self.lookups += 1
        if self.lookups <= self.empty:
            raise trio.socket.gaierror(trio.socket.EAI_NONAME, "no such name yet")
        return [(trio.socket.AF_INET, trio.socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> tuple[str, str]:
        return "seed.test", str(sockaddr[1])  # the one name it knows


def test_a_seed_that_resolves_late_is_looked_up_again_within_seconds() -> None:
    async def main() -> None:
        dns = _SlowDns(empty=2)
        trio.socket.set_custom_hostname_resolver(dns)
        port = free_port()
        b = TcpTransport("b", secret=SECRET, listen=("127.0.0.1", port), **fast())
        # resolve_interval_s is 30 s: only the quick retry can find b within 5 s.
        a = TcpTransport("a", secret=SECRET, seeds=[f"seed.test:{port}"], **fast())
        async with serving(b), serving(a):
            with trio.fail_after(5):
                await eventually(lambda: a.peers() == {"b"})
            lookups = dns.lookups
            await trio.sleep(3.5)  # linked: at most the lookup already due, then 30 s
            assert dns.lookups <= lookups + 1

    trio.run(main)


def test_a_dial_error_of_an_ip_seed_stays_across_lookups() -> None:
    """An IP seed is looked up too (to the same address): a successful lookup must not
    clear the address's dial error, or /ready's reason flickers with every lookup."""

    async def main() -> None:
        seed = f"127.0.0.1:{free_port()}"  # nothing listens there
        a = TcpTransport("a", secret=SECRET, seeds=[seed], resolve_interval_s=0.02, **fast())
        async with serving(a):
            await eventually(lambda: seed in a.dial_errors())
            for _ in range(50):  # about 25 lookups
                assert seed in a.dial_errors()
                await trio.sleep(0.02)

    trio.run(main)
