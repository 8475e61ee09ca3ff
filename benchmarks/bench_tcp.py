"""Real processes on loopback: write-to-visible latency and sustained write throughput.

Five `transport.process` nodes over TcpTransport on 127.0.0.1. A write's latency is
from just before ``set`` on the writer to the moment the *last* other node's
subscriber sees it, both read from ``time.monotonic_ns()`` (one clock for every
process on Linux). Beside it, in the same run, a raw TCP round trip between two
Python processes (a trio echo server), the floor for any of this.

Prints a Markdown table and writes benchmarks/results/tcp.json.
Run: ``./scripts/bench-tcp`` (options: ``--nodes 5 --writes 300 --burst 2000``).
"""

from __future__ import annotations

import argparse
import queue
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import report

from transport.process import NodeProcess

SECRET = "be4c4a1b2c3d4e5f60718293a4b5c6d7"
ECHO_SERVER = """
import sys, trio
async def echo(stream):
    async with stream:
        async for data in stream:
            await stream.send_all(data)
async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(echo, listeners)
trio.run(main)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def raw_tcp_rtt_us(rounds: int) -> list[float]:
    """Round trips of 100 bytes to an echo server in another process, in µs."""
    server = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            samples = []
            for _ in range(rounds):
                start = time.perf_counter_ns()
                sock.sendall(b"x" * 100)
                received = 0
                while received < 100:
                    received += len(sock.recv(4096))
                samples.append((time.perf_counter_ns() - start) / 1000)
            return samples
    finally:
        server.kill()


def drain(node: NodeProcess, seen: dict[str, dict[str, int]], timeout: float) -> None:
    try:
        event = node.events.get(timeout=timeout)
    except queue.Empty:
        return
    for key in event["keys"]:
        seen[node.node_id].setdefault(key, event["t_ns"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--burst", type=int, default=20_000)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "tcp.json")
    args = parser.parse_args(argv)

    ports = [free_port() for _ in range(args.nodes)]
    nodes: list[NodeProcess] = []
    try:
        for i, port in enumerate(ports):
            seeds = [f"127.0.0.1:{p}" for p in ports[:i]]
            nodes.append(NodeProcess(f"n{i}", f"127.0.0.1:{port}", seeds, SECRET))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(len(n.request(op="status")["members"]) == args.nodes for n in nodes):
                break
            time.sleep(0.1)
        for node in nodes:
            node.request(op="watch", map="m")
        seen: dict[str, dict[str, int]] = {n.node_id: {} for n in nodes}

        # Latency: one write at a time, round-robin over writers.
        latencies_us = []
        for i in range(args.writes):
            writer = nodes[i % len(nodes)]
            key = f"lat:{i}"
            start = writer.request(op="set", map="m", key=key, value=i)["t_ns"]
            others = [n for n in nodes if n is not writer]
            limit = time.monotonic() + 10
            while not all(key in seen[n.node_id] for n in others) and time.monotonic() < limit:
                for n in others:
                    drain(n, seen, 0.001)
            latencies_us.append((max(seen[n.node_id][key] for n in others) - start) / 1000)
            time.sleep(0.002)

        # Throughput: a burst of writes on one node, until every other node has them all.
        writer, others = nodes[0], nodes[1:]
        reply = writer.request(timeout=60, op="burst", map="m", prefix="burst:", count=args.burst)
        first = reply["t_ns"]
        limit = time.monotonic() + 60
        while time.monotonic() < limit:
            for n in others:
                drain(n, seen, 0.001)
            if all(
                sum(k.startswith("burst:") for k in seen[n.node_id]) == args.burst for n in others
            ):
                break
        done = max(
            max(t for k, t in seen[n.node_id].items() if k.startswith("burst:")) for n in others
        )
        throughput = args.burst / ((done - first) / 1e9)
    finally:
        for node in nodes:
            node.kill()

    rtt = raw_tcp_rtt_us(1000)
    results = {
        "nodes": args.nodes,
        "write_to_all_p50_us": statistics.median(latencies_us),
        "write_to_all_p99_us": percentile(latencies_us, 0.99),
        "raw_tcp_rtt_p50_us": statistics.median(rtt),
        "raw_tcp_rtt_p99_us": percentile(rtt, 0.99),
        "burst_writes": args.burst,
        "burst_writes_per_s": throughput,
        "latency_samples_us": latencies_us,
    }
    rows = [
        (
            f"write visible on all {args.nodes} processes, p50",
            f"{results['write_to_all_p50_us'] / 1000:.2f} ms",
            "target < 2 ms",
        ),
        (
            f"write visible on all {args.nodes} processes, p99",
            f"{results['write_to_all_p99_us'] / 1000:.2f} ms",
            "target < 10 ms",
        ),
        (
            "raw TCP round trip between two processes, p50",
            f"{results['raw_tcp_rtt_p50_us'] / 1000:.3f} ms",
            "the floor",
        ),
        (
            "raw TCP round trip between two processes, p99",
            f"{results['raw_tcp_rtt_p99_us'] / 1000:.3f} ms",
            "",
        ),
        (
            f"sustained writes on one node, {args.burst} in a burst",
            f"{throughput:,.0f} writes/s",
            "until all peers hold all",
        ),
    ]
    report(
        f"chorus over TCP on loopback, {args.nodes} processes, {args.writes} writes",
        rows,
        results,
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
