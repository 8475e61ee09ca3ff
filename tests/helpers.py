"""Small helpers the real-socket and real-process tests share."""

import socket
import sys
import time
from collections.abc import Callable, Iterable

import trio

from transport._tcp_protocol import Connection


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_argv(
    name: str, gossip: int, http: int, join: Iterable[int] = (), *options: str
) -> list[str]:
    """The command line of a ``chorus serve`` process on 127.0.0.1 (a node id, its
    cluster and HTTP ports, the cluster ports it joins, and more options)."""
    return [
        *(sys.executable, "-m", "flags.cli", "serve", "--node-id", name),
        *("--listen", f"127.0.0.1:{gossip}", "--http", f"127.0.0.1:{http}"),
        *(["--join", ",".join(f"127.0.0.1:{p}" for p in join)] if join else []),
        *options,
    ]


def eventually(check: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``check`` every 20 ms until it is truthy (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


async def authenticate(stream: trio.abc.Stream, client: Connection) -> bytes:
    """Drive the client side of a TCP handshake over ``stream`` (5 s per reply);
    return every byte it sent."""
    sent = b""
    while not client.open:
        out = client.data_to_send()
        sent += out
        await stream.send_all(out)
        with trio.fail_after(5):
            client.receive_data(bytes(await stream.receive_some(65536)))
    out = client.data_to_send()  # the identity
    await stream.send_all(out)
    return sent + out
