"""Adversarial tests of the recipes on the node-to-node call layer.

Each test either guards what held or reproduced a break before its fix.
Simulated time (MockClock) unless the test says TCP (BackgroundNode on 127.0.0.1).
"""

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
import trio

from tests.helpers import eventually, free_port
from tests.transport.test_background import make
from transport import (
    BackgroundNode,
    CallTimeout,
    MemberEvent,
    Node,
    RemoteError,
    UnknownService,
)
from transport._memory import MemoryNetwork
from transport.recipes import OwnerRoutedRateLimiter, RateLimiter, ReplicatedCache
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


async def serve(nursery: trio.Nursery, runners: Iterable[Any]) -> None:
    for runner in runners:
        await nursery.start(runner.run)
    await trio.sleep(0.1)


def key_owned_by(node: Node, service: str, owner: str, prefix: str = "k") -> str:
    return next(
        k for k in (f"{prefix}{i}" for i in range(1000)) if node.owner_of(k, service) == owner
    )


class Loads:
    """A load function counting its calls per key, taking ``delay_s``."""

    def __init__(self, delay_s: float = 0.05, value: Any = None, error: Exception | None = None):
        self.calls: Counter[Any] = Counter()
        self.delay_s, self.value, self.error = delay_s, value, error
        self.version = 0  # what the backing store holds now

    async def __call__(self, key: Any) -> Any:
        self.calls[key] += 1
        version = self.version  # read the backend at the start of the computation
        await trio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self.value if self.value is not None else f"{key}@v{version}"


# -- cache: what holds ----------------------------------------------------------------


