"""``GET /events`` of a real ``chorus serve`` process, over a socket (found by an
adversarial review of the change feed)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.helpers import Serve

SECRET, TOKEN = "b7c1e2a9d40f3e5a6b7c8d9e0f1a2b3c", "events-admin-token-0123456789"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    served = Serve("a", [], tmp_path_factory.mktemp("node"), SECRET, TOKEN, ("--ui", "on"))
    try:
        served.wait_ready()
        yield served
    finally:
        served.process.kill()
        served.process.wait(10)


def read_for(port: int, request: bytes, seconds: float) -> tuple[bytes, float | None]:
    """Send ``request``, read for ``seconds``: (what came, when the server closed the
    connection, in seconds after the request; None if it stayed open)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds + 5) as sock:
        start = time.monotonic()
        sock.sendall(request)
        received = b""
        while (elapsed := time.monotonic() - start) < seconds:
            sock.settimeout(max(0.05, seconds - elapsed))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                return received, time.monotonic() - start
            received += chunk
        return received, None


@pytest.mark.timeout(60)
def test_an_idle_event_stream_stays_open_past_its_first_heartbeat(node: Serve) -> None:
    """Found by the review: Hypercorn's read_timeout (then 10 s) counts from the
    client's last byte, and a stream's client sends none after its request, so the
    node cut every idle stream before its first heartbeat (15 s)."""
    request = (
        f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    ).encode()
    received, closed_after = read_for(node.http, request, 17.0)
    assert b"event: snapshot" in received
    assert closed_after is None, f"closed by the node after {closed_after:.1f} s"
    assert b": heartbeat" in received
