"""`chorus serve` under attack over real sockets: it keeps serving, its memory stays bounded.

Each test starts a `chorus serve` node (the target) and a peer joined to it, on
127.0.0.1 only. The target starts with a soft descriptor limit of 1,024 (a common
default), so it must raise its own limit to survive the floods.

Each attack is a context manager taking a `Target`: it opens its sockets, checks what
it expects of the server (a 413, connections closed in time) and holds its sockets
while the test checks that the target still serves: ``GET /health`` and ``GET /ready``
answer quickly, a legitimate PUT works and reaches the peer over the cluster port.
The target's peak RSS (VmHWM, reset before each attack) is printed (``pytest -s``)
and bounded by `PEAK_RSS_BOUND_MIB`.

To add an attack: write a ``@contextmanager`` function taking a `Target`, and add it
to `ATTACKS`. Attacks on the cluster port use raw sockets only, never the handshake
format, so they hold whatever the handshake becomes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from flags.http import BODY_TIMEOUT_S
from flags.serve import admin_http_config
from tests.helpers import eventually, free_port

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not Path("/proc/self/clear_refs").exists(), reason="measures memory through Linux's /proc"
    ),
]

SECRET, TOKEN = secrets.token_hex(32), secrets.token_hex(16)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MIB = 1024 * 1024
GIB = 1024 * MIB
#: The soft descriptor limit the target starts with.
TARGET_SOFT_NOFILE = 1024
#: Generous: an idle node peaks near 40 MiB, one holding 1,100 admin connections
#: near 60 MiB (see the printed figures).
PEAK_RSS_BOUND_MIB = 300
#: How long a probe of the target may take while it is under attack, in seconds.
PROBE_TIMEOUT_S = 2.0
#: Where attacks come from: a loopback address other than the peer's (127.0.0.1), so
#: that per-source limits see the attacker as a stranger.
ATTACKER = "127.0.0.2"
#: The admin port closes a connection that has not sent a whole request head
#: within this (Hypercorn's keep_alive_timeout), in seconds.
ADMIN_HEAD_TIMEOUT_S = admin_http_config("127.0.0.1:0").keep_alive_timeout


# -- the target ----------------------------------------------------------------------


@attrs.define
class Process:
    """One `chorus serve` process on 127.0.0.1."""

    name: str
    process: subprocess.Popen[bytes]
    gossip: int
    http: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def status(self, path: str) -> int:
        """The HTTP status of ``GET path``, 0 when it does not answer within 1 s."""
        try:
            return httpx.get(self.url + path, timeout=1.0).status_code
        except httpx.HTTPError:
            return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def _lower_soft_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = TARGET_SOFT_NOFILE if hard == resource.RLIM_INFINITY else min(TARGET_SOFT_NOFILE, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start(name: str, tmp: Path, *, join: int | None = None, low_nofile: bool = False) -> Process:
    """Start `chorus serve` (founding a cluster, or joining the node at port ``join``)."""
    gossip, http = free_port(), free_port()
    log = tmp / f"{name}.log"
    args = ["--node-id", name, "--listen", f"127.0.0.1:{gossip}", "--http", f"127.0.0.1:{http}"]
    if join is not None:
        args += ["--join", f"127.0.0.1:{join}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "flags.cli", "serve", *args],
        env={**os.environ, "CHORUS_SECRET": SECRET, "CHORUS_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
        preexec_fn=_lower_soft_nofile if low_nofile else None,
    )
    return Process(name, process, gossip, http, log)


@attrs.frozen
class Target:
    """The attacked node and a peer joined to it."""

    node: Process
    peer: Process

    @property
    def pid(self) -> int:
        return self.node.process.pid

    def reset_peak_rss(self) -> None:
        """Start a new peak-RSS measurement (Linux: ``5`` into ``clear_refs``)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_rss_mib(self) -> float:
        """The target's peak resident set size since the last reset, in MiB."""
        return _status_kib(self.pid, "VmHWM") / 1024

    def rss_mib(self) -> float:
        """The target's resident set size now, in MiB."""
        return _status_kib(self.pid, "VmRSS") / 1024


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


