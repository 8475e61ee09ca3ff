"""Small helpers the real-socket and real-process tests share."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from transport._tcp_protocol import Connection

ROOT = Path(__file__).resolve().parents[1]


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


class Serve:
    """One ``chorus serve`` process on 127.0.0.1 with free ports, joining the cluster
    ports ``join``, with more command-line ``options``, its stderr in ``tmp/<name>.log``.
    ``start`` again after it stopped: the same node id, ports and options."""

    def __init__(
        self,
        name: str,
        join: list[int],
        tmp: Path,
        secret: str,
        token: str,
        options: Sequence[str] = (),
    ) -> None:
        self.name, self.gossip, self.http = name, free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http}"
        self.join, self.options = join, tuple(options)
        # This checkout's packages, whatever the venv has installed (a worktree's own).
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "CHORUS_SECRET": secret, "CHORUS_TOKEN": token}
        self.env["PYTHONPATH"] = path
        self.log = tmp / f"{name}.log"
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as stderr:
            self.process = subprocess.Popen(
                serve_argv(self.name, self.gossip, self.http, self.join, *self.options),
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    def stop(self) -> int:
        """SIGTERM, then its exit code (SIGKILL if it is still running after 10 s)."""
        self.process.terminate()
        try:
            return self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=2, **kwargs)

    def ready(self) -> bool:
        try:
            return self.get("/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until it is ready; fail (with its log) if it exits or takes too long."""
        eventually(lambda: self.ready() or self.process.poll() is not None, timeout)
        assert self.ready(), self.log.read_text()[-2000:]


@contextmanager
def three_served(
    tmp: Path, secret: str, token: str, options: Sequence[str] = ()
) -> Iterator[list[Serve]]:
    """Nodes ``a``, ``b`` and ``c`` (which join ``a``), each with ``options``, each
    ready (20 s at most each); killed on the way out."""
    nodes: list[Serve] = []
    try:
        nodes.append(Serve("a", [], tmp, secret, token, options))
        nodes[0].wait_ready()
        nodes += [
            Serve(name, [nodes[0].gossip], tmp, secret, token, options) for name in ("b", "c")
        ]
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.process.kill()
            node.process.wait(10)


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
