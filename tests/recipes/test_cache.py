"""ReplicatedCache on a simulated cluster (MockClock: simulated seconds)."""

from collections.abc import Iterable
from typing import Any

import pytest
import trio

from transport import Node
from transport.recipes import ReplicatedCache
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


async def serve(nursery: trio.Nursery, caches: Iterable[ReplicatedCache]) -> None:
    """Start each cache's `run` (it announces its node), then let the announcements
    reach every node (the network's latency is 1-5 ms per hop)."""
    for cache in caches:
        await nursery.start(cache.run)
    await trio.sleep(0.1)


def key_owned_by(node: Node, owner: str) -> str:
    """A key that ``node.owner`` (HRW over every live member) gives to ``owner``."""
    return next(k for k in (f"k{i}" for i in range(1000)) if node.owner(k) == owner)


def test_values_reach_every_node_and_expired_ones_are_swept_once(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=41) as sim:
            await sim.start("a", "b", "c")
            caches = {n: ReplicatedCache(sim.node(n), sweep_interval_s=3600) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                caches["a"].set("user:1", {"name": "Ann"}, ttl_s=5)
                await sim.run_for(0.1)
                assert all(c.get("user:1") == {"name": "Ann"} for c in caches.values())
                await sim.run_for(5)
                assert all(c.get("user:1") is None for c in caches.values())  # expired
                assert sum(len(c) for c in caches.values()) == 3  # held until swept
                swept = {n: c.sweep() for n, c in caches.items()}
                assert swept == {n: int(n == caches["a"].owner("user:1")) for n in caches}
                await sim.run_for(0.1)
                assert all(len(c) == 0 for c in caches.values())
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_invalidate_and_clear_are_cluster_wide(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=42) as sim:
            await sim.start("a", "b")
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


def test_a_node_without_the_cache_never_owns_a_key_and_a_stampede_computes_once_per_key(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=43) as sim:
            await sim.start("a", "b", "c", "serve")  # "serve" runs no cache, as chorus serve
            serving = {n: ReplicatedCache(sim.node(n)) for n in ("a", "b", "c")}
            reader = ReplicatedCache(sim.node("serve"))  # asks, but does not serve
            keys = [f"report:{i}" for i in range(40)]
            # Under the old rule (HRW over every live member) "serve" owns some keys.
            assert any(sim.node("a").owner(k) == "serve" for k in keys)
            calls = dict.fromkeys(keys, 0)

            def loader(key: str) -> Any:
                async def load() -> str:
                    calls[key] += 1
                    await trio.sleep(0.05)  # a slow backend
                    return key.upper()

                return load

            results: list[tuple[str, str]] = []

            async def ask(cache: ReplicatedCache, key: str) -> None:
                results.append((key, await cache.get_or_compute(key, loader(key), ttl_s=30)))

            async with trio.open_nursery() as nursery:
                await serve(nursery, serving.values())
                for cache in [*serving.values(), reader]:
                    assert all(cache.owner(k) in {"a", "b", "c"} for k in keys)
                assert {serving["a"].owner(k) for k in keys} == {"a", "b", "c"}
                start = trio.current_time()
                async with trio.open_nursery() as stampede:  # every node, twice, at once
                    for key in keys:
                        for cache in [*serving.values(), reader, *serving.values(), reader]:
                            stampede.start_soon(ask, cache, key)
                assert trio.current_time() - start < 0.5  # nobody waited out owner_wait_s
                owners = [serving["b"].owner(k) for k in keys]
                nursery.cancel_scope.cancel()
            assert sorted(results) == sorted((k, k.upper()) for k in keys for _ in range(8))
            assert calls == dict.fromkeys(keys, 1)
            assert reader.computed == 0
            for name, cache in serving.items():
                assert cache.computed == owners.count(name)

    sim_run(main)


def test_with_the_owner_down_others_compute_after_the_wait(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=44) as sim:
            await sim.start("a", "b", "c")
            caches = {n: ReplicatedCache(sim.node(n), owner_wait_s=0.5) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = next(k for k in (f"k{i}" for i in range(100)) if caches["a"].owner(k) == "c")
                sim.crash("c")

                async def load() -> int:
                    return 42

                start = trio.current_time()
                assert await caches["a"].get_or_compute(key, load, ttl_s=30) == 42
                assert trio.current_time() - start >= 0.5  # waited for the dead owner once
                await sim.run_for(5)  # the failure detector removes c: a live owner now
                assert caches["a"].owner(key) in {"a", "b"}
                assert caches["a"].members.serving() == {"a", "b"}
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_a_node_that_stops_serving_while_it_refuses_writes_owns_no_key_once_it_takes_them(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=5) as sim:
            await sim.start("a", "b", "c")
            caches = {n: ReplicatedCache(sim.node(n)) for n in sim.live}
            calls = 0

            async def load() -> int:
                nonlocal calls
                calls += 1
                await trio.sleep(0.05)
                return 1

            async with trio.open_nursery() as nursery:
                await serve(nursery, [caches["a"], caches["b"]])
                c_scope = trio.CancelScope()

                async def serve_c(task_status: trio.TaskStatus[None]) -> None:
                    with c_scope:
                        await caches["c"].run(task_status=task_status)

                await nursery.start(serve_c)
                await sim.run_for(0.1)
                assert caches["a"].members.serving() == {"a", "b", "c"}
                sim.set_skew("c", 60_000)  # an NTP step: c refuses writes until its
                await sim.run_for(0.001)  # peers confirm or deny it
                assert not sim.node("c").ready
                c_scope.cancel()  # c stops serving the cache; its withdrawal is refused
                await sim.run_for(0.01)
                sim.set_skew("c", 0)  # c takes writes again, and keeps running
                await sim.run_for(2)
                assert sim.node("c").ready
                assert caches["a"].members.serving() == caches["b"].members.serving() == {"a", "b"}

                keys = [f"k{i}" for i in range(30)]
                start = trio.current_time()
                async with trio.open_nursery() as stampede:
                    for key in keys:
                        for name in "ab":
                            stampede.start_soon(caches[name].get_or_compute, key, load, 60)
                assert calls == 30  # once per key: c, not serving, owns none
                assert trio.current_time() - start < 0.5  # nobody waited out owner_wait_s
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_concurrent_calls_on_one_node_share_a_computation_and_errors_are_not_cached(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=45) as sim:
            await sim.start("a")
            cache = ReplicatedCache(sim.node("a"))
            calls = 0

            async def failing() -> str:
                nonlocal calls
                calls += 1
                await trio.sleep(0.01)
                raise LookupError("backend down")

            with pytest.raises(LookupError):
                await cache.get_or_compute("k", failing, ttl_s=5)
            assert cache.get("k") is None
            assert calls == 1

            async def slow() -> str:
                nonlocal calls
                calls += 1
                await trio.sleep(0.05)
                return "v"

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(cache.get_or_compute, "k", slow, 5)
            assert calls == 2
            assert cache.get("k") == "v"

    sim_run(main)


def test_bad_ttl_raises_before_anything_is_computed_or_written(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=46) as sim:
            await sim.start("a")
            cache = ReplicatedCache(sim.node("a"))

            async def never() -> int:
                raise AssertionError("computed with a bad ttl")

            for ttl in (0, -1, float("nan"), float("inf"), True, "60"):
                with pytest.raises(ValueError, match="ttl"):
                    cache.set("k", 1, ttl_s=ttl)  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="ttl"):
                    await cache.get_or_compute("k", never, ttl_s=ttl)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                cache.set("k", object(), ttl_s=5)
            assert len(cache) == 0
            sim.node("a").map("cache").set("odd", "not a cache entry")
            assert cache.get("odd", "default") == "default"  # a read never raises

    sim_run(main)
