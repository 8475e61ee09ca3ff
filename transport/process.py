"""Run one node as a child process driven over stdin/stdout, for tests and benchmarks.

``chorus serve`` (flags/) is the production entry point; this is the harness that
multi-process tests and benchmarks drive. Start it as::

    CHORUS_SECRET=... python -m transport.process --node-id a --listen 127.0.0.1:7001 \\
        --seeds 127.0.0.1:7000

It reads one JSON command per line on stdin and answers one JSON line on stdout:

- ``{"op": "set", "map": m, "key": k, "value": v}`` -> ``{"ok": true, "t_ns": ...}``
- ``{"op": "delete", "map": m, "key": k}`` -> ``{"ok": true}``
- ``{"op": "get", "map": m, "key": k}`` -> ``{"ok": true, "value": v}``
- ``{"op": "items", "map": m}`` -> ``{"ok": true, "items": [[k, v], ...]}``
- ``{"op": "status"}`` -> ``{"ok": true, "synced": bool, "members": [...]}``
- ``{"op": "burst", "map": m, "prefix": p, "count": n}``: writes keys ``p0`` ..
  ``p{n-1}`` as fast as the node takes them (yielding every 100), then answers
  ``{"ok": true, "t_ns": start, "end_ns": end}``.
- ``{"op": "watch", "map": m}`` -> ``{"ok": true}``; from then on, every change to
  ``m`` prints ``{"event": "changed", "keys": [...], "t_ns": ...}``.

``t_ns`` is ``time.monotonic_ns()``: on Linux one clock for every process, so a
driver can subtract times taken in different processes. The secret comes from the
environment only: never argv, never logged. Exits 0 on end of input or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import trio

from ._node import Node
from ._secret import WeakSecretError, check_secret
from ._tcp import TcpTransport


def _print(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve(args: argparse.Namespace, secret: str) -> None:
    transport = TcpTransport(
        args.node_id,
        secret=secret,
        listen=args.listen,
        seeds=[s for s in args.seeds.split(",") if s],
        backoff_initial_s=0.05,
        backoff_max_s=1.0,
    )
    async with Node(
        args.node_id,
        transport,
        heartbeat_interval_s=args.heartbeat_interval_s,
        failure_timeout_s=args.heartbeat_interval_s * 6,
        join_timeout_s=args.join_timeout_s,
    ) as node:
        watched: set[str] = set()

        def handle(command: dict[str, Any]) -> dict[str, Any]:
            op = command.get("op")
            if op == "set":
                t_ns = time.monotonic_ns()
                node.map(command["map"]).set(command["key"], command["value"])
                return {"ok": True, "t_ns": t_ns}
            if op == "delete":
                node.map(command["map"]).delete(command["key"])
                return {"ok": True}
            if op == "get":
                return {"ok": True, "value": node.map(command["map"]).get(command["key"])}
            if op == "items":
                return {"ok": True, "items": sorted(node.map(command["map"]).items())}
            if op == "status":
                return {"ok": True, "synced": node.synced, "members": sorted(node.members())}
            if op == "watch" and command["map"] not in watched:
                watched.add(command["map"])
                node.map(command["map"]).subscribe(
                    lambda keys: _print(
                        {"event": "changed", "keys": sorted(keys), "t_ns": time.monotonic_ns()}
                    )
                )
                return {"ok": True}
            return {"ok": False, "error": f"unknown op {op!r}"}

        async def burst(command: dict[str, Any]) -> dict[str, Any]:
            target, prefix = node.map(command["map"]), command["prefix"]
            start = time.monotonic_ns()
            for i in range(command["count"]):
                target.set(f"{prefix}{i}", i)
                if i % 100 == 99:
                    await trio.sleep(0)
            return {"ok": True, "t_ns": start, "end_ns": time.monotonic_ns()}

        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def on_sigterm() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(on_sigterm)
                _print({"ready": True, "port": transport.address[1] if transport.address else None})
                while True:
                    line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
                    if not line:
                        break
                    try:
                        command = json.loads(line)
                        if command.get("op") == "burst":
                            reply = await burst(command)
                        else:
                            reply = handle(command)
                    except Exception as exc:  # report to the driver, keep serving
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    _print(reply)
                nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m transport.process", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--seeds", default="", help="comma-separated host:port list")
    parser.add_argument("--heartbeat-interval-s", type=float, default=0.2)
    parser.add_argument("--join-timeout-s", type=float, default=3.0)
    args = parser.parse_args(argv)
    secret = os.environ.get("CHORUS_SECRET")
    if not secret:
        parser.error("set the cluster secret in the CHORUS_SECRET environment variable")
    try:
        check_secret(secret)
    except WeakSecretError as exc:
        parser.error(str(exc))
    trio.run(_serve, args, secret)
    return 0


class NodeProcess:
    """A driver for one ``python -m transport.process`` child (tests, benchmarks).

    Args:
        node_id, listen, seeds: as for the command line.
        secret: put in the child's environment as CHORUS_SECRET.
        logs: let the child's logs through to our stderr (default: discarded).
    """

    def __init__(
        self, node_id: str, listen: str, seeds: Sequence[str], secret: str, *, logs: bool = False
    ) -> None:
        self.node_id = node_id
        env = {**os.environ, "CHORUS_SECRET": secret}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "transport.process",
                "--node-id",
                node_id,
                "--listen",
                listen,
                "--seeds",
                ",".join(seeds),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None if logs else subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = self._replies.get(timeout=30)
        if not ready.get("ready"):
            raise RuntimeError(f"{node_id} did not start: {ready}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            (self.events if "event" in message else self._replies).put(message)

    def request(self, timeout: float = 10.0, **command: Any) -> dict[str, Any]:
        """Send a command; return its reply. Raises queue.Empty on timeout."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._replies.get(timeout=timeout)

    def kill(self) -> None:
        """``kill -9``: no goodbye, no flush."""
        self.process.kill()
        self.process.wait(10)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; returns the exit code."""
        self.process.terminate()
        return self.process.wait(timeout)


if __name__ == "__main__":
    raise SystemExit(main())
