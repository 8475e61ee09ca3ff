"""One owner per request id, across three real processes: ``python -m examples.owners``.

Each process runs a `transport.Node` over `transport.TcpTransport` on 127.0.0.1 (free
ports, one cluster secret) and serves the service ``"worker"``: the handler keeps a
short-lived worker per request id (its creation time and how many requests it
answered, dropped after `WORKER_IDLE_S` idle) and answers ``{"node", "id", "hits"}``.
Each process also has a tiny HTTP endpoint, ``GET /request/{n}``, that sends the
request to the owner of ``request-{n}`` (`Node.call_owner`) and says which node
was asked and which one answered.

The driver (this module run without arguments) starts the three processes, sends
request ids 1..30 each to a random node, and checks that the other nodes route
every id to the same owner. It stops one node with SIGTERM (a graceful stop: the
node leaves the cluster), waits until the others no longer count it, and sends the
same ids again. It checks that only the stopped node's ids moved, each to a
survivor, and that the other ids kept their owner and their worker (its ``hits``
count went on). Prints both tables; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVICE = "worker"
#: A worker with no request for this long is dropped (the seed's worker process exits).
WORKER_IDLE_S = 20.0
IDS = range(1, 31)
NAMES = ("node-1", "node-2", "node-3")
STOPPED = "node-2"


# -- one node process ------------------------------------------------------------------


async def run_node(node_id: str, listen: str, seeds: list[str], http: str, secret: str) -> None:
    """Serve ``worker`` and ``GET /request/{n}`` until SIGTERM, then leave the cluster."""
    import functools

    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from transport import CallError, Node, TcpTransport

    workers: dict[int, dict[str, float]] = {}

    async def worker(caller: str, n: Any) -> Any:
        now = trio.current_time()
        for old in [k for k, w in workers.items() if now - w["last"] > WORKER_IDLE_S]:
            del workers[old]  # an idle worker ends
        state = workers.setdefault(n, {"created_at": time.time(), "hits": 0, "last": now})
        state["hits"] += 1
        state["last"] = now
        return {"node": node_id, "id": n, "hits": int(state["hits"])}

    transport = TcpTransport(node_id, secret=secret, listen=listen, seeds=seeds)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with Node(node_id, transport, bootstrap_expect=len(seeds) + 1) as node:
            node.serve(SERVICE, worker)

            async def request(req: Request) -> JSONResponse:
                n = int(req.path_params["n"])
                try:
                    result = await node.call_owner(f"request-{n}", SERVICE, n, timeout_s=2.0)
                except CallError as exc:
                    return JSONResponse({"asked": node_id, "error": str(exc)}, status_code=503)
                answer = {"id": n, "asked": node_id, "owner": result.node}
                return JSONResponse({**answer, "hits": result.value["hits"]})

            async def status(req: Request) -> JSONResponse:
                serving = sorted(node.serving(SERVICE))
                return JSONResponse({"node": node_id, "ready": node.ready, "serving": serving})

            app = Starlette(routes=[Route("/request/{n:int}", request), Route("/status", status)])
            config = Config()
            config.bind = [http]
            config.accesslog = None
            config.loglevel = "WARNING"
            config.graceful_timeout = 1.0
            stop_http = trio.Event()
            async with trio.open_nursery() as nursery:
                # Starlette is an ASGI app; hypercorn's own stubs type ASGI more narrowly.
                asgi = cast(Any, app)
                serve_http = functools.partial(
                    hypercorn_serve, asgi, config, shutdown_trigger=stop_http.wait
                )
                await nursery.start(serve_http)
                async for _ in signals:
                    break
                await node.drain(2.0)  # leave: the others stop counting it at once
                stop_http.set()


# -- the driver ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ask(client: httpx.Client, http: dict[str, str], node: str, n: int) -> dict[str, Any]:
    response = client.get(f"http://{http[node]}/request/{n}")
    answer: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"{node} could not answer request {n}: {answer}")
    return answer


def _wait_serving(
    client: httpx.Client, http: dict[str, str], nodes: list[str], timeout_s: float
) -> float:
    """Poll until every one of ``nodes`` counts exactly ``nodes`` as serving; the seconds."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            views = [client.get(f"http://{http[n]}/status").json() for n in nodes]
            if all(v["serving"] == sorted(nodes) for v in views):
                return time.monotonic() - start
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.05)
    raise TimeoutError(f"{nodes} did not all serve {SERVICE!r} within {timeout_s} s")


