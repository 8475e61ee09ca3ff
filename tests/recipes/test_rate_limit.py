"""RateLimiter and OwnerRoutedRateLimiter on a simulated cluster (MockClock)."""

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.recipes import OwnerRoutedRateLimiter, RateLimiter
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(120)
LIMIT, NODES, LATENCY_MS = 100, 3, 5  # the network's latency is 1-5 ms per hop


def test_admissions_stay_within_the_documented_bound_under_concurrent_load(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=51) as sim:
            await sim.start("a", "b", "c")
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


REQUESTS = st.lists(
    st.tuples(
        st.sampled_from("ab"),  # the node asked
        st.sampled_from(["k0", "k1"]),  # the key
        st.integers(1, 3),  # its cost
        st.integers(0, 700),  # ms before it
        st.booleans(),  # sweep afterwards
    ),
    max_size=25,
)


@settings(max_examples=30)
@given(requests=REQUESTS)
def test_with_replication_between_requests_the_limiter_is_a_counter_per_window(
    requests: list[tuple[str, str, int, int, bool]],
) -> None:
    """The law: with each request replicated before the next, two nodes decide as one
    fixed-window counter would: admit iff the window's count plus the cost is at most
    the limit, and both count what it admitted."""

    async def main() -> None:
        async with Simulation(seed=56) as sim:
            await sim.start("a", "b")
            limiters = {n: RateLimiter(sim.node(n), limit=5, window_s=1) for n in sim.live}
            model: Counter[tuple[str, int]] = Counter()
            for name, key, cost, gap_ms, sweep in requests:
                await sim.run_for(gap_ms / 1000)
                window = sim.node(name).wall_ms() // 1000
                expected = model[key, window] + cost <= 5
                assert limiters[name].allow(key, cost) is expected
                model[key, window] += cost if expected else 0
                if sweep:
                    limiters[name].sweep()
                await sim.run_for(0.05)  # replicated (latency 1-5 ms)
                for limiter in limiters.values():
                    assert limiter.count(key) == model[key, limiter.window()]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_owner_routing_is_exact_and_never_routes_to_a_node_that_does_not_serve(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=52) as sim:
            await sim.start("a", "b", "c", "serve")  # "serve" runs no limiter
            assert any(sim.node("a").owner(f"user:{i}") == "serve" for i in range(10))
            local = {n: RateLimiter(sim.node(n), limit=LIMIT, window_s=60) for n in "abc"}
            routed = {n: OwnerRoutedRateLimiter(sim.node(n), local[n]) for n in "abc"}
            admitted: Counter[str] = Counter()

            async def load(name: str, key: str) -> None:
                for _ in range(150):
                    ok = await routed[name].allow(key)  # not `admitted += await`:
                    admitted[key] += ok  # that reads `admitted` before the await
                    await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                for limiter in routed.values():
                    await nursery.start(limiter.run)
                await sim.run_for(0.1)
                async with trio.open_nursery() as requests:
                    for i in range(10):
                        for name in routed:
                            requests.start_soon(load, name, f"user:{i}")
                owners = {f"user:{i}": routed["a"].owner(f"user:{i}") for i in range(10)}
                nursery.cancel_scope.cancel()
            assert admitted == dict.fromkeys((f"user:{i}" for i in range(10)), LIMIT)
            assert all(r.fallbacks == 0 for r in routed.values())
            await sim.run_for(0.1)
            slots: list[Any] = list(sim.node("serve").map("ratelimit"))
            assert set(owners.values()) == {"a", "b", "c"}
            # Only each key's owner counted it.
            assert {(key, node) for key, _, node in slots} == set(owners.items())

    sim_run(main)


