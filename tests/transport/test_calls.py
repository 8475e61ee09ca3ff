"""Calls between nodes (`Node.serve`, `Node.call`, `Node.call_owner`) in the simulator:
answers, typed errors, limits, failure while in flight, services and member events."""

from typing import Any

import pytest
import trio

from transport import (
    CallTimeout,
    MemberEvent,
    Overloaded,
    PeerUnavailable,
    RemoteError,
    UnknownService,
)
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


async def echo(caller: str, payload: Any) -> Any:
    return {"caller": caller, "payload": payload}


def test_a_call_is_answered_and_errors_are_typed(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            a, b = sim.node("a"), sim.node("b")

            async def fails(caller: str, payload: Any) -> Any:
                raise KeyError("nope")

            b.serve("echo", echo)
            b.serve("fails", fails)
            answer = await a.call("b", "echo", [1, "two", {"three": 3.0}])
            assert answer == {"caller": "a", "payload": [1, "two", {"three": 3.0}]}
            with pytest.raises(UnknownService):  # a serves nothing itself
                await a.call("a", "echo", 1)
            with pytest.raises(RemoteError, match="KeyError: 'nope'"):
                await a.call("b", "fails")
            with pytest.raises(UnknownService):
                await a.call("b", "missing")
            with pytest.raises(PeerUnavailable):
                await a.call("nobody", "echo")
            with pytest.raises(TypeError):
                await a.call("b", "echo", {1.5})
            with pytest.raises(ValueError, match="bytes, over"):
                await a.call("b", "echo", "x" * a.max_message_bytes)
            assert await b.call("b", "echo", "here") == {"caller": "b", "payload": "here"}
            # Counted by outcome, for /metrics (payloads refused before sending are not).
            assert a.stats.calls_out == {
                "ok": 1,
                "error": 1,
                "unknown_service": 2,
                "unavailable": 1,
            }
            assert b.stats.calls_in == {"ok": 1, "error": 1, "unknown_service": 1}

    sim_run(main)


def test_a_slow_handler_times_out_and_sheds_load(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=2) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            a, b = sim.node("a"), sim.node("b")
            started: list[float] = []
            cancelled: list[float] = []

            async def slow(caller: str, payload: Any) -> Any:
                started.append(trio.current_time())
                try:
                    await trio.sleep(10)
                except trio.Cancelled:
                    cancelled.append(trio.current_time())
                    raise
                return "late"

            b.serve("slow", slow, max_concurrent=2)
            results: list[BaseException] = []

            async def one() -> None:
                try:
                    await a.call("b", "slow", timeout_s=1.0)
                except (CallTimeout, Overloaded) as exc:
                    results.append(exc)

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one)
            assert (
                sorted(type(r).__name__ for r in results)
                == ["CallTimeout"] * 2 + ["Overloaded"] * 3
            )
            assert len(started) == 2
            await sim.run_for(0.1)  # the callee's deadline: one network hop later
            # The callee gave up on each handler once the caller's timeout passed there.
            assert len(cancelled) == 2
            assert all(c - s <= 1.0 + 1e-6 for s, c in zip(started, cancelled, strict=True))

    sim_run(main)


def test_calls_in_flight_fail_fast_when_the_peer_goes_down_or_restarts(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=3) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            a = sim.node("a")

            async def forever(caller: str, payload: Any) -> Any:
                await trio.sleep_forever()

            sim.node("b").serve("forever", forever)
            failed: list[tuple[float, BaseException]] = []

            async def one() -> None:
                started = trio.current_time()
                try:
                    await a.call("b", "forever", timeout_s=30)
                except PeerUnavailable as exc:
                    failed.append((trio.current_time() - started, exc))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(one)
                await sim.run_for(0.5)
                sim.crash("b")
            ((took, error),) = failed
            assert took < 5  # the link drops at once here; at most the failure timeout
            assert "down" in str(error)

    sim_run(main)


def test_a_duplicated_call_runs_its_handler_once(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=4) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            runs: list[Any] = []

            async def count(caller: str, payload: Any) -> Any:
                runs.append(payload)
                return len(runs)

            sim.node("b").serve("count", count)
            sim.network.set_link("a", "b", duplication=1.0)
            for i in range(5):
                assert await sim.node("a").call("b", "count", i) == i + 1
            assert runs == [0, 1, 2, 3, 4]

    sim_run(main)


def test_call_owner_routes_to_one_serving_member_and_events_say_who(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=5) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            events: list[MemberEvent] = []
            sim.node("a").watch_members(events.append)
            for name in ("b", "c"):  # a serves nothing: never elected
                sim.node(name).serve("work", echo)
            await sim.run_for(3)
            assert sim.node("a").serving("work") == {"b", "c"}
            assert [(e.kind, e.node, e.services) for e in events] == [
                ("services", "b", frozenset({"work"})),
                ("services", "c", frozenset({"work"})),
            ]
            owners = {}
            for key in range(40):
                result = await sim.node("a").call_owner(f"req-{key}", "work", key)
                assert result.value == {"caller": "a", "payload": key}
                owners[key] = result.node
                for name in ("b", "c"):  # every node elects the same owner
                    assert sim.node(name).owner_of(f"req-{key}", "work") == result.node
            assert set(owners.values()) == {"b", "c"}
            with pytest.raises(UnknownService, match="no live member serves it"):
                await sim.node("a").call_owner("k", "nothing")
            sim.crash("c")
            await sim.run_for(5)
            assert (events[-1].kind, events[-1].node) == ("down", "c")
            for key, owner in owners.items():  # only c's keys move
                moved = await sim.node("a").call_owner(f"req-{key}", "work", key)
                assert moved.node == "b"
                if owner == "b":
                    assert moved.node == owner
            await sim.restart("c")
            sim.node("c").serve("work", echo)
            await sim.run_for(5)
            assert (events[-2].kind, events[-2].node) == ("up", "c")
            assert sim.node("a").serving("work") == {"b", "c"}

    sim_run(main)


def test_a_call_to_this_nodes_own_service_times_out_like_a_remote_one(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            a = sim.node("a")

            async def uncancellable(caller: str, payload: Any) -> Any:
                with trio.CancelScope(shield=True):  # as trio.to_thread.run_sync does
                    await trio.sleep(10)
                return "late"

            a.serve("slow", uncancellable)
            started = trio.current_time()
            with pytest.raises(CallTimeout):  # from b: on time
                await sim.node("b").call("a", "slow", timeout_s=1)
            assert trio.current_time() - started < 1.1
            started = trio.current_time()
            with pytest.raises(CallTimeout):  # from a itself: "late", after 10 s
                await a.call("a", "slow", timeout_s=1)
            assert trio.current_time() - started < 1.1

    sim_run(main)
