"""The sync facades over real BackgroundNodes on 127.0.0.1, used from plain threads."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import eventually, free_port
from tests.transport.test_background import make  # BackgroundNodes over TCP, fast timers
from transport import BackgroundNode
from transport.recipes import SyncCache, SyncOwnerRoutedRateLimiter, SyncRateLimiter


@pytest.fixture
def cluster() -> Iterator[tuple[BackgroundNode, BackgroundNode]]:
    pa, pb = free_port(), free_port()
    with make("a", pa, []) as a, make("b", pb, [pa]) as b:
        assert eventually(lambda: a.members() == b.members() == {"a", "b"})
        yield a, b


def in_threads(count: int, fn: Any) -> list[Any]:
    """Run ``fn(i)`` in threads ``i`` in ``range(count)`` at once; return their results."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def main(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.timeout(60)
def test_sync_cache_computes_once_in_a_caller_thread_without_stalling_the_node(
    cluster: tuple[BackgroundNode, BackgroundNode],
) -> None:
    a, b = cluster
    with SyncCache(a, owner_wait_s=5) as ca, SyncCache(b, owner_wait_s=5, serve=False) as cb:
        assert eventually(lambda: ca.serving() == cb.serving() == {"a"})  # b does not serve
        assert cb.owner("report") == "a"
        ran_in: list[threading.Thread] = []

        def compute() -> str:
            ran_in.append(threading.current_thread())
            # While this runs, the node keeps going: a write made on b arrives here.
            cb.set("during", 1, ttl_s=60)
            assert eventually(lambda: ca.get("during") == 1, timeout=5)
            time.sleep(0.2)  # a slow backend
            return "expensive"

        def ask(cache: SyncCache) -> Any:
            return cache.get_or_compute("report", compute, ttl_s=60)

        started = time.monotonic()
        results = in_threads(8, lambda i: ask([ca, cb][i % 2]))
        assert results == ["expensive"] * 8
        assert len(ran_in) == 1  # once in the cluster
        assert ran_in[0] is not threading.main_thread()
        assert ran_in[0].name != "chorus-node"
        assert ca.computed == 1
        assert cb.computed == 0
        assert time.monotonic() - started < 5  # b's callers got a's value, no timeout

        with pytest.raises(TypeError):
            ca.set("bad", object(), ttl_s=60)
        with pytest.raises(ValueError, match="ttl"):
            ca.set("bad", 1, ttl_s=0)
        with pytest.raises(ValueError, match="ttl"):
            ca.get_or_compute("bad", lambda: pytest.fail("computed"), ttl_s=-1)
        assert ca.get("bad") is None
        assert "bad" not in a.map("cache")

        cb.invalidate("report")
        assert eventually(lambda: ca.get("report") is None)

        ca.close()  # a stops serving: b elects nobody, and computes for itself
        assert eventually(lambda: cb.serving() == frozenset())
        assert cb.get_or_compute("report", lambda: "local", ttl_s=60) == "local"
        assert eventually(lambda: ca.get("report") == "local")


@pytest.mark.timeout(60)
def test_sync_rate_limiters_from_threads(cluster: tuple[BackgroundNode, BackgroundNode]) -> None:
    a, b = cluster
    with (
        SyncRateLimiter(a, limit=5, window_s=60) as la,
        SyncRateLimiter(b, limit=5, window_s=60) as lb,
    ):
        admitted = in_threads(4, lambda _: sum(la.allow("ip:1") for _ in range(5)))
        assert sum(admitted) == 5  # one node: each decision in its thread, exact
        assert la.count("ip:1") == 5
        assert eventually(lambda: lb.count("ip:1") == 5)
        assert lb.allow("ip:1") is False
        with pytest.raises(ValueError, match="cost"):
            la.allow("ip:2", cost=0)
        with pytest.raises(TypeError):
            la.allow(1.5)  # type: ignore[arg-type]
        assert la.count("ip:2") == 0

        limiters = {"a": la, "b": lb}
        asked: list[str] = []
        down = threading.Event()

        def forward(owner: str, key: Any) -> bool:  # an HTTP call to the owner's app
            if down.is_set():
                raise ConnectionError("refused")
            asked.append(owner)
            return limiters[owner].allow(key)

        with (
            SyncOwnerRoutedRateLimiter(la, forward) as ra,
            SyncOwnerRoutedRateLimiter(lb, forward) as rb,
        ):
            assert eventually(lambda: a.run_sync(ra.members.serving) == {"a", "b"})
            assert eventually(lambda: b.run_sync(rb.members.serving) == {"a", "b"})
            keys = [f"user:{i}" for i in range(6)]
            admitted = in_threads(
                6, lambda _: sum(r.allow(k) for k in keys for r in (ra, rb) for _ in range(4))
            )
            assert sum(admitted) == 5 * len(keys)  # exact: each key decided by its owner
            assert set(asked) == {"a", "b"}
            assert ra.fallbacks == rb.fallbacks == 0

            down.set()  # the owners stop answering: a decides with its own counters
            remote = next(
                k
                for k in (f"user:{i}" for i in range(100, 200))  # none counted yet
                if a.run_sync(ra.members.owner, k) == "b"
            )
            admitted = in_threads(4, lambda _: sum(ra.allow(remote) for _ in range(3)))
            assert sum(admitted) == 5
            assert ra.fallbacks == 12