@pytest.fixture(scope="module")
def own_nofile() -> Iterator[None]:
    """Raise this test process's soft descriptor limit to the hard limit (restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def target(tmp_path: Path, own_nofile: None) -> Iterator[Target]:
    """A fresh target and peer for each test, so each attack's peak RSS is its own."""
    started: list[Process] = []
    try:
        node = start("target", tmp_path, low_nofile=True)
        started.append(node)
        assert eventually(lambda: node.status("/ready") == 200, 20), node.log.read_text()[-2000:]
        peer = start("peer", tmp_path, join=node.gossip)
        started.append(peer)
        assert eventually(lambda: peer.status("/ready") == 200, 20), peer.log.read_text()[-2000:]
        chosen = Target(node, peer)
        print(f"\n[serve-limits] idle target: peak RSS {chosen.peak_rss_mib():.0f} MiB")
        yield chosen
    finally:
        for process in started:
            process.stop()


# -- sockets -------------------------------------------------------------------------


def connect(port: int, timeout: float = 5.0, source: str = ATTACKER) -> socket.socket:
    """A TCP connection from ``source`` to 127.0.0.1:``port``, with ``timeout`` (s) on
    each operation."""
    return socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )


def open_many(
    port: int, count: int, timeout: float = 5.0, source: str = ATTACKER
) -> list[socket.socket]:
    """``count`` connections from ``source`` to 127.0.0.1:``port``; each connect waits
    ``timeout`` s at most.

    Raises:
        OSError: a connection could not be made (the others are closed).
    """
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            opened.append(connect(port, timeout, source))
    except OSError:
        close_all(opened)
        raise
    return opened


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def still_open(sockets: list[socket.socket], timeout: float) -> list[socket.socket]:
    """Wait up to ``timeout`` s for the server to close ``sockets``; return those it did not.

    A socket counts as closed by the server once it is readable: EOF, a reset, or
    (unexpected on these attacks) data.
    """
    poller = select.poll()
    waiting = {sock.fileno(): sock for sock in sockets}
    for fd in waiting:
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        for fd, _ in poller.poll(max(0.0, left) * 1000):
            poller.unregister(fd)
            del waiting[fd]
        if left <= 0:
            break
    return list(waiting.values())


def read_status(sock: socket.socket, timeout: float) -> int | None:
    """The status code of the HTTP response on ``sock``, None if none came within ``timeout`` s."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    parts = data.split(b" ", 2)
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


# -- checks --------------------------------------------------------------------------


def timed_request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request with a `PROBE_TIMEOUT_S` timeout; prints how long it took."""
    started = time.monotonic()
    response = httpx.request(method, url, timeout=PROBE_TIMEOUT_S, **kwargs)
    took = time.monotonic() - started
    path = "/" + url.split("/", 3)[-1]
    print(f"[serve-limits]   {method} {path}: {response.status_code} in {took * 1000:.0f} ms")
    return response


def check_serving(target: Target, label: str) -> None:
    """The target answers /health and /ready quickly, and a PUT works and replicates.

    Raises:
        AssertionError: it did not, within `PROBE_TIMEOUT_S` each.
        httpx.HTTPError: a probe got no answer within `PROBE_TIMEOUT_S`.
    """
    url, flag = target.node.url, f"probe-{label}"
    print(f"[serve-limits] {label}: probes")
    for path in ("/health", "/ready"):
        response = timed_request("GET", url + path)
        assert response.status_code == 200, (path, response.text)
    response = timed_request("PUT", f"{url}/flags/{flag}", json={"enabled": True}, headers=AUTH)
    assert response.status_code == 200, response.text

    def replicated() -> bool:
        answer = httpx.get(f"{target.peer.url}/flags/{flag}", timeout=PROBE_TIMEOUT_S)
        return answer.status_code == 200 and bool(answer.json()["enabled"])

    assert eventually(replicated, 5.0), "the PUT did not reach the peer over the cluster port"


# -- attacks -------------------------------------------------------------------------

Attack = Callable[[Target], AbstractContextManager[None]]


