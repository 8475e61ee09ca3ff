"""MemberSet: which nodes serve a recipe, through starts, stops, crashes and restarts."""

from typing import Any

import pytest
import trio

from transport.recipes import MemberSet
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


def views(sim: Simulation, sets: dict[str, MemberSet]) -> dict[str, frozenset[str]]:
    return {n: s.serving() for n, s in sets.items() if n in sim.live}


def test_serving_follows_announcements_withdrawals_crashes_and_restarts(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=61) as sim:
            await sim.start("a", "b", "c", "d")
            sets = {n: MemberSet(sim.node(n), "cache") for n in sim.live}
            assert views(sim, sets) == dict.fromkeys("abcd", frozenset())
            assert sets["a"].owner("k") is None  # nobody serves: no owner
            async with trio.open_nursery() as nursery:
                scopes = {}
                for name in "abc":  # d never serves
                    scopes[name] = trio.CancelScope()

                    async def run(members: MemberSet, scope: trio.CancelScope) -> None:
                        with scope:
                            await members.run()

                    nursery.start_soon(run, sets[name], scopes[name])
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("abc"))
                assert sim.node("d").map("cache.members").get("a") == sim.node("a").incarnation

                scopes["c"].cancel()  # c stops serving: it withdraws at once
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("ab"))
                assert "c" not in sim.node("a").map("cache.members")

                sim.crash("b")  # its announcement stays, but b is not live
                await sim.run_for(4)  # the failure detector takes 3 s at most
                assert views(sim, sets) == dict.fromkeys("acd", frozenset("a"))
                assert "b" in sim.node("a").map("cache.members")

                old = sim.node("a").map("cache.members").get("b")
                await sim.restart("b")  # a new incarnation that does not serve (yet)
                sets["b"] = MemberSet(sim.node("b"), "cache")
                await sim.run_for(3)  # a collects b's stale announcement
                assert sim.node("b").incarnation != old
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("a"))
                assert "b" not in sim.node("d").map("cache.members")

                await nursery.start(sets["b"].run)
                await sim.run_for(0.1)
                assert views(sim, sets) == dict.fromkeys("abcd", frozenset("ab"))
                owners = {sets["d"].owner(f"k{i}") for i in range(50)}
                assert owners == {"a", "b"}
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_an_overwritten_announcement_is_restored(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=62) as sim:
            await sim.start("a", "b")
            members = MemberSet(sim.node("a"), "cache")
            async with trio.open_nursery() as nursery:
                await nursery.start(members.run)
                await sim.run_for(0.1)
                sim.node("b").map("cache.members").delete("a")  # as a collector racing a restart
                await sim.run_for(0.1)
                assert MemberSet(sim.node("b"), "cache").serving() == {"a"}
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="refresh_s"):
        MemberSet(object(), "cache", refresh_s=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="non-empty str"):
        MemberSet(object(), "", refresh_s=1)  # type: ignore[arg-type]
