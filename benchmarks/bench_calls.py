"""Calls between nodes on loopback, beside a raw TCP round trip and an HTTP call.

Two real processes on 127.0.0.1. The callee process runs a `transport.Node` over
`transport.TcpTransport` serving ``"echo"`` (the handler returns its payload), and
on the same trio loop a raw TCP echo server (trio) and an HTTP endpoint (Starlette
on Hypercorn, as ``chorus serve``'s admin) that echoes the body. The caller is this
process: its own Node (``node.call("callee", "echo", payload)``), a trio TCP stream,
and ``httpx.AsyncClient`` (one pooled connection per concurrent caller), all on one
trio loop, with the same 100-byte payload.

Each repeat measures, in turn: round trips one at a time (p50, p99), then calls/s
with 1 and with 16 concurrent callers. The table shows medians over repeats.

Prints a Markdown table and writes benchmarks/results/calls.json.
Run: ``python benchmarks/bench_calls.py`` (``--repeats 5 --rounds 1000 --seconds 1.5``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import trio

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # the checkout's packages, as the callee gets them

from _report import report  # noqa: E402

SECRET = "be4c4a1b2c3d4e5f60718293a4b5c6d7"
PAYLOAD = "x" * 100


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


# -- the callee process ------------------------------------------------------------------


async def serve_callee() -> None:
    """Serve ``echo`` on a Node, raw TCP echo and HTTP echo; print their ports; run
    until stdin closes."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from transport import Node, TcpTransport

    async def echo(caller: str, payload: Any) -> Any:
        return payload

    async def tcp_echo(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                async for data in stream:
                    await stream.send_all(data)
            except trio.BrokenResourceError:
                pass  # the caller closed it mid-round-trip, at the end of a run

    async def http_echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    transport = TcpTransport("callee", secret=SECRET, listen="127.0.0.1:0")
    async with Node("callee", transport) as node, trio.open_nursery() as nursery:
        node.serve("echo", echo, max_concurrent=256)
        listeners = await nursery.start(trio.serve_tcp, tcp_echo, 0)
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.loglevel = "WARNING"
        app = cast(Any, Starlette(routes=[Route("/echo", http_echo, methods=["POST"])]))
        bound = await nursery.start(functools.partial(hypercorn_serve, app, config))
        assert transport.address is not None
        ports = {
            "cluster": transport.address[1],
            "tcp": listeners[0].socket.getsockname()[1],
            "http": int(bound[0].rsplit(":", 1)[1]),
        }
        print(json.dumps(ports), flush=True)
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()


# -- the caller --------------------------------------------------------------------------

RoundTrip = Callable[[], Awaitable[None]]


async def latencies_us(one: RoundTrip, rounds: int) -> list[float]:
    for _ in range(rounds // 10):  # warm up
        await one()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        await one()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


async def per_second(ones: list[RoundTrip], seconds: float) -> float:
    """Round trips per second with one task per entry of ``ones``, each starting round
    trips for ``seconds`` (none is cut short: the count is of whole round trips)."""
    done = 0
    start = trio.current_time()
    end = start + seconds

    async def loop(one: RoundTrip) -> None:
        nonlocal done
        while trio.current_time() < end:
            await one()
            done += 1

    async with trio.open_nursery() as nursery:
        for one in ones:
            nursery.start_soon(loop, one)
    return done / (trio.current_time() - start)


async def measure(ports: dict[str, int], repeats: int, rounds: int, seconds: float) -> Any:
    import httpx

    from transport import Node, TcpTransport

    transport = TcpTransport(
        "caller", secret=SECRET, listen="127.0.0.1:0", seeds=[f"127.0.0.1:{ports['cluster']}"]
    )
    runs: dict[str, list[dict[str, float]]] = {"call": [], "tcp": [], "http": []}
    async with Node("caller", transport) as node:
        with trio.fail_after(30):
            while "echo" not in node.services_of("callee"):
                await trio.sleep(0.05)

        def call() -> RoundTrip:
            async def one() -> None:
                await node.call("callee", "echo", PAYLOAD)

            return one

        streams: list[trio.SocketStream] = []

        async def tcp() -> RoundTrip:
            stream = await trio.open_tcp_stream("127.0.0.1", ports["tcp"])
            streams.append(stream)
            data = PAYLOAD.encode()

            async def one() -> None:
                await stream.send_all(data)
                received = 0
                while received < len(data):
                    received += len(await stream.receive_some(4096))

            return one

        clients: list[httpx.AsyncClient] = []

        def http() -> RoundTrip:
            client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['http']}")
            clients.append(client)

            async def one() -> None:
                response = await client.post("/echo", content=PAYLOAD)
                assert response.content == PAYLOAD.encode()

            return one

        try:
            for _ in range(repeats):
                for kind in runs:
                    if kind == "call":
                        ones = [call() for _ in range(16)]
                    elif kind == "tcp":
                        ones = [await tcp() for _ in range(16)]
                    else:
                        ones = [http() for _ in range(16)]
                    samples = await latencies_us(ones[0], rounds)
                    runs[kind].append(
                        {
                            "p50_us": statistics.median(samples),
                            "p99_us": percentile(samples, 0.99),
                            "per_s_1": await per_second(ones[:1], seconds),
                            "per_s_16": await per_second(ones, seconds),
                        }
                    )
        finally:
            for client in clients:
                await client.aclose()
            for stream in streams:
                await stream.aclose()
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1000, help="round trips per repeat")
    parser.add_argument("--seconds", type=float, default=1.5, help="per throughput run")
    parser.add_argument("--serve", action="store_true", help="be the callee process")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "calls.json"
    )
    args = parser.parse_args(argv)
    if args.serve:
        trio.run(serve_callee)
        return 0

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    callee = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert callee.stdout is not None
        ports = json.loads(callee.stdout.readline())
        runs = trio.run(measure, ports, args.repeats, args.rounds, args.seconds)
    finally:
        assert callee.stdin is not None
        callee.stdin.close()
        try:
            callee.wait(timeout=10)
        except subprocess.TimeoutExpired:
            callee.kill()

    def med(kind: str, figure: str) -> float:
        value: float = statistics.median(run[figure] for run in runs[kind])
        return value

    results: dict[str, Any] = {
        "payload_bytes": len(PAYLOAD),
        "repeats": args.repeats,
        "rounds": args.rounds,
        "setup": "two processes on 127.0.0.1: the caller (this one) and the callee",
        "runs": runs,
    }
    for kind in runs:
        for figure in ("p50_us", "p99_us", "per_s_1", "per_s_16"):
            results[f"{kind}_{figure}"] = med(kind, figure)
    names = {
        "call": "node.call (TcpTransport)",
        "tcp": "raw TCP echo (trio)",
        "http": "HTTP POST via httpx (Starlette on Hypercorn)",
    }
    rows = []
    for kind, name in names.items():
        p50, p99 = results[f"{kind}_p50_us"], results[f"{kind}_p99_us"]
        vs = "" if kind == "call" else f"call is {results['call_p50_us'] / p50:.2f}x its p50"
        rows.append((f"{name}: round trip p50 / p99", f"{p50:,.0f} / {p99:,.0f} µs", vs))
    for kind, name in names.items():
        one, many = results[f"{kind}_per_s_1"], results[f"{kind}_per_s_16"]
        vs = "" if kind == "call" else f"call does {results['call_per_s_16'] / many:.2f}x at 16"
        rows.append((f"{name}: per second, 1 / 16 callers", f"{one:,.0f} / {many:,.0f}", vs))
    report(
        f"Calls between two processes on loopback, {len(PAYLOAD)}-byte payload, "
        f"medians of {args.repeats} repeats",
        rows,
        results,
        args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