def _body_head(chunked: bool, length: int) -> bytes:
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    return (
        "PUT /flags/huge-body HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _stream_body(
    sock: socket.socket, target: Target, chunked: bool, length: int, stop: threading.Event
) -> None:
    """Send ``length`` bytes of body until ``stop``, a send error, or the target's RSS passes
    `PEAK_RSS_BOUND_MIB` (what a server buffering the body does: stop before it hurts)."""
    block = b"x" * MIB
    piece = b"%x\r\n%b\r\n" % (len(block), block) if chunked else block
    sent = 0
    with contextlib.suppress(OSError):
        while sent < length and not stop.is_set():
            sock.sendall(piece)
            sent += len(block)
            if sent % (32 * MIB) == 0 and target.rss_mib() > PEAK_RSS_BOUND_MIB:
                print(f"[serve-limits] the target buffered the body: {target.rss_mib():.0f} MiB")
                break
        if chunked and sent >= length:
            sock.sendall(b"0\r\n\r\n")
    print(f"[serve-limits] body sender: {sent // MIB} MiB sent before the connection closed")


def huge_body(chunked: bool) -> Attack:
    """A PUT with a 1 GiB body (Content-Length, or chunked without it): 413 within 2 s,
    the connection closed, the flag untouched."""

    @contextmanager
    def attack(target: Target) -> Iterator[None]:
        sock = connect(target.node.http)
        stop = threading.Event()
        sender = threading.Thread(
            target=_stream_body, args=(sock, target, chunked, GIB, stop), daemon=True
        )
        try:
            sock.sendall(_body_head(chunked, GIB))
            started = time.monotonic()
            sender.start()
            status = read_status(sock, timeout=5.0)
            took = time.monotonic() - started
        finally:
            stop.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the sender
            sender.join(10)
            sock.close()
        print(f"[serve-limits] 1 GiB body (chunked={chunked}): {status} after {took:.2f} s")
        assert status == 413
        assert took < 2.0
        flag = httpx.get(target.node.url + "/flags/huge-body", timeout=PROBE_TIMEOUT_S)
        assert flag.status_code == 404  # nothing applied: the flag does not exist
        yield

    return attack


@contextmanager
def admin_flood(target: Target) -> Iterator[None]:
    """On the admin port, 1,000 idle connections, 50 that send part of a request line
    and stall, and 50 that trickle a header (a byte every 0.5 s): the server closes every
    one within its head timeout, trickle or not."""
    opened = time.monotonic()
    idle = open_many(target.node.http, 1000)
    stalled: list[socket.socket] = []
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        stalled = open_many(target.node.http, 50)
        for sock in stalled:
            sock.sendall(b"GET /hea")
        slow = open_many(target.node.http, 50)
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")

        def trickle() -> None:
            while not stop.wait(0.5):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        yield
        flood = idle + stalled + slow
        left = still_open(flood, opened + ADMIN_HEAD_TIMEOUT_S + 3.0 - time.monotonic())
        print(
            f"[serve-limits] admin flood: {len(left)} of {len(flood)} connections "
            f"still open {time.monotonic() - opened:.1f} s after opening"
        )
        assert not left
    finally:
        stop.set()
        close_all(idle + stalled + slow)


@contextmanager
def slow_bodies(target: Target) -> Iterator[None]:
    """100 PUTs whose bodies trickle in (a byte every 0.5 s): each gets 408 once the
    body deadline passes, and nothing is applied."""
    opened = time.monotonic()
    socks = open_many(target.node.http, 100)
    stop = threading.Event()
    try:
        for sock in socks:
            sock.sendall(_body_head(chunked=False, length=1000).replace(b"huge-body", b"slow-body"))
            sock.sendall(b'{"enabled": true, "author": "')

        def trickle() -> None:
            while not stop.wait(0.5):
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")

        threading.Thread(target=trickle, daemon=True).start()
        yield
        deadline = opened + BODY_TIMEOUT_S + 3.0
        statuses = [read_status(sock, max(0.1, deadline - time.monotonic())) for sock in socks]
        print(
            f"[serve-limits] slow bodies: {statuses.count(408)} of {len(socks)} got 408 "
            f"{time.monotonic() - opened:.1f} s after opening"
        )
        assert statuses == [408] * len(socks)
        flag = httpx.get(target.node.url + "/flags/slow-body", timeout=PROBE_TIMEOUT_S)
        assert flag.status_code == 404  # nothing applied: the flag does not exist
    finally:
        stop.set()
        close_all(socks)


