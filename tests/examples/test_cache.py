from typing import Any

import pytest
import trio

from examples.cache import ReplicatedCache
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


def test_values_reach_every_node_and_expire(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=41) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            caches = {n: ReplicatedCache(sim.node(n)) for n in sim.live}
            caches["a"].set("user:1", {"name": "Ann"}, ttl_s=5)
            await sim.run_for(0.1)
            assert all(c.get("user:1") == {"name": "Ann"} for c in caches.values())
            await sim.run_for(5)
            assert all(c.get("user:1") is None for c in caches.values())  # expired
            assert sum(len(c) for c in caches.values()) == 3  # still held until swept
            swept = sum(c.sweep() for c in caches.values())
            assert swept == 1  # by its owner alone
            await sim.run_for(0.1)
            assert all(len(c) == 0 for c in caches.values())

    sim_run(main)


def test_invalidate_and_clear_are_cluster_wide(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=42) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            a, b = ReplicatedCache(sim.node("a")), ReplicatedCache(sim.node("b"))
            for i in range(5):
                a.set(i, i, ttl_s=60)
            await sim.run_for(0.1)
            b.invalidate(0)
            await sim.run_for(0.1)
            assert a.get(0) is None
            assert a.get(1) == 1
            b.clear()
            await sim.run_for(0.1)
            assert all(a.get(i) is None for i in range(5))

    sim_run(main)


def test_a_cold_key_is_computed_once_per_cluster_while_the_owner_is_up(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=43) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            caches = {n: ReplicatedCache(sim.node(n)) for n in sim.live}
            calls = 0

            async def load() -> str:
                nonlocal calls
                calls += 1
                await trio.sleep(0.05)  # a slow backend
                return "expensive"

            results: list[str] = []

            async def ask(cache: ReplicatedCache) -> None:
                results.append(await cache.get_or_compute("report:7", load, ttl_s=30))

            async with trio.open_nursery() as nursery:
                for cache in caches.values():  # a stampede: every node, twice, at once
                    nursery.start_soon(ask, cache)
                    nursery.start_soon(ask, cache)
            assert results == ["expensive"] * 6
            assert calls == 1
            owner = sim.node("a").owner("report:7")
            assert caches[owner].computed == 1

    sim_run(main)


def test_with_the_owner_down_others_compute_after_the_wait(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=44) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            key = next(k for k in (f"k{i}" for i in range(100)) if sim.node("a").owner(k) == "c")
            sim.crash("c")
            cache = ReplicatedCache(sim.node("a"), owner_wait_s=0.5)

            async def load() -> int:
                return 42

            start = trio.current_time()
            assert await cache.get_or_compute(key, load, ttl_s=30) == 42
            assert trio.current_time() - start >= 0.5  # waited for the dead owner once
            await sim.run_for(5)  # the failure detector removes c: a live owner now
            assert sim.node("a").owner(key) in {"a", "b"}

    sim_run(main)


def test_bad_ttl() -> None:
    with pytest.raises(ValueError, match="ttl"):
        ReplicatedCache.set(object.__new__(ReplicatedCache), "k", 1, ttl_s=0)
