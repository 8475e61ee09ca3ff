"""A limit of 100 requests per minute across three nodes: ``python -m examples.rate_limit``.

Every node takes a request per ms for the same key. `transport.recipes.RateLimiter`
counts on each node and admits a little over the limit (what the other nodes
admitted within one replication delay); `OwnerRoutedRateLimiter` asks the key's
owner (`Node.call_owner`) and admits exactly 100. Simulated (MemoryNetwork, MockClock).
"""

from __future__ import annotations

import trio
import trio.testing

from transport.recipes import OwnerRoutedRateLimiter, RateLimiter
from transport.simulation import Simulation

NODES = ("a", "b", "c")


async def main() -> dict[str, int]:
    """Return the requests each limiter admitted out of 900 (300 per node)."""
    async with Simulation(seed=7) as sim:
        await sim.start(*NODES)
        local = {n: RateLimiter(sim.node(n), limit=100, window_s=60) for n in NODES}
        slots = {n: RateLimiter(sim.node(n), limit=100, window_s=60, name="routed") for n in NODES}
        routed = {n: OwnerRoutedRateLimiter(sim.node(n), slots[n]) for n in NODES}
        admitted = {"local": 0, "owner-routed": 0}

        async def requests(node: str) -> None:  # one request per ms
            for _ in range(300):
                admitted["local"] += local[node].allow("ip:10.0.0.1")
                ok = await routed[node].allow("ip:10.0.0.1")
                admitted["owner-routed"] += ok
                await trio.sleep(0.001)

        async with trio.open_nursery() as nursery:
            for limiter in routed.values():
                await nursery.start(limiter.run)  # this node may own keys
            await sim.run_for(0.1)
            async with trio.open_nursery() as load:
                for node in NODES:
                    load.start_soon(requests, node)
            nursery.cancel_scope.cancel()
    return admitted


if __name__ == "__main__":
    admitted = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for limiter, count in admitted.items():
        print(f"{limiter}: admitted {count} of 900 requests (limit 100)")
