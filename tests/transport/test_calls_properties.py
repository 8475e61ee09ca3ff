"""Adversarial properties of calls between nodes (transport/_calls.py, Node.call and
friends), in the simulator.

Passing tests are properties that held under attack; tests marked
``xfail(strict=True)`` are breaks, each reproduced minimally, with the cause in its
reason. The ``ci`` hypothesis profile bounds every property test to a few seconds.
"""

from __future__ import annotations

import collections
import math
import pathlib
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2
import pytest
import trio
import trio.testing
from hypothesis import event as note
from hypothesis import given, settings
from hypothesis import strategies as st

from crdt import DecodeError
from transport import (
    CallError,
    CallTimeout,
    MemberEvent,
    MemoryNetwork,
    MemoryTransport,
    Node,
    Overloaded,
    PeerUnavailable,
    Received,
    RemoteError,
    UnknownService,
)
from transport._calls import _SEEN_PER_PEER, MAX_INBOUND_PER_PEER, MAX_PENDING_PER_PEER
from transport._wire import (
    decode_reply,
    encode_call,
    encode_reply,
    encode_services,
    peek_kind,
)
from transport.simulation import Simulation

#: Scheduling slack allowed past a call's timeout, in simulated seconds.
EPSILON_S = 1e-3
#: Examples per property: the profile's count (``ci``: 100, about 2 s each), and a
#: cap for the heavier ones.
EXAMPLES = settings().max_examples
FEW = min(EXAMPLES, 50)

pytestmark = pytest.mark.timeout(120 if EXAMPLES <= 100 else 7200)


