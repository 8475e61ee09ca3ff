"""One node of the real-process rate limit test: ``python -m tests.recipes.limiter_process
NAME PORT [SEED_PORT...]``.

It runs a `Node` over `TcpTransport` on 127.0.0.1 with an `OwnerRoutedRateLimiter`
(100 per key per 1 s window; `LIMIT`, `WINDOW_S`) and takes commands on stdin, one
per line, answering on stdout:

- ``load KEY SECONDS CALLERS``: ``CALLERS`` tasks ask `allow(KEY)` in a loop for
  ``SECONDS``; then ``done FALLBACKS REQUESTS``.
- ``owner KEY``: ``owner NODE``.

Every admission this node decides (as owner, or falling back) is printed at once as
``admit WINDOW``, so the test sees a killed node's decisions up to its death. It
prints ``ready`` once the three nodes serve the limiter.
"""

from __future__ import annotations

import sys
from typing import Any

import trio

from transport import Node, TcpTransport
from transport.recipes import OwnerRoutedRateLimiter, RateLimiter

SECRET = b"bac6e7f8a9b0c1d2e3f4a5b6c7d8e9f0"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0, "join_timeout_s": 2.0}
LIMIT, WINDOW_S, NODES = 100, 1.0, 3


def say(*words: Any) -> None:
    sys.stdout.write(" ".join(map(str, words)) + "\n")  # one write: a whole line
    sys.stdout.flush()


async def main(name: str, port: int, seeds: list[int]) -> None:
    transport = TcpTransport(
        name,
        secret=SECRET,
        listen=("127.0.0.1", port),
        seeds=[f"127.0.0.1:{p}" for p in seeds],
        backoff_initial_s=0.05,
    )
    async with Node(name, transport, **FAST) as node:  # type: ignore[arg-type]
        local = RateLimiter(node, limit=LIMIT, window_s=WINDOW_S)
        allow = local.allow

        def decide(key: Any, cost: int = 1) -> bool:  # every decision of this node
            window = local.window()
            local.window = lambda: window  # type: ignore[method-assign]  # the one it prints
            try:
                admitted = allow(key, cost)
            finally:
                del local.window
            if admitted:
                say("admit", window)
            return admitted

        local.allow = decide  # type: ignore[method-assign]
        # A long timeout: a busy test machine must not turn healthy calls into fallbacks.
        routed = OwnerRoutedRateLimiter(node, local, timeout_s=2.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(routed.run)
            nursery.start_soon(local.run)
            while len(node.serving(routed.service)) < NODES or not node.ready:
                await trio.sleep(0.05)
            say("ready")
            stdin = trio.wrap_file(sys.stdin)
            while line := await stdin.readline():
                command, *args = line.split()
                if command == "owner":
                    say("owner", routed.owner(args[0]))
                elif command == "load":
                    requests = await load(routed, args[0], float(args[1]), int(args[2]))
                    say("done", routed.fallbacks, requests)
            nursery.cancel_scope.cancel()


async def load(routed: OwnerRoutedRateLimiter, key: str, seconds: float, callers: int) -> int:
    """Ask `allow(key)` from ``callers`` tasks for ``seconds``; return how many times."""
    requests = 0

    async def caller() -> None:
        nonlocal requests
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            await routed.allow(key)
            requests += 1
            await trio.sleep(0.002)

    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(caller)
    return requests


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[3:]])