def test_cache_stampede_from_every_node_on_many_keys_with_duplication_loads_once(
    sim_run: Any,
) -> None:
    async def main() -> None:
        # Duplicated messages: a duplicated call runs once.
        async with Simulation(MemoryNetwork(101, duplication=0.3)) as sim:
            await sim.start("a", "b", "c", "d")
            load = Loads(delay_s=0.3)
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                keys = [f"r{i}" for i in range(20)]
                async with trio.open_nursery() as stampede:
                    for key in keys:
                        for cache in [*caches.values(), *caches.values()]:
                            stampede.start_soon(cache.get_or_compute, key)
                assert load.calls == dict.fromkeys(keys, 1)
                assert all(c.fallbacks == 0 for c in caches.values())
                await sim.settle(timeout=2)
                assert all(c.get(k) == f"{k}@v0" for c in caches.values() for k in keys)
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_cache_owner_crash_mid_compute_callers_fall_back_and_values_converge(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=102) as sim:
            await sim.start("a", "b", "c")
            load = Loads(delay_s=1.0)
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = key_owned_by(sim.node("a"), caches["a"].service, "c")
                got: dict[str, Any] = {}

                async def ask(name: str) -> None:
                    got[name] = await caches[name].get_or_compute(key)

                async with trio.open_nursery() as callers:
                    callers.start_soon(ask, "a")
                    callers.start_soon(ask, "b")
                    await sim.run_for(0.5)
                    sim.crash("c")  # mid-compute: the connections drop
                assert got == {"a": f"{key}@v0", "b": f"{key}@v0"}
                assert caches["a"].fallbacks == caches["b"].fallbacks == 1
                assert load.calls[key] == 3  # c (lost), a and b: once per node at most
                await sim.settle(timeout=2)
                assert caches["a"].get(key) == caches["b"].get(key) == f"{key}@v0"
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_cache_owner_restarting_mid_compute_is_a_fallback_then_owner_again(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=103) as sim:
            await sim.start("a", "b")
            load = Loads(delay_s=1.0)
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = key_owned_by(sim.node("a"), caches["a"].service, "b")
                async with trio.open_nursery() as callers:
                    callers.start_soon(caches["a"].get_or_compute, key)
                    await sim.run_for(0.3)
                    await sim.restart("b")
                assert caches["a"].fallbacks == 1
                caches["b"] = ReplicatedCache(sim.node("b"), load=load)
                await nursery.start(caches["b"].run)
                await sim.run_for(0.5)
                other = key_owned_by(sim.node("a"), caches["a"].service, "b", prefix="o")
                assert await caches["a"].get_or_compute(other) == f"{other}@v0"
                assert caches["a"].fallbacks == 1
                assert caches["b"].computed == 1
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_cache_remote_load_error_and_unencodable_value_reach_callers_and_cache_nothing(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=104) as sim:
            await sim.start("a", "b")
            load = Loads(delay_s=0.1, error=LookupError("db down"))
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = key_owned_by(sim.node("a"), caches["a"].service, "b")
                with pytest.raises(RemoteError, match="LookupError: db down"):
                    await caches["a"].get_or_compute(key)
                load.error, load.value = None, {1: "int keys are not map values"}
                with pytest.raises(RemoteError, match="TypeError"):
                    await caches["a"].get_or_compute(key)
                with pytest.raises(TypeError):  # on the owner itself: its own error
                    await caches["b"].get_or_compute(key)
                await sim.run_for(0.1)
                assert caches["a"].get(key) is None
                assert caches["b"].get(key) is None
                assert caches["a"].fallbacks == 0
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_cache_ttl_is_respected_on_every_node_and_recomputed_after(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=105) as sim:
            await sim.start("a", "b", "c")
            load = Loads(delay_s=0.01)
            caches = {n: ReplicatedCache(sim.node(n), load=load, ttl_s=2) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                assert await caches["a"].get_or_compute("t") == "t@v0"
                await sim.run_for(1.9)
                assert all(c.get("t") == "t@v0" for c in caches.values())
                load.version = 1
                await sim.run_for(0.2)
                assert all(c.get("t") is None for c in caches.values())
                assert await caches["b"].get_or_compute("t") == "t@v1"
                assert load.calls["t"] == 2
                nursery.cancel_scope.cancel()

    sim_run(main)


@pytest.mark.parametrize("both_ways", [True, False])
def test_cache_caller_cut_from_owner_falls_back_after_timeout_and_counts_it(
    sim_run: Any, both_ways: bool
) -> None:
    async def main() -> None:
        async with Simulation(seed=106) as sim:
            await sim.start("a", "b", "c")
            load = Loads(delay_s=0.01)
            caches = {n: ReplicatedCache(sim.node(n), load=load, timeout_s=0.5) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = key_owned_by(sim.node("a"), caches["a"].service, "c")
                sim.network.set_link("a", "c", loss=1.0, both_ways=both_ways)
                start = trio.current_time()
                assert await caches["a"].get_or_compute(key) == f"{key}@v0"
                assert 0.5 <= trio.current_time() - start < 0.6
                assert caches["a"].fallbacks == 1
                assert load.calls[key] == 1  # c never heard it
                nursery.cancel_scope.cancel()

    sim_run(main)


# -- cache: breaks ----------------------------------------------------------------------


def test_cache_invalidate_during_a_computation_is_not_undone_by_it(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=107) as sim:
            await sim.start("a", "b")
            load = Loads(delay_s=1.0)
            caches = {n: ReplicatedCache(sim.node(n), load=load, ttl_s=60) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                key = key_owned_by(sim.node("a"), caches["a"].service, "b")
                async with trio.open_nursery() as callers:
                    callers.start_soon(caches["a"].get_or_compute, key)
                    await sim.run_for(0.5)
                    load.version = 1  # the source changes, and the app invalidates
                    caches["a"].invalidate(key)
                await sim.run_for(0.1)
                assert caches["a"].get(key) != f"{key}@v0"  # v0 predates the invalidate
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_cache_with_a_big_int_key_converges(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=108) as sim:
            await sim.start("a", "b")
            load = Loads(delay_s=0.01)
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                with pytest.raises(TypeError, match="int keys"):  # peers could not decode it
                    await caches["a"].get_or_compute(2**1100)
                caches["a"].set("other", 1, ttl_s=60)
                await sim.run_for(0.5)
                assert sim.converged()
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_cache_set_with_a_lone_surrogate_key_is_refused_and_the_node_lives(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=109) as sim:
            await sim.start("a", "b")
            cache = ReplicatedCache(sim.node("a"))
            with contextlib.suppress(TypeError, ValueError):  # refusing it is fine
                cache.set("user:\udcff", 1, ttl_s=60)  # os.fsdecode of a bad byte
            await sim.run_for(0.5)  # here node a's broadcast loop raises: the run ends
            assert sim.node("a").ready
            assert sim.converged()

    sim_run(main)


def test_cache_huge_ttl_is_a_value_error(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=110) as sim:
            await sim.start("a")
            with pytest.raises(ValueError, match="ttl_s"):
                ReplicatedCache(sim.node("a"), ttl_s=1e306)

    sim_run(main)


# -- owner-routed rate limiter: what holds --------------------------------------------


def routed_limiters(
    sim: Simulation, names: Iterable[str], limit: int, window_s: float = 60, timeout_s: float = 0.2
) -> dict[str, OwnerRoutedRateLimiter]:
    return {
        n: OwnerRoutedRateLimiter(
            sim.node(n),
            RateLimiter(sim.node(n), limit=limit, window_s=window_s),
            timeout_s=timeout_s,
        )
        for n in names
    }


def test_limiter_split_in_two_admits_at_most_the_limit_per_side_and_slot(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=201) as sim:
            await sim.start("a", "b", "c", "d")
            routed = routed_limiters(sim, sim.live, limit=10)
            admitted: Counter[str] = Counter()

            async def load(name: str, count: int) -> None:
                for _ in range(count):
                    if await routed[name].allow("ip:1"):
                        admitted[name] += 1
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                await serve(nursery, routed.values())
                owner = routed["a"].owner("ip:1")
                sim.network.partition(["a", "b"], ["c", "d"])
                async with trio.open_nursery() as requests:
                    for name in routed:
                        requests.start_soon(load, name, 500)  # 5 s: past the failure timeout
                owners = {n: r.owner("ip:1") for n, r in routed.items()}
                sim.network.heal()
                await sim.run_for(3)
                nursery.cancel_scope.cancel()
            # Each side elected its own owner: the limit on each side, never more.
            assert owners["a"] == owners["b"]
            assert owners["c"] == owners["d"]
            assert owners["a"] != owners["c"]
            assert owner in owners.values()
            assert admitted["a"] + admitted["b"] <= 10
            assert admitted["c"] + admitted["d"] <= 10
            assert sum(admitted.values()) == 20
            slots = [v for s, v in sim.node("a").map("ratelimit").items() if s[0] == "ip:1"]  # type: ignore[index]
            assert all(v <= 10 for v in slots)
            assert all(r.local.count("ip:1") == 20 for r in routed.values())

    sim_run(main)


@pytest.mark.parametrize("skews", [{"a": 240, "b": -240}, {"b": 240, "c": -240}])
def test_limiter_with_skewed_clocks_is_exact_per_owner_window(
    sim_run: Any, skews: dict[str, int]
) -> None:
    async def main() -> None:
        async with Simulation(seed=202, skew_ms=skews) as sim:
            await sim.start("a", "b", "c")
            routed = routed_limiters(sim, sim.live, limit=7, window_s=1)
            per_window: Counter[int] = Counter()

            async def load(name: str) -> None:
                for _ in range(300):
                    if await routed[name].allow(("tenant", 9), cost=1):
                        per_window[sim.node(str(owner)).wall_ms() // 1000] += 1
                    await trio.sleep(0.013)

            async with trio.open_nursery() as nursery:
                await serve(nursery, routed.values())
                owner = routed["a"].owner(("tenant", 9))
                assert owner is not None
                async with trio.open_nursery() as requests:
                    for name in routed:
                        requests.start_soon(load, name)
                nursery.cancel_scope.cancel()
            windows = sorted(per_window)
            # Windows by the owner's clock; the answer returns a hop after the decision.
            assert all(per_window[w] == 7 for w in windows[1:-1]), per_window
            assert all(r.fallbacks == 0 for r in routed.values())

    sim_run(main)


def test_limiter_costs_over_one_and_over_the_limit_are_exact(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=203) as sim:
            await sim.start("a", "b")
            routed = routed_limiters(sim, sim.live, limit=10)
            async with trio.open_nursery() as nursery:
                await serve(nursery, routed.values())
                key = key_owned_by(sim.node("a"), routed["a"].service, "b")
                a = routed["a"]
                assert await a.allow(key, cost=11) is False
                assert [await a.allow(key, cost=3) for _ in range(4)] == [True] * 3 + [False]
                assert await a.allow(key, cost=1) is True
                assert await a.allow(key, cost=1) is False
                await sim.run_for(0.1)
                assert a.local.count(key) == 10
                assert a.fallbacks == 0
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_limiter_one_way_cut_caller_to_owner_stays_within_n_times_limit(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=204) as sim:
            await sim.start("a", "b", "c")
            routed = routed_limiters(sim, sim.live, limit=10)
            admitted: Counter[str] = Counter()
            async with trio.open_nursery() as nursery:
                await serve(nursery, routed.values())
                key = key_owned_by(sim.node("a"), routed["a"].service, "c")
                sim.network.set_link("a", "c", loss=1.0, both_ways=False)  # a -> c lost

                async def load(name: str) -> None:
                    for _ in range(200):
                        ok = await routed[name].allow(key)
                        admitted[name] += ok
                        await trio.sleep(0.02)

                async with trio.open_nursery() as requests:
                    for name in routed:
                        requests.start_soon(load, name)
                nursery.cancel_scope.cancel()
            assert sum(admitted.values()) <= 3 * 10
            # a decided every request itself (its calls were lost), and counted each.
            assert routed["a"].fallbacks == 200

    sim_run(main)


# -- owner-routed rate limiter: breaks -------------------------------------------------


def test_limiter_with_replies_slower_than_timeout_errs_low_never_high(sim_run: Any) -> None:
    """Replies slower than ``timeout_s``: each request is counted by the owner and by
    the fallback, so half the limit is admitted (documented), never more."""

    async def main() -> None:
        async with Simulation(seed=205) as sim:
            await sim.start("a", "b")
            routed = routed_limiters(sim, sim.live, limit=20)
            async with trio.open_nursery() as nursery:
                await serve(nursery, routed.values())
                key = key_owned_by(sim.node("a"), routed["a"].service, "b")
                sim.network.set_link("a", "b", latency_ms=(120, 120))  # a 240 ms round trip
                admitted = 0
                for _ in range(40):
                    admitted += await routed["a"].allow(key)
                nursery.cancel_scope.cancel()
            assert admitted == 10, (admitted, routed["a"].local.count(key))
            assert routed["a"].fallbacks == 40

    sim_run(main)


def test_limiter_with_a_lone_surrogate_key_keeps_the_node_alive(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=206) as sim:
            await sim.start("a", "b")
            limiter = RateLimiter(sim.node("a"), limit=5, window_s=60)
            with contextlib.suppress(TypeError, ValueError):  # refusing it is fine
                limiter.allow("ip:\udc80")  # a header decoded with surrogateescape
            await sim.run_for(0.5)
            assert sim.node("a").ready
            assert sim.converged()

    sim_run(main)


def test_limiter_infinite_window_is_a_value_error(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=207) as sim:
            await sim.start("a")
            with pytest.raises(ValueError, match="window_s"):
                RateLimiter(sim.node("a"), limit=1, window_s=float("inf"))

    sim_run(main)


def test_limiter_owner_crash_restarts_stay_within_the_limit_per_owner_incarnation(
    sim_run: Any,
) -> None:
    """A window whose owner is killed before broadcasting, three times: each
    incarnation admitted its limit (documented: up to ``limit`` per incarnation
    that owned the key), never more."""

    async def main() -> None:
        async with Simulation(seed=208) as sim:
            await sim.start("a", "b")
            admitted = 0
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    routed = routed_limiters(sim, sim.live, limit=10)
                    scopes = {}
                    for name, limiter in routed.items():
                        scopes[name] = trio.CancelScope()

                        async def run(
                            limiter: OwnerRoutedRateLimiter = limiter,
                            scope: trio.CancelScope = scopes[name],
                            *,
                            task_status: trio.TaskStatus[None],
                        ) -> None:
                            with scope:
                                await limiter.run(task_status=task_status)

                        await nursery.start(run)
                    await sim.run_for(0.1)
                    owner = routed["b"].owner("ip:9")
                    assert owner is not None
                    for _ in range(15):  # a burst on the owner, decided there
                        admitted += await routed[owner].allow("ip:9")
                    sim.crash(owner)  # kill -9 before the burst is broadcast
                    for scope in scopes.values():
                        scope.cancel()
                    await sim.restart(owner)
                    await sim.run_for(0.5)
                nursery.cancel_scope.cancel()
            assert admitted <= 3 * 10

    sim_run(main)


# -- BackgroundNode facade (TCP on 127.0.0.1, real threads) ---------------------------


def in_threads(count: int, fn: Any) -> list[Any]:
    """``fn(i)`` in ``count`` threads at once: each result, or the exception raised."""
    results: list[Any] = [None] * count
    barrier = threading.Barrier(count)

    def main(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


@pytest.fixture
def pair() -> Any:
    pa, pb = free_port(), free_port()
    with make("a", pa, []) as a, make("b", pb, [pa]) as b:
        assert eventually(lambda: a.members() == b.members() == {"a", "b"})
        yield a, b


class Held:
    """A served function that waits for ``release`` and records how many of its
    calls ran at once (``running`` now, ``most`` at worst)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, caller: str, payload: Any) -> Any:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.release.wait(20)
            return payload
        finally:
            with self._lock:
                self.running -= 1


def test_background_serve_keeps_max_concurrent_while_slow_calls_outlive_callers(
    pair: tuple[BackgroundNode, BackgroundNode],
) -> None:
    a, b = pair
    slow = Held()
    a.serve("slow", slow, max_concurrent=2)
    try:
        assert eventually(lambda: b.serving("slow") == {"a"})
        results = in_threads(8, lambda i: b.call("a", "slow", i, timeout_s=0.5))
        kinds = Counter(type(r).__name__ for r in results)
        assert kinds == {"CallTimeout": 2, "Overloaded": 6}
        # The two calls gave up; their functions still run and keep their places.
        assert slow.running == 2
        assert type(in_threads(1, lambda i: b.call("a", "slow", 1, timeout_s=0.5))[0]).__name__ == (
            "Overloaded"
        )
        # A call from the node to itself is refused the same way.
        local = in_threads(1, lambda i: a.call("a", "slow", 1, timeout_s=0.3))[0]
        assert type(local).__name__ == "Overloaded"
    finally:
        slow.release.set()
    assert eventually(lambda: slow.running == 0)
    assert slow.most == 2
    assert b.call("a", "slow", 5, timeout_s=2) == 5


def test_background_calls_from_many_threads_and_errors_as_remote_error(
    pair: tuple[BackgroundNode, BackgroundNode],
) -> None:
    a, b = pair

    def echo(caller: str, payload: Any) -> Any:
        if payload == "boom":
            raise KeyError("no such thing")
        return [caller, payload]

    a.serve("echo", echo, max_concurrent=64)
    assert eventually(lambda: b.serving("echo") == {"a"})
    results = in_threads(32, lambda i: [b.call("a", "echo", i * 100 + j) for j in range(20)])
    assert results == [[["b", i * 100 + j] for j in range(20)] for i in range(32)]
    with pytest.raises(RemoteError, match="KeyError"):
        b.call("a", "echo", "boom")
    with pytest.raises(RemoteError, match="KeyError"):
        a.call("a", "echo", "boom")  # from this node to itself
    assert b.call("a", "echo", 1) == ["b", 1]  # the node goes on


def test_background_local_call_to_a_slow_function_returns_at_its_timeout(
    pair: tuple[BackgroundNode, BackgroundNode],
) -> None:
    """Against transport/_background.py's serve docstring (a local call 'returns only
    when fn does, even past timeout_s'): since call_here runs in a task of its own,
    the local call returns at its timeout; the docstring is stale."""
    a, _ = pair
    release = threading.Event()
    a.serve("hang", lambda caller, payload: release.wait(10), max_concurrent=1)
    try:
        started = time.monotonic()
        with pytest.raises(CallTimeout):
            a.call("a", "hang", None, timeout_s=0.3)
        assert time.monotonic() - started < 2
    finally:
        release.set()


def test_background_watch_members_sees_up_services_and_down() -> None:
    pa, pb = free_port(), free_port()
    events: list[MemberEvent] = []
    with make("a", pa, []) as a:
        a.watch_members(events.append)
        with make("b", pb, [pa]) as b:
            assert eventually(lambda: any(e.kind == "up" and e.node == "b" for e in events))
            unserve = b.serve("x", lambda caller, payload: None)
            assert eventually(
                lambda: any(e.kind == "services" and "x" in e.services for e in events)
            )
            unserve()
        assert eventually(lambda: any(e.kind == "down" and e.node == "b" for e in events))
    assert all(e.node == "b" for e in events)


def test_background_served_function_raising_system_exit_is_a_remote_error(
    pair: tuple[BackgroundNode, BackgroundNode],
) -> None:
    a, b = pair

    def quits(caller: str, payload: Any) -> Any:
        raise SystemExit(3)

    a.serve("quits", quits)
    assert eventually(lambda: b.serving("quits") == {"a"})
    try:
        b.call("a", "quits", None, timeout_s=2)
    except Exception as exc:
        outcome: Any = exc
    assert isinstance(outcome, RemoteError), outcome
    assert a.map("m") is not None
    assert a.members() == {"a", "b"}


def test_background_stop_with_a_function_that_never_returns_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    node = make("a", free_port(), []).start()
    try:
        node.serve("forever", lambda caller, payload: release.wait(30))
        threading.Thread(target=call_ignoring_errors, args=(node,), daemon=True).start()
        time.sleep(0.3)
        started = time.monotonic()
        with caplog.at_level("ERROR", logger="chorus.node"):
            node.stop(timeout=0.5)
        assert time.monotonic() - started < 2  # it does not hang for ever
        thread = node._thread
        assert thread is not None
        assert thread.is_alive()  # left running, and said so
        assert "still running 0.5 s after stop" in caplog.text
    finally:
        release.set()
        node.stop()


def call_ignoring_errors(node: BackgroundNode) -> None:
    with contextlib.suppress(Exception):
        node.call("a", "forever", None, timeout_s=0.2)


# -- more: odd keys, disagreement, facades --------------------------------------------

ODD_KEYS: list[Any] = [(), b"", b"\x00\xff", -(2**63), 2**64, ("x", (1, (b"y",))), "é" * 50]


def test_cache_and_limiter_take_odd_keys_across_nodes(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=301) as sim:
            await sim.start("a", "b", "c")
            load = Loads(delay_s=0.01, value=["computed"])
            caches = {n: ReplicatedCache(sim.node(n), load=load) for n in sim.live}
            routed = routed_limiters(sim, sim.live, limit=2)
            async with trio.open_nursery() as nursery:
                await serve(nursery, [*caches.values(), *routed.values()])
                for key in ODD_KEYS:
                    for cache in caches.values():
                        assert await cache.get_or_compute(key) == ["computed"]
                    results = [await r.allow(key) for r in routed.values()]
                    assert results == [True, True, False]
                assert load.calls == dict.fromkeys(ODD_KEYS, 1)
                assert all(c.fallbacks == 0 for c in caches.values())
                assert all(r.fallbacks == 0 for r in routed.values())
                assert await sim.settle(timeout=2) is not None
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_cache_sides_of_a_partition_each_compute_and_converge_after_heal(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=302) as sim:
            await sim.start("a", "b", "c")
            load = Loads(delay_s=0.05)
            caches = {n: ReplicatedCache(sim.node(n), load=load, timeout_s=0.5) for n in sim.live}
            async with trio.open_nursery() as nursery:
                await serve(nursery, caches.values())
                sim.network.partition(["a", "b"], ["c"])
                await sim.run_for(4)  # each side declares the other down
                assert caches["c"].members.serving() == {"c"}  # c owns every key
                key = key_owned_by(sim.node("a"), caches["a"].service, "a")
                assert await caches["a"].get_or_compute(key) == f"{key}@v0"
                load.version = 1
                assert await caches["c"].get_or_compute(key) == f"{key}@v1"
                assert load.calls[key] == 2  # once per side: documented
                assert caches["c"].fallbacks == 0  # c is the owner it sees
                sim.network.heal()
                assert await sim.settle(timeout=10) is not None
                values = {c.get(key) for c in caches.values()}
                assert len(values) == 1  # the last write wins everywhere
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_background_watch_members_callback_errors_are_logged_and_calls_refused(
    pair: tuple[BackgroundNode, BackgroundNode],
) -> None:
    a, b = pair
    seen: list[Any] = []

    def callback(event: MemberEvent) -> None:
        try:
            a.call("b", "x", None, timeout_s=0.1)  # blocking on the node, from its thread
        except Exception as exc:
            seen.append(exc)
        raise ValueError("a bad callback")

    a.watch_members(callback)
    unserve = b.serve("x", lambda caller, payload: None)
    assert eventually(lambda: len(seen) >= 1)
    assert all(isinstance(e, RuntimeError) for e in seen), seen
    unserve()
    with pytest.raises(UnknownService):  # the node goes on, and answers
        b.call("a", "nothing-here", None, timeout_s=1)


def test_sync_owner_routed_limiter_is_exact_from_many_threads(
    pair: tuple[BackgroundNode, BackgroundNode],
) -> None:
    from transport.recipes import SyncOwnerRoutedRateLimiter, SyncRateLimiter

    a, b = pair
    with (
        SyncRateLimiter(a, limit=50, window_s=60) as la,
        SyncRateLimiter(b, limit=50, window_s=60) as lb,
        SyncOwnerRoutedRateLimiter(la) as ra,
        SyncOwnerRoutedRateLimiter(lb) as rb,
    ):
        assert eventually(lambda: ra.members.serving() == {"a", "b"})
        results = in_threads(16, lambda i: [(ra, rb)[i % 2].allow("k") for _ in range(10)])
        assert sum(sum(r) for r in results) == 50
        assert ra.fallbacks == rb.fallbacks == 0


def test_background_serve_again_counts_max_concurrent_anew(
    pair: tuple[BackgroundNode, BackgroundNode],
) -> None:
    a, b = pair
    slow = Held()
    try:
        unserve = a.serve("db", slow, max_concurrent=2)
        assert eventually(lambda: b.serving("db") == {"a"})
        in_threads(2, lambda i: b.call("a", "db", i, timeout_s=0.3))
        unserve()  # a deploy reloads the handler
        a.serve("db", slow, max_concurrent=2)
        assert eventually(lambda: b.serving("db") == {"a"})
        in_threads(4, lambda i: b.call("a", "db", i, timeout_s=0.3))
        # Documented: the earlier serve's calls still running are not counted.
        assert slow.most <= 2 + 2, slow.most
    finally:
        slow.release.set()


def test_limiter_is_exact_while_a_new_node_starts_serving(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            await sim.start("a", "b", "c", "d")
            limit = 400
            routed = routed_limiters(sim, ["a", "b", "c"], limit=limit)
            service = routed["a"].service
            key = next(
                k
                for k in (f"t{i}" for i in range(1000))
                if sim.node("a").owner(k) == "d"  # HRW over a, b, c and d
            )
            admitted = 0
            stop = trio.Event()

            async def load(limiter: OwnerRoutedRateLimiter) -> None:
                nonlocal admitted
                while not stop.is_set():
                    ok = await limiter.allow(key)  # not `+= await`: read after it
                    admitted += ok
                    await trio.sleep(0.0005)

            async with trio.open_nursery() as nursery:
                await serve(nursery, routed.values())
                old_owner = routed["a"].owner(key)
                assert old_owner in {"a", "b", "c"}
                routed["d"] = routed_limiters(sim, ["d"], limit=limit)["d"]
                for limiter in routed.values():
                    nursery.start_soon(load, limiter)
                # Close to the limit (6 callers, 2 requests/ms), d starts serving.
                while routed[old_owner].local.count(key) < limit - 20:
                    await trio.sleep(0.0005)
                await nursery.start(routed["d"].run)
                await sim.run_for(0.5)
                stop.set()
                assert sim.node("a").owner_of(key, service) == "d"
                nursery.cancel_scope.cancel()
            # Documented: for a few ms the new and the old owner both decide.
            assert limit <= admitted <= limit + 5

    sim_run(main)
