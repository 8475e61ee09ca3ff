"""ReplicatedCache on a simulated cluster (MockClock: simulated seconds)."""

from collections import Counter
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


class Loads:
    """A load function that counts its calls per key and takes ``delay_s``."""

    def __init__(self, delay_s: float = 0.05, error: Exception | None = None) -> None:
        self.calls: Counter[Any] = Counter()
        self.delay_s, self.error = delay_s, error

    async def __call__(self, key: Any) -> Any:
        self.calls[key] += 1
        await trio.sleep(self.delay_s)  # a slow backend
        if self.error is not None:
            raise self.error
        return f"value of {key}"


def test_a_node_without_the_cache_never_owns_a_key_and_a_stampede_computes_once_per_key(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=43) as sim:
            await sim.start("a", "b", "c", "serve")  # "serve" runs no cache, as chorus serve
            load = Loads()
            serving = {n: ReplicatedCache(sim.node(n), load=load) for n in ("a", "b", "c")}
            reader = ReplicatedCache(sim.node("serve"), load=load)  # asks, does not serve
            keys = [f"report:{i}" for i in range(40)]
            # Under HRW over every live member "serve" would own some keys.
            assert any(sim.node("a").owner(k) == "serve" for k in keys)
            results: list[tuple[str, str]] = []

            async def ask(cache: ReplicatedCache, key: str) -> None:
                results.append((key, await cache.get_or_compute(key, ttl_s=30)))

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
                # One load (50 ms) and a round trip: no fixed wait.
                assert trio.current_time() - start < 0.1
                owners = [serving["b"].owner(k) for k in keys]
                nursery.cancel_scope.cancel()
            assert sorted(results) == sorted((k, f"value of {k}") for k in keys for _ in range(8))
            assert load.calls == dict.fromkeys(keys, 1)
            assert reader.computed == 0
            for name, cache in serving.items():
                assert cache.computed == owners.count(name)
            assert all(c.fallbacks == 0 for c in [*serving.values(), reader])

    sim_run(main)