def _round(
    client: httpx.Client, http: dict[str, str], live: list[str], rng: random.Random
) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """Send each id to a random live node, then to the others; the answers, the failures."""
    rows: dict[int, dict[str, Any]] = {}
    failures = []
    for n in IDS:
        asked = rng.choice(live)
        rows[n] = _ask(client, http, asked, n)
        for other in live:
            if other != asked:
                again = _ask(client, http, other, n)
                if again["owner"] != rows[n]["owner"]:
                    failures.append(
                        f"request {n}: {asked} routed it to {rows[n]['owner']}, "
                        f"{other} to {again['owner']}"
                    )
                rows[n]["hits"] = again["hits"]
    return rows, failures


def _table(title: str, rows: dict[int, dict[str, Any]], before: dict[int, dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'id':>3}  {'asked':<7} {'owner':<7} {'hits':>4}  {'':<}")
    for n, row in rows.items():
        note = ""
        if before:
            old = before[n]["owner"]
            note = f"moved from {old}" if old != row["owner"] else "same owner"
        print(f"{n:>3}  {row['asked']:<7} {row['owner']:<7} {row['hits']:>4}  {note}")


def main(seed: int = 16) -> int:
    """Run the demo; 0 when every check passed, else 1."""
    rng = random.Random(seed)
    secret = secrets.token_hex(16)
    cluster = {name: f"127.0.0.1:{_free_port()}" for name in NAMES}
    http = {name: f"127.0.0.1:{_free_port()}" for name in NAMES}
    env = {**os.environ, "CHORUS_SECRET": secret, "PYTHONPATH": str(ROOT)}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    failures: list[str] = []
    try:
        for name in NAMES:
            seeds = ",".join(a for n, a in cluster.items() if n != name)
            argv = [sys.executable, "-m", "examples.owners", "--node", name]
            argv += ["--listen", cluster[name], "--seeds", seeds, "--http", http[name]]
            processes[name] = subprocess.Popen(argv, cwd=ROOT, env=env)
        with httpx.Client(timeout=5.0) as client:
            took = _wait_serving(client, http, list(NAMES), timeout_s=60)
            print(f"3 processes up, each serving {SERVICE!r} (cluster formed in {took:.1f} s)")
            live = list(NAMES)
            first, failed = _round(client, http, live, rng)
            failures += failed
            _table("request id -> owner (each id asked of every node; one shown)", first, {})

            processes[STOPPED].send_signal(signal.SIGTERM)
            start = time.monotonic()
            processes[STOPPED].wait(timeout=20)
            live.remove(STOPPED)
            took = _wait_serving(client, http, live, timeout_s=20)
            print(
                f"\n{STOPPED} stopped (SIGTERM); the survivors stopped counting it "
                f"{time.monotonic() - start:.2f} s after the signal"
            )
            second, failed = _round(client, http, live, rng)
            failures += failed
            _table(f"after stopping {STOPPED}", second, first)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    asks = len(NAMES)  # each id was asked of every node in the first round
    moved = [n for n in IDS if first[n]["owner"] != second[n]["owner"]]
    for n in IDS:
        was, now = first[n]["owner"], second[n]["owner"]
        if was == STOPPED and now not in live:
            failures.append(f"request {n} moved from {STOPPED} to {now}, not a survivor")
        if was != STOPPED and now != was:
            failures.append(f"request {n} moved from {was} to {now}, though {was} runs")
        if was != STOPPED and second[n]["hits"] != first[n]["hits"] + len(live):
            failures.append(
                f"request {n}: its worker on {was} answered {second[n]['hits']} requests, "
                f"expected {first[n]['hits'] + len(live)} (was it restarted?)"
            )
    owned = sum(1 for n in IDS if first[n]["owner"] == STOPPED)
    print(
        f"\n{owned} of {len(IDS)} ids were owned by {STOPPED}; {len(moved)} moved, "
        f"all to survivors: {all(second[n]['owner'] in live for n in moved)}; "
        f"the other {len(IDS) - owned} kept their owner and worker "
        f"(hits {asks} -> {asks + len(live)})"
    )
    for failure in failures:
        print(f"FAILED: {failure}")
    print("all checks passed" if not failures else f"{len(failures)} checks failed")
    return 1 if failures else 0


def _node_main(args: argparse.Namespace) -> int:
    import trio

    secret = os.environ["CHORUS_SECRET"]
    seeds = [s for s in args.seeds.split(",") if s]
    trio.run(run_node, args.node, args.listen, seeds, args.http, secret)
    return 0


if __name__ == "__main__":
    if not __package__:  # run as a file (python examples/owners.py): import from the checkout
        sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", help="run one node process (the driver starts them)")
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--seeds", default="")
    parser.add_argument("--http", default="127.0.0.1:0")
    parser.add_argument("--seed", type=int, default=16, help="the driver's random choices")
    arguments = parser.parse_args()
    sys.exit(_node_main(arguments) if arguments.node else main(arguments.seed))
