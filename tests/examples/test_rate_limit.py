from typing import Any

import pytest
import trio

from examples.rate_limit import OwnerRoutedRateLimiter, RateLimiter
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)
LIMIT, NODES, LATENCY_MS = 100, 3, 5  # the network's latency is 1-5 ms per hop


def test_admissions_stay_within_the_documented_bound_under_concurrent_load(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=51) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            limiters = {n: RateLimiter(sim.node(n), limit=LIMIT, window_s=60) for n in sim.live}
            admitted = dict.fromkeys(limiters, 0)

            async def load(name: str) -> None:  # 1 request per ms on every node at once
                for _ in range(300):
                    admitted[name] += limiters[name].allow("ip:10.0.0.1")
                    await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                for name in limiters:
                    nursery.start_soon(load, name)
            total = sum(admitted.values())
            # The bound: what the other nodes admitted within one replication delay.
            bound = (NODES - 1) * 1 * (LATENCY_MS + 1)
            assert LIMIT <= total <= LIMIT + bound
            await sim.run_for(0.1)
            assert all(lim.count("ip:10.0.0.1") == total for lim in limiters.values())

    sim_run(main)


def test_owner_routing_is_exact(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=52) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            local = {n: RateLimiter(sim.node(n), limit=LIMIT, window_s=60) for n in sim.live}

            async def forward(owner: str, key: Any) -> bool:  # an RPC to the owner
                await trio.sleep(0.002)
                return local[owner].allow(key)

            routed = {n: OwnerRoutedRateLimiter(sim.node(n), local[n], forward) for n in sim.live}
            admitted = 0

            async def load(name: str) -> None:
                nonlocal admitted
                for _ in range(300):
                    ok = await routed[name].allow("user:9")  # not `admitted += await`:
                    admitted += ok  # that reads `admitted` before the await
                    await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                for name in routed:
                    nursery.start_soon(load, name)
            assert admitted == LIMIT
            assert all(r.fallbacks == 0 for r in routed.values())

    sim_run(main)


def test_owner_routing_falls_back_locally_when_the_owner_does_not_answer(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=53) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            key = next(k for k in (f"u{i}" for i in range(100)) if sim.node("a").owner(k) == "b")
            local = RateLimiter(sim.node("a"), limit=5, window_s=60)

            async def unreachable(owner: str, key: Any) -> bool:
                raise ConnectionError("refused")

            routed = OwnerRoutedRateLimiter(sim.node("a"), local, unreachable)
            results = [await routed.allow(key) for _ in range(7)]
            assert results == [True] * 5 + [False] * 2
            assert routed.fallbacks == 7

    sim_run(main)


def test_old_windows_are_deleted(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=54) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            limiters = [RateLimiter(sim.node(n), limit=10, window_s=1) for n in sim.live]
            for second in range(5):
                for lim in limiters:
                    lim.allow(f"key-{second}")
                await sim.run_for(1)
            for lim in limiters:
                lim.sweep()
            await sim.run_for(0.1)
            slots: list[Any] = list(sim.node("a").map("ratelimit"))
            windows = {slot[1] for slot in slots}
            current = limiters[0].window()
            assert windows
            assert min(windows) >= current - 1  # only recent windows remain
            assert limiters[0].count("key-4") == 0  # a new window: nothing counted yet

    sim_run(main)