def run(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` under trio's MockClock with autojump (simulated time)."""
    return trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))


class Noted:
    """A handler that records each payload it runs with (``runs``) and answers it."""

    def __init__(self) -> None:
        self.runs: list[Any] = []

    async def __call__(self, caller: str, payload: Any) -> Any:
        self.runs.append(payload)
        return payload


async def echo(caller: str, payload: Any) -> Any:
    return {"caller": caller, "payload": payload}


async def start(sim: Simulation, *names: str) -> list[Node]:
    nodes = await sim.start(*names)
    await sim.run_for(2)
    return nodes


def replies_of(transport: MemoryTransport) -> Callable[[], Awaitable[None]]:
    """A task draining a raw transport (a peer with no Node), keeping its replies."""
    got: list[tuple[int, str, bytes | str]] = []

    async def drain() -> None:
        while True:
            event = await transport.receive()
            if isinstance(event, Received) and peek_kind(event.data) == "reply":
                got.append(decode_reply(event.data))

    drain.got = got  # type: ignore[attr-defined]
    return drain


# Values a replicated map holds (no NaN: it is not equal to itself).
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.binary(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)

# -- rule 1 and 2: every call ends once, typed, in time; a handler runs at most once --

NEMESIS = st.sampled_from(
    [
        "crash_callee",
        "restart_callee",
        "restart_caller",
        "partition",
        "one_way_calls",
        "one_way_replies",
        "clog_callee",
        "heal",
        "skew",
        "nothing",
    ]
)


@settings(max_examples=EXAMPLES)
@given(
    seed=st.integers(0, 2**16),
    loss=st.sampled_from([0.0, 0.0, 0.2, 0.6]),
    duplication=st.sampled_from([0.0, 0.5, 1.0]),
    latency=st.sampled_from([(1.0, 5.0), (1.0, 300.0), (200.0, 1500.0)]),
    calls=st.lists(
        st.tuples(
            st.floats(0, 3),  # when it starts
            st.floats(0.01, 4),  # its timeout
            st.floats(0, 3),  # how long the handler takes
            VALUES,
        ),
        min_size=1,
        max_size=10,
    ),
    nemesis=st.lists(st.tuples(st.floats(0, 4), NEMESIS, st.integers(-5000, 5000)), max_size=4),
)
def test_every_call_ends_once_typed_and_in_time(
    seed: int,
    loss: float,
    duplication: float,
    latency: tuple[float, float],
    calls: list[tuple[float, float, float, Any]],
    nemesis: list[tuple[float, str, int]],
) -> None:
    """Rule 1 and 2 under loss, duplication, reordering, partitions (one-way too),
    clogs, crashes and restarts of either side, and clock steps: each call returns
    the handler's answer or raises one `CallError`, within its timeout; each call's
    handler runs at most once."""
    runs: collections.Counter[int] = collections.Counter()
    outcomes: dict[int, Any] = {}

    async def main() -> None:
        async with Simulation(seed=seed) as sim:
            await start(sim, "a", "b")

            async def handler(caller: str, payload: Any) -> Any:
                index, _ = payload
                runs[index] += 1
                await trio.sleep(calls[index][2])
                return ["done", payload]

            sim.node("b").serve("work", handler)
            await sim.run_for(1)
            sim.network.set_link("a", "b", loss=loss, duplication=duplication, latency_ms=latency)

            async def one(index: int) -> None:
                at, timeout_s, _, value = calls[index]
                await trio.sleep(at)
                if "a" not in sim.live:
                    return
                node = sim.node("a")
                began = trio.current_time()
                try:
                    result: Any = await node.call("b", "work", [index, value], timeout_s=timeout_s)
                except CallError as exc:
                    result = exc
                except Exception as exc:  # an untyped error: the property fails below
                    result = ("untyped", exc)
                took = trio.current_time() - began
                assert took <= timeout_s + EPSILON_S, (index, took, timeout_s, result)
                assert index not in outcomes
                outcomes[index] = result

            async def faults() -> None:
                for at, action, number in sorted(nemesis, key=lambda n: n[0]):
                    await sim.run_for(max(0.0, at - (trio.current_time() - began)))
                    net = sim.network
                    if action == "crash_callee" and "b" in sim.live:
                        sim.crash("b")
                    elif action == "restart_callee":
                        node = await sim.restart("b", ready=False)
                        node.serve("work", handler)
                    elif action == "restart_caller":
                        await sim.restart("a", ready=False)
                    elif action == "partition":
                        net.partition({"a"}, {"b"})
                    elif action == "one_way_calls":
                        net.set_link("a", "b", loss=1.0, both_ways=False)
                    elif action == "one_way_replies":
                        net.set_link("b", "a", loss=1.0, both_ways=False)
                    elif action == "clog_callee":
                        net.clog("b")
                    elif action == "heal":
                        net.heal()
                        net.set_link("a", "b", loss=loss)
                    elif action == "skew":
                        sim.set_skew(random.Random(number).choice("ab"), number)

            began = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(faults)
                for index in range(len(calls)):
                    nursery.start_soon(one, index)

    run(main)
    assert max(runs.values(), default=0) <= 1, runs
    for index, result in outcomes.items():
        assert not isinstance(result, tuple), result
        note(type(result).__name__)
        if not isinstance(result, CallError):
            assert runs[index] == 1
            assert result == ["done", [index, calls[index][3]]]


def test_a_call_with_an_infinite_timeout_is_a_bad_argument() -> None:
    """It raised OverflowError (untyped) for a peer, and worked for the node itself."""

    async def main() -> None:
        async with Simulation(seed=1) as sim:
            a, b = await start(sim, "a", "b")
            b.serve("echo", echo)
            await sim.run_for(1)
            for caller in (a, b):
                for timeout in (math.inf, math.nan, 0.0):
                    with pytest.raises(ValueError, match="positive finite"):
                        await caller.call("b", "echo", 1, timeout_s=timeout)
            assert await a.call("b", "echo", 1, timeout_s=1e6) == {"caller": "a", "payload": 1}

    run(main)


def test_no_handler_starts_after_its_caller_timed_out() -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            a, b = await start(sim, "a", "b")
            started: list[float] = []

            async def note(caller: str, payload: Any) -> Any:
                started.append(trio.current_time())
                return 1

            b.serve("note", note)
            await sim.run_for(1)
            sim.network.set_link("a", "b", latency_ms=(1500, 1500), both_ways=False)
            began = trio.current_time()
            with pytest.raises(CallTimeout):
                await a.call("b", "note", timeout_s=1.0)
            gave_up = trio.current_time()
            assert gave_up - began == pytest.approx(1.0)
            await sim.run_for(2)
            # The handler started 0.5 s after the caller gave up.
            assert all(at <= gave_up for at in started), (started, gave_up)

    run(main)


def test_a_duplicate_delayed_past_many_calls_runs_once() -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            (b,) = await start(sim, "b")
            peer = sim.network.transport("x")  # a peer with no Node: it sends raw bytes
            await sim.run_for(1)
            runs: list[Any] = []

            async def count(caller: str, payload: Any) -> Any:
                runs.append(payload)
                return len(runs)

            b.serve("count", count)
            call = encode_call(7, "count", 1000, b.incarnation, cbor2.dumps("once"))
            peer.send("b", call)
            await sim.run_for(0.1)
            for i in range(_SEEN_PER_PEER):  # other calls, say of a missing service
                peer.send("b", encode_call(1000 + i, "missing", 1000, b.incarnation, b"\xf6"))
                if i % 1000 == 999:
                    await sim.run_for(0.1)
            await sim.run_for(0.1)
            peer.send("b", call)  # the first call's duplicate, delivered late
            await sim.run_for(0.1)
            assert runs == ["once"]

    run(main)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


def test_a_handler_raising_an_unprintable_exception_does_not_kill_the_node() -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            a, b = await start(sim, "a", "b")

            async def bad(caller: str, payload: Any) -> Any:
                raise _Unprintable()

            b.serve("bad", bad)
            await sim.run_for(1)
            with pytest.raises(RemoteError):
                await a.call("b", "bad", timeout_s=1.0)
            await sim.run_for(5)
            assert sim.live == ["a", "b"]

    run(main)


def test_a_local_call_of_an_unprintable_handler_error_is_typed() -> None:
    raised: list[BaseException] = []

    async def main() -> None:
        async with Simulation(seed=1) as sim:
            (a,) = await start(sim, "a")

            async def bad(caller: str, payload: Any) -> Any:
                raise _Unprintable()

            a.serve("bad", bad)
            try:
                await a.call("a", "bad", timeout_s=1.0)
            except Exception as exc:
                raised.append(exc)

    run(main)
    assert [type(e) for e in raised] == [RemoteError], raised


def test_a_long_remote_error_does_not_kill_the_callee() -> None:
    async def main() -> None:
        async with Simulation(MemoryNetwork(1, max_message_bytes=1500)) as sim:
            a, b = await start(sim, "a", "b")

            async def wordy(caller: str, payload: Any) -> Any:
                raise ValueError("é" * 2000)

            b.serve("wordy", wordy)
            await sim.run_for(1)
            with pytest.raises(RemoteError):
                await a.call("b", "wordy", timeout_s=1.0)
            await sim.run_for(5)
            assert sim.live == ["a", "b"]

    run(main)


_DEEP_ANSWER = """
import sys, trio, trio.testing
from transport import RemoteError
from transport.simulation import Simulation

async def main():
    async with Simulation(seed=1) as sim:
        a, b = await sim.start("a", "b")
        await sim.run_for(2)

        async def deep(caller, payload):
            value = []
            for _ in range(100_000):
                value = [value]
            return value

        b.serve("deep", deep)
        await sim.run_for(1)
        try:
            await a.call("b", "deep", timeout_s=5)
        except RemoteError:
            print("RemoteError")

trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
"""


def test_a_deeply_nested_answer_is_a_remote_error_not_a_crash() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _DEEP_ANSWER],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(pathlib.Path(__file__).parents[2]),
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "RemoteError"), done.stderr[-2000:]


# -- rule 3: bounds -----------------------------------------------------------------------


@settings(max_examples=FEW)
@given(
    max_concurrent=st.integers(1, 400),
    flood=st.integers(1, 1500),
    other=st.integers(0, 300),
)
def test_a_flood_from_one_peer_is_bounded_and_overloaded_never_runs(
    max_concurrent: int, flood: int, other: int
) -> None:
    """Rule 3: a peer flooding calls of a slow service gets at most
    ``max_concurrent`` handlers running, at most MAX_INBOUND_PER_PEER over all
    services, the rest answered Overloaded at once without running; the callee
    remembers at most _SEEN_PER_PEER ids; every call is answered exactly once."""

    async def main() -> None:
        async with Simulation(seed=flood) as sim:
            (b,) = await start(sim, "b")
            peer = sim.network.transport("x")
            release = trio.Event()
            started: list[Any] = []

            async def slow(caller: str, payload: Any) -> Any:
                started.append(payload)
                await release.wait()
                return payload

            b.serve("slow", slow, max_concurrent=max_concurrent)
            b.serve("other", slow, max_concurrent=400)
            await sim.run_for(1)
            drain = replies_of(peer)
            got: list[tuple[int, str, bytes | str]] = drain.got  # type: ignore[attr-defined]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                for i in range(flood):
                    peer.send("b", encode_call(i, "slow", 60_000, b.incarnation, cbor2.dumps(i)))
                for i in range(other):
                    call = encode_call(flood + i, "other", 60_000, b.incarnation, b"\xf6")
                    peer.send("b", call)
                await sim.run_for(1)
                running = b._calls._services["slow"].running
                total = sum(b._calls._inbound.values())
                assert running == len([s for s in started if s is not None])
                assert running <= max_concurrent
                assert total == len(started) <= MAX_INBOUND_PER_PEER
                assert len(b._calls._seen[("x", "")].recent) <= 2 * _SEEN_PER_PEER
                overloaded = {r[0] for r in got if r[1] == "overloaded"}
                assert len(overloaded) == flood + other - len(started)
                assert not overloaded & {p for p in started if p is not None}
                # Nothing finished yet, so a call was shed only at a limit.
                if overloaded & set(range(flood)):
                    assert running == max_concurrent or total == MAX_INBOUND_PER_PEER
                if overloaded - set(range(flood)):
                    assert total == MAX_INBOUND_PER_PEER
                release.set()
                await sim.run_for(1)
                nursery.cancel_scope.cancel()
            assert collections.Counter(r[0] for r in got) == collections.Counter(
                [*range(flood), *(flood + i for i in range(other))]
            )
            assert all(r[1] in ("ok", "overloaded") for r in got)
            assert not b._calls._inbound
            assert b._calls._services["slow"].running == 0

    run(main)


def test_calls_in_flight_to_one_peer_are_capped_and_nothing_is_sent_beyond() -> None:
    """Rule 3 on the caller: past MAX_PENDING_PER_PEER calls in flight to a peer, a
    call raises Overloaded at once and sends nothing; the pending table empties."""

    async def main() -> None:
        async with Simulation(seed=2) as sim:
            a, b = await start(sim, "a", "b")
            release = trio.Event()

            async def wait(caller: str, payload: Any) -> Any:
                await release.wait()
                return payload

            b.serve("wait", wait, max_concurrent=10_000)
            await sim.run_for(1)
            results: list[Any] = []
            # The calls never arrive, so they all stay in flight until their timeout.
            sim.network.set_link("a", "b", loss=1.0, both_ways=False)

            async def one(i: int) -> None:
                try:
                    results.append(await a.call("b", "wait", i, timeout_s=2))
                except CallError as exc:
                    results.append(exc)

            async with trio.open_nursery() as nursery:
                for i in range(MAX_PENDING_PER_PEER):
                    nursery.start_soon(one, i)
                await sim.run_for(0.5)
                sent = sim.network.stats.sent_by_kind["call"]
                began = trio.current_time()
                with pytest.raises(Overloaded):
                    await a.call("b", "wait", -1, timeout_s=30)
                assert trio.current_time() == began
                assert sim.network.stats.sent_by_kind["call"] == sent
                release.set()
            assert len(results) == MAX_PENDING_PER_PEER
            assert all(isinstance(r, CallTimeout) for r in results)
            assert not a._calls._pending
            assert not a._calls._pending_per_peer
            sim.network.set_link("a", "b", loss=0.0)
            assert await a.call("b", "wait", "after", timeout_s=2) == "after"

    run(main)


# -- rule 4: fail fast, and restarts ----------------------------------------------------


@settings(max_examples=FEW)
@given(seed=st.integers(0, 2**16), way=st.sampled_from(["calls", "replies", "both"]))
def test_a_callee_cut_one_way_fails_typed_within_the_timeout(seed: int, way: str) -> None:
    """Rule 4: cut one way (its calls lost, or its replies and heartbeats lost), a
    callee's calls end CallTimeout or PeerUnavailable, never later than their
    timeout; with replies lost, a long call fails PeerUnavailable at the failure
    timeout, not at its own."""

    async def main() -> None:
        async with Simulation(seed=seed) as sim:
            a, b = await start(sim, "a", "b")
            b.serve("echo", echo)
            await sim.run_for(1)
            if way in ("calls", "both"):
                sim.network.set_link("a", "b", loss=1.0, both_ways=False)
            if way in ("replies", "both"):
                sim.network.set_link("b", "a", loss=1.0, both_ways=False)
            began = trio.current_time()
            with pytest.raises((CallTimeout, PeerUnavailable)) as info:
                await a.call("b", "echo", 1, timeout_s=30)
            took = trio.current_time() - began
            if way == "calls":
                assert isinstance(info.value, CallTimeout)
                assert took == pytest.approx(30)
            else:  # b's heartbeats are lost too: declared down after failure_timeout_s
                assert isinstance(info.value, PeerUnavailable)
                assert took < 4.5

    run(main)


def test_a_callee_whose_replies_alone_are_lost_times_out_at_the_timeout() -> None:
    """Rule 4: a callee whose replies are lost but whose heartbeats arrive stays
    up, so its calls do not fail fast: each ends CallTimeout exactly at its
    timeout (the documented "a lost answer ends in CallTimeout"), its handler run
    once."""

    async def main() -> None:
        async with Simulation(seed=3) as sim:
            a, b = await start(sim, "a", "b")
            note = Noted()
            b.serve("note", note)
            await sim.run_for(1)
            transport = b._transport
            send = transport.send

            def lose_replies(peer: str, data: bytes) -> bool:
                return True if peek_kind(data) == "reply" else send(peer, data)

            transport.send = lose_replies  # type: ignore[method-assign]
            for timeout_s in (0.5, 10.0):
                began = trio.current_time()
                with pytest.raises(CallTimeout):
                    await a.call("b", "note", timeout_s, timeout_s=timeout_s)
                assert trio.current_time() - began == pytest.approx(timeout_s)
            assert note.runs == [0.5, 10.0]
            assert "b" in a.members()

    run(main)


def test_a_restarted_callee_answers_an_old_incarnations_call_peer_unavailable() -> None:
    """Rule 4: a call addressed to an incarnation that has restarted is refused
    (never run by the new one), as PeerUnavailable."""

    async def main() -> None:
        async with Simulation(seed=3) as sim:
            (b,) = await start(sim, "b")
            peer = sim.network.transport("x")
            runs: list[Any] = []

            async def note(caller: str, payload: Any) -> Any:
                runs.append(payload)
                return 1

            b.serve("note", note)
            await sim.run_for(1)
            drain = replies_of(peer)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                peer.send("b", encode_call(1, "note", 1000, "deadbeef", b"\x01"))
                await sim.run_for(0.5)
                nursery.cancel_scope.cancel()
            assert drain.got == [(1, "restarted", f"it is now {b.incarnation}")]  # type: ignore[attr-defined]
            assert runs == []

    run(main)


@pytest.mark.parametrize("seeded", [False, True])
def test_a_restarted_caller_gets_its_own_answers(seeded: bool) -> None:
    """Rule 4: the old incarnation's late reply never answers a call of the new one,
    and the new one's call runs, even when the process seeds Python's ``random``
    alike at each start (as a deterministic app does): ids come from ``secrets``."""
    state = random.getstate()

    async def main() -> None:
        async with Simulation(seed=3) as sim:
            await sim.start("b", ready=False)
            if seeded:
                random.seed(1234)
            await sim.start("a")
            await sim.run_for(2)
            runs: list[Any] = []

            async def slow(caller: str, payload: Any) -> Any:
                runs.append(payload)
                await trio.sleep(2)
                return f"answer to {payload}"

            sim.node("b").serve("slow", slow)
            await sim.run_for(1)

            async def old_call() -> None:
                with pytest.raises(CallError):
                    await sim.node("a").call("b", "slow", "old", timeout_s=5)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(old_call)
                await sim.run_for(0.5)
                if seeded:
                    random.seed(1234)  # the restarted process seeds it the same way
                a = await sim.restart("a", ready=False)
                await sim.run_for(0.1)
                answer = await a.call("b", "slow", "new", timeout_s=5)
            assert (answer, runs) == ("answer to new", ["old", "new"])

    try:
        run(main)
    finally:
        random.setstate(state)


# -- rule 5: owner routing and lying peers ---------------------------------------------


@settings(max_examples=FEW)
@given(
    seed=st.integers(0, 2**16),
    serving=st.lists(st.frozensets(st.sampled_from(["s0", "s1", "s2"])), min_size=2, max_size=4),
    crash=st.booleans(),
    keys=st.lists(st.text(max_size=8) | st.integers(), min_size=1, max_size=20),
)
def test_owner_of_agrees_once_membership_is_stable(
    seed: int, serving: list[frozenset[str]], crash: bool, keys: list[Any]
) -> None:
    """Rule 5: once members and services are stable, every node elects the same
    owner for every key and service, a node that serves it; and call_owner reaches
    it (or raises UnknownService when nobody serves it)."""
    names = [f"n{i}" for i in range(len(serving))]

    async def main() -> None:
        async with Simulation(seed=seed) as sim:
            await start(sim, *names)
            for name, services in zip(names, serving, strict=True):
                for service in services:
                    sim.node(name).serve(service, echo)
            live = dict(zip(names, serving, strict=True))
            if crash and len(names) > 2:
                sim.crash(names[-1])
                del live[names[-1]]
                await sim.run_for(5)  # the failure timeout, and then some
            await sim.run_for(3)
            for service in ("s0", "s1", "s2"):
                expected = {n for n, s in live.items() if service in s}
                for key in keys:
                    owners = {sim.node(n).owner_of(key, service) for n in live}
                    assert len(owners) == 1, (key, service, owners)
                    (owner,) = owners
                    assert (owner is None) == (not expected)
                    assert owner is None or owner in expected
                    caller = sim.node(names[0])
                    if owner is None:
                        with pytest.raises(UnknownService):
                            await caller.call_owner(key, service, key)
                    else:
                        result = await caller.call_owner(key, service, key)
                        assert result.node == owner
                        assert result.value == {"caller": names[0], "payload": key}

    run(main)


CALL_FIELDS = st.sampled_from(["id", "service", "timeout", "incarnation", "payload", "shape"])
BAD = {
    "id": [-1, 2**64, "1", 1.0, None],
    "service": ["", "é", "x" * 101, 5, None, b"svc"],
    "timeout": [0, -1, 24 * 3600 * 1000 + 1, "1", 1.5, None],
    "incarnation": ["x" * 65, 3, None, b"inc"],
    "payload": ["text", 1, None, [1]],
}


@settings(max_examples=EXAMPLES)
@given(
    kind=st.sampled_from(["call", "reply", "services"]),
    field=CALL_FIELDS,
    pick=st.integers(0, 5),
    junk=st.binary(max_size=64),
)
def test_malformed_messages_are_rejected_counted_and_change_nothing(
    kind: str, field: str, pick: int, junk: bytes
) -> None:
    """Rule 5: a call, reply or services message with a field of the wrong type or
    range (or junk) is refused by decoding, counted in stats.rejected, runs
    nothing, answers nothing, changes no services or pending call, and the node
    goes on answering."""

    def bad(name: str) -> Any:
        values = BAD[name]
        return values[pick % len(values)]

    if kind == "call":
        fields: list[Any] = [7, "echo", 1000, "", b"\xf6"]
        where = ["id", "service", "timeout", "incarnation", "payload"]
    elif kind == "reply":
        fields = [7, "ok", b"\xf6"]
        where = ["id", "service", "payload"]  # the status stands in for a service
    else:
        fields = ["abcd", ["echo"]]
        where = ["incarnation", "service"]
    if field == "shape":
        message = cbor2.dumps([1, kind, *fields, "extra"]) if pick % 2 else junk
    elif field in where:
        position = where.index(field)
        if kind == "reply" and field == "service":
            fields[position] = ["nope", 5, None, ""][pick % 4]
        elif kind == "reply" and field == "payload":
            fields[position] = ["text for ok", 1, None, ["x"]][pick % 4]
        elif kind == "services" and field == "service":
            fields[position] = [[bad("service")], "echo", ["s"] * 65, None][pick % 4]
        elif kind == "services" and field == "incarnation":
            fields[position] = ["", "x" * 65, 3, None][pick % 4]
        else:
            fields[position] = bad(field)
        message = cbor2.dumps([1, kind, *fields])
    else:
        message = junk

    async def main() -> None:
        async with Simulation(seed=pick) as sim:
            a, b = await start(sim, "a", "b")
            peer = sim.network.transport("x")
            note = Noted()
            b.serve("echo", note)
            await sim.run_for(1)
            drain = replies_of(peer)
            before = (b.stats.rejected, b.services_of("a"), dict(b._calls._pending))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                peer.send("b", message)
                await sim.run_for(0.5)
                nursery.cancel_scope.cancel()
            try:
                peek_kind(message)
                valid_head = True
            except DecodeError:
                valid_head = False
            assert b.stats.rejected == before[0] + 1, (message, valid_head)
            assert (b.services_of("a"), dict(b._calls._pending)) == before[1:]
            assert b.services_of("x") == frozenset()
            assert note.runs == []
            assert drain.got == []  # type: ignore[attr-defined]
            assert await a.call("b", "echo", "still here") == "still here"

    run(main)


def test_a_payload_with_trailing_bytes_is_refused() -> None:
    async def main() -> None:
        async with Simulation(seed=6) as sim:
            (b,) = await start(sim, "b")
            peer = sim.network.transport("x")
            note = Noted()
            b.serve("echo", note)
            await sim.run_for(1)
            rejected = b.stats.rejected
            peer.send("b", encode_call(1, "echo", 1000, b.incarnation, b"\x01" + b"junk" * 100))
            await sim.run_for(0.5)
            assert (note.runs, b.stats.rejected) == ([], rejected + 1)

    run(main)


def test_forged_replies_answer_nobody_else_s_calls() -> None:
    """Rule 5: a peer replying with the ids of another peer's calls (or of calls
    never made) changes nothing; the real answer still arrives."""

    async def main() -> None:
        async with Simulation(seed=4) as sim:
            a, b = await start(sim, "a", "b")
            liar = sim.network.transport("x")
            release = trio.Event()

            async def wait(caller: str, payload: Any) -> Any:
                await release.wait()
                return "real"

            b.serve("wait", wait)
            await sim.run_for(1)
            async with trio.open_nursery() as nursery:
                answers: list[Any] = []

                async def one() -> None:
                    answers.append(await a.call("b", "wait", timeout_s=10))

                nursery.start_soon(one)
                await sim.run_for(0.5)
                (call_id,) = a._calls._pending
                forged: list[tuple[str, bytes | str]] = [
                    ("ok", cbor2.dumps("forged")),
                    ("error", "forged"),
                ]
                for status, body in forged:
                    liar.send("a", encode_reply(call_id, status, body))
                    liar.send("a", encode_reply(call_id + 1, status, body))
                await sim.run_for(0.5)
                assert not a._calls._pending[call_id].done.is_set()
                release.set()
            assert answers == ["real"]

    run(main)


def test_lying_service_announcements_are_typed_or_ignored() -> None:
    """Rule 5: services announced for an older incarnation are ignored; a service a
    peer announces but does not serve ends in UnknownService (typed), and its next
    periodic announcement corrects the others."""

    async def main() -> None:
        async with Simulation(seed=5) as sim:
            a, c = await start(sim, "a", "c")
            c.serve("real", echo)
            await sim.run_for(1)
            c._transport.send("a", encode_services("0ldincar", 9, frozenset({"ghost"})))
            await sim.run_for(0.1)
            assert a.services_of("c") == {"real"}
            # a stray node (no heartbeat) announcing services is not a candidate
            sim.network.transport("x").send("a", encode_services("abcd", 9, frozenset({"real"})))
            await sim.run_for(0.1)
            assert a.serving("real") == {"c"}
            c._transport.send(
                "a", encode_services(c.incarnation, c._services_seq, frozenset({"ghost"}))
            )
            await sim.run_for(0.1)
            assert a.serving("ghost") == {"c"}
            with pytest.raises(UnknownService):
                await a.call_owner("k", "ghost")
            await sim.run_for(3)  # told again every 4 heartbeats
            assert a.serving("ghost") == set()
            assert a.serving("real") == {"c"}

    run(main)


# -- rule 6: member events ------------------------------------------------------------

ACTIONS = st.sampled_from(
    ["crash", "restart", "partition", "heal", "serve", "unserve", "one_way", "wait"]
)


def check_events(initial: dict[str, MemberEvent], events: list[MemberEvent]) -> None:
    """Per peer, from what the watcher knew (``initial``, as an "up"): "up" only
    first or after "down"; "down" only after an up; a "restarted" only to another
    incarnation; "services" only for the incarnation last announced and only when
    its services change."""
    last = dict(initial)
    for event in events:
        before = last.get(event.node)
        if event.kind == "up":
            assert before is None or before.kind == "down", (before, event)
        elif event.kind == "down":
            assert before is not None, event
            assert before.kind != "down", (before, event)
            assert event.incarnation == before.incarnation
        elif event.kind == "restarted":
            assert before is not None, event
            assert before.kind != "down", (before, event)
            assert event.incarnation != before.incarnation, (before, event)
        else:
            assert event.kind == "services"
            assert before is not None, event
            assert before.kind != "down", (before, event)
            assert event.incarnation == before.incarnation, (before, event)
            assert event.services != before.services, (before, event)
        last[event.node] = event


@settings(max_examples=EXAMPLES)
@given(
    seed=st.integers(0, 2**16),
    actions=st.lists(st.tuples(ACTIONS, st.sampled_from(["b", "c"]), st.floats(0, 5)), max_size=8),
)
def test_member_events_are_well_formed_and_end_true(
    seed: int, actions: list[tuple[str, str, float]]
) -> None:
    """Rule 6: whatever crashes, restarts, partitions and service changes happen,
    a watcher's events are well formed per peer (see check_events), and once the
    network heals and settles, the last event of each live peer names its current
    incarnation and services."""

    async def main() -> None:
        async with Simulation(seed=seed) as sim:
            await start(sim, "a", "b", "c")
            events: list[MemberEvent] = []
            sim.node("a").watch_members(events.append)
            initial = {
                name: MemberEvent("up", name, sim.node(name).incarnation, frozenset())
                for name in ("b", "c")
            }
            net = sim.network
            unserve: dict[str, Callable[[], None]] = {}
            for action, name, wait_s in actions:
                if action == "crash" and name in sim.live:
                    sim.crash(name)
                elif action == "restart":
                    await sim.restart(name, ready=False)
                elif action == "partition":
                    net.partition({"a"}, {name})
                elif action == "heal":
                    net.heal()
                elif action == "one_way":
                    net.set_link(name, "a", loss=1.0, both_ways=False)
                elif action == "serve" and name in sim.live:
                    if "svc" not in sim.node(name).services():
                        unserve[name] = sim.node(name).serve("svc", echo)
                elif action == "unserve" and name in unserve:
                    unserve.pop(name)()
                await sim.run_for(wait_s)
            net.heal()
            for name in ("b", "c"):
                net.set_link(name, "a", loss=0.0)
                if name not in sim.live:
                    await sim.start(name, ready=False)
            await sim.run_for(20)  # refusals of a new incarnation last 3 s; then ready
            check_events(initial, events)
            for name in ("b", "c"):
                last = [initial[name], *(e for e in events if e.node == name)][-1]
                node = sim.node(name)
                assert last.kind != "down", (name, events)
                assert (last.incarnation, last.services) == (node.incarnation, node.services())

    run(main)


def test_a_crashed_incarnation_is_never_announced_up_again() -> None:
    async def main() -> None:
        async with Simulation(seed=2) as sim:
            await start(sim, "a", "b")
            events: list[MemberEvent] = []
            sim.node("a").watch_members(events.append)
            sim.network.set_link("b", "a", latency_ms=(1, 2000), both_ways=False)
            await sim.run_for(3)
            dead = sim.node("b").incarnation
            sim.crash("b")
            await sim.run_for(2)
            after = [(e.kind, e.incarnation) for e in events if e.node == "b"]
            assert after == [("down", dead)]

    run(main)


def test_services_events_follow_the_peers_real_services_under_reordering() -> None:
    async def main(seed: int) -> None:
        async with Simulation(seed=seed) as sim:
            a, b = await start(sim, "a", "b")
            events: list[MemberEvent] = []
            a.watch_members(events.append)
            sim.network.set_link("b", "a", latency_ms=(1, 100), both_ways=False)
            unserve = b.serve("svc", echo)
            await trio.sleep(0.001)
            unserve()  # serves nothing again, 1 ms later
            await sim.run_for(0.3)  # both announcements have landed
            assert a.services_of("b") == b.services() == frozenset(), seed
            assert [e.services for e in events][-1:] in ([], [frozenset()]), (seed, events)

    for seed in range(10):
        trio.run(main, seed, clock=trio.testing.MockClock(autojump_threshold=0))