def test_single_flight_per_cluster_and_the_owners_errors_reach_every_caller(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=47) as sim:
            await sim.start("a", "b", "c")
            load = Loads(delay_s=0.2)
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = key_owned_by(sim.node("a"), "c")
                assert caches["a"].owner(key) == "c"
                answers: list[Any] = []

                async def ask(cache: ReplicatedCache) -> None:
                    answers.append(await cache.get_or_compute(key))

                async with trio.open_nursery() as stampede:  # 30 callers on each node
                    for _ in range(30):
                        for cache in caches.values():
                            stampede.start_soon(ask, cache)
                            await trio.sleep(0.001)  # arriving over 90 ms, while it loads
                assert answers == [f"value of {key}"] * 90
                assert load.calls[key] == 1
                assert caches["c"].computed == 1
                await sim.run_for(0.1)
                assert all(c.get(key) == f"value of {key}" for c in caches.values())

                failing = Loads(delay_s=0.1, error=LookupError("backend down"))
                for cache in caches.values():
                    cache._load = failing
                errors: list[BaseException] = []

                async def ask_failing(cache: ReplicatedCache) -> None:
                    try:
                        await cache.get_or_compute("other")
                    except Exception as exc:
                        errors.append(exc)

                async with trio.open_nursery() as stampede:
                    for _ in range(5):
                        for cache in caches.values():
                            stampede.start_soon(ask_failing, cache)
                assert failing.calls["other"] == 1  # once, on the owner
                owner = caches["a"].owner("other")
                names = sorted(type(e).__name__ for e in errors)
                assert names == ["LookupError"] * 5 + ["RemoteError"] * 10, owner
                assert all("backend down" in str(e) for e in errors)
                assert all(c.get("other") is None for c in caches.values())  # not cached
                assert all(c.fallbacks == 0 for c in caches.values())
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_with_the_owner_crashed_or_cut_off_callers_compute_and_count_it(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=44) as sim:
            await sim.start("a", "b", "c")
            load = Loads(delay_s=0.01)
            caches = {n: ReplicatedCache(sim.node(n), load=load, timeout_s=0.5) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                crashed = key_owned_by(sim.node("a"), "c")
                assert caches["a"].owner(crashed) == "c"
                sim.crash("c")
                start = trio.current_time()
                assert await caches["a"].get_or_compute(crashed) == f"value of {crashed}"
                # Not answered in timeout_s: a computes it itself, and counts it.
                assert trio.current_time() - start < 0.6
                assert (caches["a"].fallbacks, caches["a"].computed) == (1, 1)
                await sim.run_for(5)  # the failure detector removes c: a live owner now
                assert caches["a"].members.serving() == {"a", "b"}
                after = next(
                    k for k in (f"n{i}" for i in range(100)) if caches["a"].owner(k) == "b"
                )
                assert await caches["a"].get_or_compute(after) == f"value of {after}"
                assert caches["a"].fallbacks == 1  # b answered
                assert caches["b"].computed == 1

                await sim.restart("c")
                caches["c"] = ReplicatedCache(sim.node("c"), load=load, timeout_s=0.5)
                await nursery.start(caches["c"].run)
                await sim.run_for(1)
                assert caches["a"].members.serving() == {"a", "b", "c"}
                cut = next(k for k in (f"p{i}" for i in range(100)) if caches["a"].owner(k) == "c")
                sim.network.partition(["a", "b"], ["c"])  # c is cut off, but not declared down
                assert await caches["a"].get_or_compute(cut) == f"value of {cut}"
                assert caches["a"].fallbacks == 2
                assert load.calls[cut] == 1  # c never heard the request
                sim.network.heal()
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_a_node_that_stops_serving_while_it_refuses_writes_owns_no_key_at_once(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=5) as sim:
            await sim.start("a", "b", "c")
            load = Loads()
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
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
                c_scope.cancel()  # c stops serving the cache: it needs no write for that
                await sim.run_for(0.1)
                assert not sim.node("c").ready
                assert caches["a"].members.serving() == caches["b"].members.serving() == {"a", "b"}
                sim.set_skew("c", 0)
                await sim.run_for(2)

                keys = [f"k{i}" for i in range(30)]
                start = trio.current_time()
                async with trio.open_nursery() as stampede:
                    for key in keys:
                        for name in "ab":
                            stampede.start_soon(caches[name].get_or_compute, key)
                assert sum(load.calls.values()) == 30  # once per key: c, not serving, owns none
                assert trio.current_time() - start < 0.1
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_concurrent_calls_on_one_node_share_a_computation_and_errors_are_not_cached(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=45) as sim:
            await sim.start("a")
            failing = Loads(delay_s=0.01, error=LookupError("backend down"))
            cache = ReplicatedCache(sim.node("a"), load=failing)
            async with trio.open_nursery() as nursery:
                await nursery.start(cache.run)
                with pytest.raises(LookupError):  # a owns it: its own load's error
                    await cache.get_or_compute("k", ttl_s=5)
                assert cache.get("k") is None
                assert failing.calls["k"] == 1

                cache._load = slow = Loads()
                async with trio.open_nursery() as callers:
                    for _ in range(5):
                        callers.start_soon(cache.get_or_compute, "k")
                assert slow.calls["k"] == 1
                assert cache.get("k") == "value of k"
                assert cache.fallbacks == 0
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_with_no_node_serving_each_caller_computes_and_counts_a_fallback(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=48) as sim:
            await sim.start("a", "b")
            load = Loads()
            a = ReplicatedCache(sim.node("a"), load=load)
            assert a.owner("k") is None
            assert await a.get_or_compute("k") == "value of k"
            assert (a.fallbacks, a.computed) == (1, 1)
            await sim.run_for(0.1)
            b = ReplicatedCache(sim.node("b"), load=load)
            assert await b.get_or_compute("k") == "value of k"  # cached by a
            assert (b.fallbacks, load.calls["k"]) == (0, 1)

    sim_run(main)


def test_bad_arguments_raise_before_anything_is_computed_or_written(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=46) as sim:
            await sim.start("a")

            async def never(key: Any) -> int:
                raise AssertionError("computed with a bad argument")

            cache = ReplicatedCache(sim.node("a"), load=never)
            for ttl in (0, -1, float("nan"), float("inf"), True, "60"):
                with pytest.raises(ValueError, match="ttl"):
                    cache.set("k", 1, ttl_s=ttl)  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="ttl"):
                    await cache.get_or_compute("k", ttl_s=ttl)  # type: ignore[arg-type]
                with pytest.raises(ValueError, match="ttl"):
                    ReplicatedCache(sim.node("a"), "other", ttl_s=ttl)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await cache.get_or_compute(1.5)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="no load"):
                await ReplicatedCache(sim.node("a"), "other").get_or_compute("k")
            with pytest.raises(ValueError, match="service"):
                ReplicatedCache(sim.node("a"), "é")
            with pytest.raises(TypeError):
                cache.set("k", object(), ttl_s=5)
            assert len(cache) == 0
            sim.node("a").map("cache").set("odd", "not a cache entry")
            assert cache.get("odd", "default") == "default"  # a read never raises

    sim_run(main)


def test_an_owner_that_refuses_writes_answers_and_the_caller_caches(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=49) as sim:
            await sim.start("a", "b", "c")
            load = Loads()
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = key_owned_by(sim.node("a"), "c")
                assert caches["a"].owner(key) == "c"
                sim.set_skew("c", 60_000)  # an NTP step: c refuses writes for now
                await sim.run_for(0.001)
                assert not sim.node("c").ready
                assert await caches["a"].get_or_compute(key) == f"value of {key}"
                assert (caches["c"].computed, caches["a"].fallbacks) == (1, 0)
                assert caches["a"].get(key) == f"value of {key}"  # a wrote it
                nursery.cancel_scope.cancel()

    sim_run(main)
