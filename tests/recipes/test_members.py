"""MemberSet: which nodes serve a recipe's service, through starts, stops, crashes,
restarts and times the node refuses writes."""

from typing import Any

import pytest
import trio

from transport.recipes import MemberSet
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


def views(sim: Simulation, sets: dict[str, MemberSet]) -> dict[str, frozenset[str]]:
    return {n: s.serving() for n, s in sets.items() if n in sim.live}


class Served:
    """A member set's `run` in a cancel scope of its own, so a test can stop it
    and start it again."""

    def __init__(self, nursery: trio.Nursery, members: MemberSet) -> None:
        self.nursery, self.members = nursery, members
        self.scope = trio.CancelScope()

    async def start(self) -> None:
        self.scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with self.scope:
                await self.members.run(task_status=task_status)

        await self.nursery.start(run)

    def stop(self) -> None:
        self.scope.cancel()


def test_serving_follows_starts_stops_crashes_and_restarts(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=61) as sim:
            await sim.start("a", "b", "c", "d")
            sets = {n: MemberSet(sim.node(n), "cache") for n in sim.live}
            assert views(sim, sets) == dict.fromkeys("abcd", frozenset())
            assert sets["a"].owner("k") is None  # nobody serves: no owner
            async with trio.open_nursery() as nursery:
                served = {n: Served(nursery, sets[n]) for n in "abc"}  # d never serves
                for s in served.values():
                    await s.start()
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("abc"))
                assert sim.node("d").services_of("a") == {"cache"}

                served["c"].stop()  # c stops serving: its peers hear it at once
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("ab"))

                await served["c"].start()
                sim.crash("c")  # it served, but is not live
                await sim.run_for(4)  # the failure detector takes 3 s at most
                assert views(sim, sets) == dict.fromkeys("abd", frozenset("ab"))

                await sim.restart("c")  # a new incarnation that does not serve (yet)
                sets["c"] = MemberSet(sim.node("c"), "cache")
                await sim.run_for(3)
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("ab"))

                await Served(nursery, sets["c"]).start()
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("abc"))
                owners = {sets["d"].owner(f"k{i}") for i in range(50)}
                assert owners == {"a", "b", "c"}
                assert all(sets["d"].owner(f"k{i}") == sets["a"].owner(f"k{i}") for i in range(50))
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_a_node_starts_and_stops_serving_while_it_refuses_writes(sim_run: Any) -> None:
    """Serving is told in a message of its own, not written to a map: a node that
    refuses writes (an unconfirmed clock step) starts and stops serving at once."""

    async def main() -> None:
        async with Simulation(seed=63) as sim:
            await sim.start("a", "b", "c")
            sets = {n: MemberSet(sim.node(n), "cache") for n in sim.live}
            async with trio.open_nursery() as nursery:
                served = {n: Served(nursery, s) for n, s in sets.items()}
                for s in served.values():
                    await s.start()
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("abc"))
                sim.set_skew("c", 60_000)
                await sim.run_for(0.001)
                assert not sim.node("c").ready
                served["c"].stop()
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("ab"))
                await served["c"].start()
                await sim.run_for(0.1)
                assert not sim.node("c").ready
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("abc"))
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_a_handler_answers_calls_and_one_service_is_served_once(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=64) as sim:
            await sim.start("a", "b")

            async def double(caller: str, payload: Any) -> Any:
                return payload * 2

            members = MemberSet(sim.node("b"), "double", handler=double)
            async with trio.open_nursery() as nursery:
                await nursery.start(members.run)
                await sim.run_for(0.1)
                assert (await sim.node("a").call_owner("k", "double", 21)).value == 42
                with pytest.raises(ValueError, match="served already"):
                    await MemberSet(sim.node("b"), "double").run()
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_the_deprecated_announcement_methods_serve_and_stop_serving(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=65) as sim:
            await sim.start("a", "b")
            members = MemberSet(sim.node("a"), "cache")
            with pytest.deprecated_call():
                assert members.announce()
            await sim.run_for(0.1)
            assert MemberSet(sim.node("b"), "cache").serving() == {"a"}
            with pytest.deprecated_call():
                assert members.collect() == 0
            with pytest.deprecated_call():
                assert members.withdraw()
            await sim.run_for(0.1)
            assert MemberSet(sim.node("b"), "cache").serving() == frozenset()

    sim_run(main)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="refresh_s"):
        MemberSet(object(), "cache", refresh_s=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="service name"):
        MemberSet(object(), "")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str"):
        MemberSet(object(), 7)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrent"):
        MemberSet(object(), "cache", max_concurrent=0)  # type: ignore[arg-type]