@contextmanager
def cluster_idle(target: Target) -> Iterator[None]:
    """1,000 connections on the cluster port that never send a byte: all but a few
    are closed at once (per-source limits), the rest after the 1 s first-byte timeout."""
    opened = time.monotonic()
    idle = open_many(target.node.gossip, 1000)
    try:
        yield
        left = still_open(idle, 6.0)
        print(
            f"[serve-limits] cluster idle: {len(idle) - len(left)} of {len(idle)} closed "
            f"by the server {time.monotonic() - opened:.1f} s after opening"
        )
        assert not left, "the cluster port kept idle connections past the first-byte timeout"
    finally:
        close_all(idle)


@contextmanager
def learned_addresses(target: Target) -> Iterator[None]:
    """A peer that holds the secret gossips 10,000 addresses nobody listens at: the
    target keeps at most 256, and forgets those that never answer."""
    from transport._tcp_protocol import Connection

    sock = connect(target.node.gossip, source="127.0.0.1")
    client = Connection("liar", "127.0.0.1:9", SECRET.encode(), client=True, max_frame_bytes=MIB)
    try:
        while not client.open:
            sock.sendall(client.data_to_send())
            client.receive_data(sock.recv(65536))
        for frame in range(10):
            client.send_peers([f"127.0.{frame}.9:{port}" for port in range(1000, 2000)])
        sock.sendall(client.data_to_send())

        def transport() -> dict[str, Any]:
            reply = timed_request("GET", f"{target.node.url}/cluster")
            return dict(reply.json()["transport"])

        assert eventually(lambda: transport()["addresses_dropped"] >= 9_000, 10), transport()
        yield
        stats = transport()
        print(f"[serve-limits] learned addresses: {stats}")
        assert stats["dialling"] <= 256 + 1  # the cap, and the peer's listen address
    finally:
        sock.close()


def frame_claim(length: int, count: int = 20) -> Attack:
    """``count`` connections on the cluster port, each sending a frame header that claims
    ``length`` bytes and then a byte every 0.2 s; the server must not reserve the claim."""

    @contextmanager
    def attack(target: Target) -> Iterator[None]:
        opened = time.monotonic()
        socks = open_many(target.node.gossip, count)
        try:
            for sock in socks:
                sock.sendall(struct.pack(">I", length))
            for _ in range(3):
                time.sleep(0.2)
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.send(b"\0")
            yield
            left = still_open(socks, 10.0)
            print(
                f"[serve-limits] frame claiming {length} bytes: {count - len(left)} of {count} "
                f"closed by the server after {time.monotonic() - opened:.1f} s"
            )
            assert not left, "the cluster port kept connections whose frame claims a huge length"
        finally:
            close_all(socks)

    return attack


ATTACKS: dict[str, Attack] = {
    "body-1GiB-content-length": huge_body(chunked=False),
    "body-1GiB-chunked": huge_body(chunked=True),
    "admin-1000-idle-and-slow-headers": admin_flood,
    "admin-slow-bodies": slow_bodies,
    "cluster-1000-idle": cluster_idle,
    "cluster-10000-learned-addresses": learned_addresses,
    "frame-claims-10MiB": frame_claim(10 * MIB),
    "frame-claims-4GiB": frame_claim(2**32 - 1),
}


# -- tests ---------------------------------------------------------------------------


def test_serve_raises_its_soft_descriptor_limit_to_the_hard_limit(target: Target) -> None:
    limits = Path(f"/proc/{target.pid}/limits").read_text().splitlines()
    line = next(entry for entry in limits if entry.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    assert soft == hard, line


@pytest.mark.parametrize("name", ATTACKS)
def test_the_node_keeps_serving_under_attack(target: Target, name: str) -> None:
    target.reset_peak_rss()
    with ATTACKS[name](target):
        check_serving(target, name)
    peak = target.peak_rss_mib()
    print(f"[serve-limits] {name}: peak RSS {peak:.0f} MiB")
    assert peak < PEAK_RSS_BOUND_MIB
    check_serving(target, f"{name}-after")
