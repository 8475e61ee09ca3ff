"""``chorus demo``: a local cluster of real ``chorus serve`` processes, end to end.

1. Starts three nodes on free loopback ports, each with the same flags on every
   start (``--join`` the others, ``--bootstrap-expect`` the cluster's size), and waits
   until each is ready: the first start of all founds the cluster, restarts join it.
2. Toggles a flag through one node's HTTP API and times how long until every other
   node shows it (by polling their HTTP APIs: the figures include that round trip).
3. Restarts every node in turn, as a rolling deploy would: SIGTERM, start again, and
   the next only once the restarted one reports ready. Meanwhile a reader polls every
   node and counts wrong answers from nodes that report themselves synced.
4. Prints a timeline and a summary; exits 1 if any check failed. Cleans up its
   processes on success, failure and Ctrl-C.
5. With ``keep``, once every check passed: leaves the nodes running, prints each
   node's web UI address and the admin token to log in with, and waits for Ctrl-C
   (SIGINT) or SIGTERM, then stops them.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

FLAG = "new-checkout"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Cluster:
    def __init__(self, size: int, workdir: Path) -> None:
        self.names = [f"node-{i + 1}" for i in range(size)]
        self.gossip = {n: _free_port() for n in self.names}
        self.http = {n: _free_port() for n in self.names}
        self.token = secrets.token_hex(16)
        self.env = {
            **os.environ,
            "CHORUS_SECRET": secrets.token_hex(16),
            "CHORUS_TOKEN": self.token,
        }
        self.workdir = workdir
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.client = httpx.Client(timeout=2.0, headers={"Authorization": f"Bearer {self.token}"})

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http[name]}"

    def start(self, name: str) -> None:
        """Start (or restart) a node, with the same flags every time: it founds a
        cluster with the others on the first start of all, and joins it after."""
        join = ",".join(f"127.0.0.1:{p}" for n, p in self.gossip.items() if n != name)
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flags.cli",
                "serve",
                "--node-id",
                name,
                "--listen",
                f"127.0.0.1:{self.gossip[name]}",
                "--http",
                f"127.0.0.1:{self.http[name]}",
                "--join",
                join,
                "--bootstrap-expect",
                str(len(self.names)),
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Not in the demo's process group: Ctrl-C reaches the demo alone, which
            # then stops each node with one SIGTERM (a second signal to a node that
            # is shutting down ends it at once).
            process_group=0,
        )
        log.close()

    def ready(self, name: str) -> bool:
        try:
            return self.client.get(f"{self.url(name)}/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, name: str, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                return False
            if self.ready(name):
                return True
            time.sleep(0.02)
        return False

    def flag(self, name: str) -> dict[str, Any] | None:
        try:
            response = self.client.get(f"{self.url(name)}/flags/{FLAG}")
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def put(self, name: str, body: dict[str, Any]) -> None:
        response = self.client.put(
            f"{self.url(name)}/flags/{FLAG}", json={**body, "author": "demo"}
        )
        response.raise_for_status()

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        process = self.processes[name]
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return None

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        self.client.close()


class _Reader(threading.Thread):
    """Polls every node; counts wrong answers from nodes that say they are synced."""

    def __init__(self, cluster: _Cluster, expected: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.cluster, self.expected = cluster, expected
        self.reads = self.wrong = self.unavailable = 0
        self.stop = threading.Event()

    def run(self) -> None:
        client = httpx.Client(timeout=1.0)
        while not self.stop.is_set():
            for name in self.cluster.names:
                try:
                    response = client.get(
                        f"{self.cluster.url(name)}/flags/{FLAG}", params={"actor": "user-7"}
                    )
                except httpx.HTTPError:
                    self.unavailable += 1
                    continue
                document = response.json()
                if not document.get("synced"):
                    self.unavailable += 1
                    continue
                self.reads += 1
                state = {k: document[k] for k in self.expected}
                if state != self.expected:
                    self.wrong += 1
            time.sleep(0.005)
        client.close()


def run_demo(nodes: int = 3, toggles: int = 20, keep: bool = False) -> int:
    """Run the demo; return the exit code (0: every check passed, and with ``keep``
    every node stopped cleanly once told to)."""
    started = time.monotonic()
    checks: list[tuple[str, bool]] = []

    def say(message: str) -> None:
        print(f"{time.monotonic() - started:6.2f}s  {message}", flush=True)

    with tempfile.TemporaryDirectory(prefix="chorus-demo-") as workdir:
        cluster = _Cluster(nodes, Path(workdir))
        try:
            print(f"chorus demo: {nodes} nodes on 127.0.0.1, each a real `chorus serve` process\n")
            for name in cluster.names:
                cluster.start(name)
            for name in cluster.names:
                ok = cluster.wait_ready(name)
                checks.append((f"{name} ready", ok))
                say(
                    f"{name} ready  (cluster :{cluster.gossip[name]}, http {cluster.url(name)})"
                    if ok
                    else f"{name} NOT ready"
                )
            if not all(ok for _, ok in checks):
                return _finish(say, cluster, checks, {})

            writer, others = cluster.names[0], cluster.names[1:]
            propagation_ms: list[float] = []
            for i in range(toggles):
                value = i % 2 == 0
                cluster.put(writer, {"enabled": value})
                t0 = time.perf_counter()
                pending = set(others)
                while pending and time.perf_counter() - t0 < 5:
                    for name in list(pending):
                        document = cluster.flag(name)
                        if document is not None and document["boolean"] is value:
                            pending.discard(name)
                propagation_ms.append((time.perf_counter() - t0) * 1000)
                if i == 0:
                    seen = ", ".join(others)
                    took = f"{propagation_ms[0]:.1f} ms"
                    say(f"{FLAG} enabled on {writer}; seen on {seen} after {took}")
            checks.append(
                (
                    "every toggle reached every node",
                    len(propagation_ms) == toggles and max(propagation_ms) < 5000,
                )
            )
            cluster.put(writer, {"enabled": True})
            cluster.put(others[0], {"group": "banned", "enabled": False})
            cluster.put(others[-1], {"actor": "user-7", "enabled": True})
            expected = {
                "boolean": True,
                "groups": {"banned": False},
                "actors": {"user-7": True},
                "enabled": True,
            }
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                (d := cluster.flag(n)) is None or {k: d[k] for k in expected} != expected
                for n in cluster.names
            ):
                time.sleep(0.01)
            say(f"{toggles} toggles timed; {FLAG} on, 'banned' denied, user-7 enabled, everywhere")

            reader = _Reader(cluster, expected)
            reader.start()
            say("rolling restart begins; a reader polls every node meanwhile")
            for name in cluster.names:
                t0 = time.monotonic()
                code = cluster.stop(name)
                checks.append((f"{name} exits 0 on SIGTERM", code == 0))
                cluster.start(name)
                ok = cluster.wait_ready(name)
                document = cluster.flag(name)
                intact = document is not None and {k: document[k] for k in expected} == expected
                checks.append((f"{name} ready again with its flags", ok and intact))
                say(
                    f"{name} restarted (exit {code}); ready after {time.monotonic() - t0:.2f} s; "
                    f"flags {'intact' if intact else 'WRONG'}"
                )
            reader.stop.set()
            reader.join()
            checks.append(("no wrong read from a synced node", reader.wrong == 0))
            say(
                f"rolling restart done: {reader.reads} reads, {reader.wrong} wrong, "
                f"{reader.unavailable} unavailable or syncing"
            )
            p99 = sorted(propagation_ms)[max(0, int(len(propagation_ms) * 0.99) - 1)]
            summary = {
                "nodes": str(nodes),
                "propagation p50": f"{statistics.median(propagation_ms):.1f} ms",
                "propagation p99": f"{p99:.1f} ms",
                "reads during restart": f"{reader.reads} ({reader.wrong} wrong)",
                "total time": f"{time.monotonic() - started:.1f} s",
            }
            code = _finish(say, cluster, checks, summary)
            return _keep(cluster) if keep and code == 0 else code
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the nodes", file=sys.stderr)
            return 130
        finally:
            cluster.close()


def _keep(cluster: _Cluster) -> int:
    """Leave the nodes running and say where their UIs are, until SIGINT or SIGTERM
    (or until every node has exited); then stop them. 0 when each exited 0."""
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set())
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        print("\nThe cluster keeps running (--keep). Each node's web UI:")
        for name in cluster.names:
            pid = cluster.processes[name].pid
            print(f"  {name}  {cluster.url(name)}/ui/  (pid {pid})")
        print(f"Log in with the admin token: {cluster.token}")
        print("Ctrl-C (or SIGTERM) stops the nodes.", flush=True)
        while not stop.wait(0.2):
            if all(process.poll() is not None for process in cluster.processes.values()):
                print("every node has exited", file=sys.stderr)
                break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    codes = {name: cluster.stop(name) for name in cluster.names}
    print("stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items()))
    return 0 if all(code == 0 for code in codes.values()) else 1


def _finish(
    say: Any, cluster: _Cluster, checks: list[tuple[str, bool]], summary: dict[str, str]
) -> int:
    print()
    width = max((len(k) for k in summary), default=0)
    for key, value in summary.items():
        print(f"  {key.ljust(width)}  {value}")
    if summary:
        print()
    for check, ok in checks:
        print(f"  [{'ok' if ok else 'FAILED'}] {check}")
    failed = [c for c, ok in checks if not ok]
    if failed:
        print(f"\n{len(failed)} check(s) failed. Node logs:", file=sys.stderr)
        for name in cluster.names:
            log = cluster.workdir / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-8:]
                print(f"--- {name}\n" + "\n".join(tail), file=sys.stderr)
        return 1
    print("\nall checks passed")
    return 0
