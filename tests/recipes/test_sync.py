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
def test_sync_cache_computes_once_on_the_owner_in_a_worker_thread(
    cluster: tuple[BackgroundNode, BackgroundNode],
) -> None:
    a, b = cluster
    ran_in: list[tuple[str, threading.Thread]] = []
    source = {"report": "expensive"}

    def compute(node: str) -> Any:
        def load(key: Any) -> Any:
            ran_in.append((node, threading.current_thread()))
            if key == "during":
                # While this runs, the node keeps going: a write made on b arrives here.
                cb.set("written", 1, ttl_s=60)
                assert eventually(lambda: ca.get("written") == 1, timeout=5)
            time.sleep(0.2)  # a slow backend
            return source.get(key, f"{key} from {node}")

        return load

    with (
        SyncCache(a, load=compute("a")) as ca,
        SyncCache(b, load=compute("b"), serve=False) as cb,
    ):
        assert eventually(lambda: ca.serving() == cb.serving() == {"a"})  # b does not serve
        assert cb.owner("report") == "a"

        def ask(cache: SyncCache) -> Any:
            return cache.get_or_compute("report", ttl_s=60)

        started = time.monotonic()
        results = in_threads(8, lambda i: ask([ca, cb][i % 2]))
        assert results == ["expensive"] * 8
        assert [node for node, _ in ran_in] == ["a"]  # once in the cluster, on the owner
        assert ran_in[0][1] is not threading.main_thread()
        assert ran_in[0][1].name != "chorus-node"
        assert (ca.computed, cb.computed, ca.fallbacks, cb.fallbacks) == (1, 0, 0, 0)
        assert time.monotonic() - started < 2  # b's callers got a's answer, no wait
        assert cb.get_or_compute("during") == "during from a"  # the node ran meanwhile

        with pytest.raises(TypeError):
            ca.set("bad", object(), ttl_s=60)
        with pytest.raises(ValueError, match="ttl"):
            ca.set("bad", 1, ttl_s=0)
        with pytest.raises(ValueError, match="ttl"):
            ca.get_or_compute("bad", ttl_s=-1)
        assert ca.get("bad") is None
        assert "bad" not in a.map("cache")

        cb.invalidate("report")
        assert eventually(lambda: ca.get("report") is None)
        source["report"] = "fresh"

        ca.close()  # a stops serving: b elects nobody, and computes for itself
        assert eventually(lambda: cb.serving() == frozenset())
        assert cb.get_or_compute("report", ttl_s=60) == "fresh"
        assert ran_in[-1][0] == "b"
        assert cb.fallbacks == 1
        assert eventually(lambda: ca.get("report") == "fresh")


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

        # Exactness needs the owner's answer: a long timeout_s, as a busy test machine
        # may pause a thread past the default 0.2 s (the caller would then decide).
        with (
            SyncOwnerRoutedRateLimiter(la, timeout_s=5) as ra,
            SyncOwnerRoutedRateLimiter(lb, timeout_s=5) as rb,
        ):
            assert eventually(lambda: a.serving(ra.members.service) == {"a", "b"})
            assert eventually(lambda: b.serving(rb.members.service) == {"a", "b"})
            keys = [f"user:{i}" for i in range(6)]
            admitted = in_threads(
                6, lambda _: sum(r.allow(k) for k in keys for r in (ra, rb) for _ in range(4))
            )
            assert (ra.fallbacks, rb.fallbacks) == (0, 0)
            assert sum(admitted) == 5 * len(keys)  # exact: each key decided by its owner
            assert {ra.owner(k) for k in keys} == {"a", "b"}
            assert ra.fallbacks == rb.fallbacks == 0

            remote = next(
                k
                for k in (f"user:{i}" for i in range(100, 200))  # none counted yet
                if ra.owner(k) == "b"
            )
            rb.close()  # b stops deciding: a owns every key, with no fallback
            assert eventually(lambda: ra.owner(remote) == "a")
            admitted = in_threads(4, lambda _: sum(ra.allow(remote) for _ in range(3)))
            assert sum(admitted) == 5
            assert ra.fallbacks == 0