def test_owner_routing_falls_back_locally_when_the_owner_does_not_answer(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=53) as sim:
            await sim.start("a", "b")
            local = RateLimiter(sim.node("a"), limit=5, window_s=60)
            routed = OwnerRoutedRateLimiter(sim.node("a"), local, timeout_s=0.2)
            other = OwnerRoutedRateLimiter(
                sim.node("b"), RateLimiter(sim.node("b"), limit=5, window_s=60)
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(routed.run)
                await nursery.start(other.run)
                await sim.run_for(0.1)
                key = next(k for k in (f"u{i}" for i in range(100)) if routed.owner(k) == "b")
                assert [await routed.allow(key) for _ in range(2)] == [True, True]  # b decides
                await sim.run_for(0.1)  # b's slot reaches a
                sim.network.partition(["a"], ["b"])
                started = trio.current_time()
                results = [await routed.allow(key) for _ in range(5)]
                assert trio.current_time() - started < 5 * 0.2 + 0.01  # timeout_s each
                # a counts b's 2 admissions too: 3 more, not 5.
                assert results == [True] * 3 + [False] * 2
                assert routed.fallbacks == 5
                await sim.run_for(4)  # a declares b down: a owns the key now
                assert routed.owner(key) == "a"
                assert await routed.allow(key) is False
                assert routed.fallbacks == 5
                sim.network.heal()
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_owner_routed_limits_per_window_with_the_owner_crashed_stay_within_the_bound(
    sim_run: Any,
) -> None:
    """Exactly the limit per window while healthy; with the owner crashed mid-run,
    at most the limit plus the replication overshoot (and never more than N x limit)."""

    async def main() -> None:
        async with Simulation(seed=58) as sim:
            await sim.start("a", "b", "c")
            local = {n: RateLimiter(sim.node(n), limit=LIMIT, window_s=1) for n in sim.live}
            routed = {
                n: OwnerRoutedRateLimiter(sim.node(n), local[n], timeout_s=0.2) for n in sim.live
            }
            per_window: Counter[int] = Counter()  # admitted, by the window that decided
            key = "ip:10.0.0.1"

            def recorded(limiter: RateLimiter) -> Callable[[Any, int], bool]:
                allow = limiter.allow

                def decide(key: Any, cost: int = 1) -> bool:  # every decision comes here
                    window = limiter.window()
                    admitted = allow(key, cost)
                    per_window[window] += admitted
                    return admitted

                return decide

            for limiter in local.values():
                limiter.allow = recorded(limiter)  # type: ignore[method-assign,assignment]

            async def load(name: str, seconds: float) -> None:  # 4 callers, 1 per ms each
                async def caller() -> None:
                    end = trio.current_time() + seconds
                    while trio.current_time() < end and name in sim.live:
                        await routed[name].allow(key)
                        await trio.sleep(0.001)

                async with trio.open_nursery() as callers:
                    for _ in range(4):
                        callers.start_soon(caller)

            async with trio.open_nursery() as nursery:
                for each in routed.values():
                    await nursery.start(each.run)
                await sim.run_for(0.1)
                owner = routed["a"].owner(key)
                assert owner is not None
                await sim.run_for(1 - (sim.node("a").wall_ms() % 1000) / 1000)  # a new window
                first = sim.node("a").wall_ms() // 1000
                async with trio.open_nursery() as requests:
                    for name in sim.live:
                        requests.start_soon(load, name, 6.0)
                    await sim.run_for(2.5)  # two healthy windows and a half
                    sim.crash(owner)
                survivors = [n for n in sim.live if n != owner]
                nursery.cancel_scope.cancel()
            assert per_window[first] == per_window[first + 1] == LIMIT
            # The crash's window and the ones after, while the survivors fall back and
            # elect a new owner: the limit plus what the two deciders admitted within a
            # replication delay (5 ms, 4 requests/ms each) at most.
            for window in range(first + 2, first + 6):
                assert LIMIT <= per_window[window] <= LIMIT + 2 * 4 * 6, (window, per_window)
            assert sum(routed[n].fallbacks for n in survivors) > 0

    sim_run(main)


def test_old_windows_are_deleted(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=54) as sim:
            await sim.start("a", "b")
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


def test_bad_arguments_raise_and_count_nothing(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=57) as sim:
            await sim.start("a")
            for limit, window_s in ((-1, 1), (1.5, 1), (10, 0), (10, 0.0001)):
                with pytest.raises(ValueError, match="limit"):
                    RateLimiter(sim.node("a"), limit=limit, window_s=window_s)  # type: ignore[arg-type]
            limiter = RateLimiter(sim.node("a"), limit=10, window_s=1)
            for cost in (0, -3, 1.0, True):
                with pytest.raises(ValueError, match="cost"):
                    limiter.allow("k", cost)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                limiter.allow(1.5)  # type: ignore[arg-type]
            assert limiter.count("k") == 0
            assert len(sim.node("a").map("ratelimit")) == 0

    sim_run(main)
