"""A cache stampede computed once per key in the cluster: ``python -m examples.cache``.

Three app nodes serve `transport.recipes.ReplicatedCache`; a fourth runs no cache, as
a ``chorus serve`` node would, so it never owns a key. Every app node asks for the
same cold keys at once; each key's owner computes it (with its ``load`` function)
and answers the others over the cluster's own connections. Simulated (MemoryNetwork,
MockClock): it runs in a fraction of a second.
"""

from __future__ import annotations

import trio
import trio.testing

from transport.recipes import ReplicatedCache
from transport.simulation import Simulation


async def main(keys: int = 20) -> int:
    """Return how many times the cluster computed a value for ``keys`` cold keys."""
    async with Simulation(seed=7) as sim:
        await sim.start("app-1", "app-2", "app-3", "flags-only")
        computed = 0

        async def load_report(key: object) -> str:
            nonlocal computed
            computed += 1
            await trio.sleep(0.05)  # a slow database
            return f"report {key}"

        apps = ("app-1", "app-2", "app-3")
        caches = [ReplicatedCache(sim.node(n), load=load_report, ttl_s=60) for n in apps]

        async with trio.open_nursery() as nursery:
            for cache in caches:
                await nursery.start(cache.run)  # this node serves the cache
            await sim.run_for(0.1)  # every node hears who serves the cache
            async with trio.open_nursery() as stampede:
                for i in range(keys):
                    for cache in caches:
                        stampede.start_soon(cache.get_or_compute, f"report:{i}")
            nursery.cancel_scope.cancel()
    return computed


if __name__ == "__main__":
    computed = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    print(f"20 cold keys asked by 3 nodes at once: computed {computed} times")
