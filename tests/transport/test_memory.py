from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from transport import MemoryNetwork, PeerDown, PeerUp, Received, Transport
from transport.testing import check_transport

pytestmark = pytest.mark.timeout(30)
T = TypeVar("T")


def run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


@asynccontextmanager
async def memory_pair() -> AsyncIterator[tuple[Transport, Transport]]:
    network = MemoryNetwork(seed=1)
    yield network.transport("a"), network.transport("b")


def test_memory_transport_conforms() -> None:
    run(check_transport, memory_pair)


async def drain(t: Transport, seconds: float) -> list[object]:
    events: list[object] = []
    with trio.move_on_after(seconds):
        while True:
            events.append(await t.receive())
    return events


def test_attach_and_crash_announce_peers() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a = net.transport("a")
        b = net.transport("b")
        assert not a.seeded
        assert b.seeded
        assert await a.receive() == PeerUp("b")
        assert await b.receive() == PeerUp("a")
        net.crash("b")
        assert await a.receive() == PeerDown("b")
        with pytest.raises(ValueError, match="already"):
            net.transport("a")
        assert net.transport("b").node_id == "b"  # a restart after a crash

    run(main)


def test_partition_heal_and_clog() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a, b, _c = (net.transport(n) for n in "abc")
        net.partition({"a"}, {"b", "c"})
        assert not net.connected("a", "b")
        assert net.connected("b", "c")
        assert a.send("b", b"lost") is False
        net.heal()
        net.clog("c")
        assert not net.connected("b", "c")
        assert net.connected("a", "b")
        net.unclog("c")
        assert a.send("b", b"kept")
        events = await drain(b, 1)
        assert Received("a", b"kept") in events
        assert Received("a", b"lost") not in events
        assert net.stats.dropped == 1

    run(main)


def test_latency_reorders_and_duplication_duplicates_deterministically() -> None:
    async def history(seed: int) -> list[bytes]:
        net = MemoryNetwork(seed, latency_ms=(1, 50), duplication=0.3)
        a, b = net.transport("a"), net.transport("b")
        for i in range(50):
            a.send("b", b"%d" % i)
        return [e.data for e in await drain(b, 1) if isinstance(e, Received)]

    first = trio.run(history, 4, clock=trio.testing.MockClock(autojump_threshold=0))
    again = trio.run(history, 4, clock=trio.testing.MockClock(autojump_threshold=0))
    assert first == again  # the seed replays the same history
    assert len(first) > 50  # some duplicated
    assert first[:50] != sorted(first[:50], key=int)  # some reordered


def test_loss_on_one_link() -> None:
    async def main() -> None:
        net = MemoryNetwork(seed=2)
        a, b, c = (net.transport(n) for n in "abc")
        net.set_link("a", "b", loss=1.0)
        for _ in range(10):
            a.send("b", b"x")
            a.send("c", b"y")
        got_b = [e for e in await drain(b, 1) if isinstance(e, Received)]
        got_c = [e for e in await drain(c, 1) if isinstance(e, Received)]
        assert got_b == []
        assert len(got_c) == 10

    run(main)


def test_inbox_is_bounded() -> None:
    async def main() -> None:
        net = MemoryNetwork(inbox_size=100)
        a, b = net.transport("a"), net.transport("b")
        for _ in range(500):
            a.send("b", b"x")
        got = [e for e in await drain(b, 1) if isinstance(e, Received)]
        assert 90 <= len(got) <= 100  # the PeerUp event takes a place in the inbox too
        assert len(got) + net.stats.dropped == 500

    run(main)


def test_stats_by_kind() -> None:
    async def main() -> None:
        net = MemoryNetwork()
        a, _ = net.transport("a"), net.transport("b")
        from transport._wire import Heartbeat, encode_heartbeat

        beat = Heartbeat("i1", True, None, bytes(8), bytes(8), (1, 0), 1, (0, 0), (0, 0))
        a.send("b", encode_heartbeat(beat))
        a.send("b", b"garbage")
        assert net.stats.sent_by_kind == {"heartbeat": 1, "other": 1}

    run(main)


def test_bad_link_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        MemoryNetwork(loss=1.5)
    with pytest.raises(ValueError, match="latency"):
        MemoryNetwork(latency_ms=(5, 1))
