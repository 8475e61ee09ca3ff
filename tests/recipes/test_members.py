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


async def refuse_writes(sim: Simulation, name: str) -> None:
    """Step ``name``'s clock forward: it refuses writes until its peers tell it
    whether the step is right (`Node.not_ready_reason`)."""
    sim.set_skew(name, 60_000)
    await sim.run_for(0.001)
    assert not sim.node(name).ready


async def take_writes(sim: Simulation, name: str) -> None:
    """Step ``name``'s clock back to the time it kept: it takes writes at once."""
    sim.set_skew(name, 0)
    await sim.run_for(0.001)
    assert sim.node(name).ready


def test_a_refused_withdrawal_is_retried_once_the_node_takes_writes(sim_run: Any) -> None:
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

                await refuse_writes(sim, "c")
                served["c"].stop()  # c stops serving, but cannot delete its announcement
                await sim.run_for(0.01)
                assert "c" in sim.node("c").map("cache.members")
                await take_writes(sim, "c")  # c keeps running, a live member again
                await sim.run_for(2)  # refresh_s is 1 s
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("ab"))
                assert "c" not in sim.node("a").map("cache.members")
                assert not sets["c"]._retrying  # the retry ended with the withdrawal
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_a_node_that_serves_again_is_not_withdrawn_by_a_stale_retry(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=64) as sim:
            await sim.start("a", "b", "c")
            sets = {n: MemberSet(sim.node(n), "cache") for n in sim.live}
            async with trio.open_nursery() as nursery:
                served = {n: Served(nursery, s) for n, s in sets.items()}
                for s in served.values():
                    await s.start()
                await sim.run_for(0.1)

                await refuse_writes(sim, "c")
                served["c"].stop()  # the withdrawal is refused: retried
                await sim.run_for(0.01)
                await served["c"].start()  # c serves again before it takes writes
                writes = sim.node("c").stats.writes
                await take_writes(sim, "c")
                await sim.run_for(5)
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("abc"))
                assert sim.node("c").stats.writes == writes  # not withdrawn, then restored

                await refuse_writes(sim, "c")  # stopped again while refusing writes
                served["c"].stop()
                await sim.run_for(0.01)
                assert "c" in sim.node("a").map("cache.members")
                await take_writes(sim, "c")
                await sim.run_for(2)
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("ab"))

                await refuse_writes(sim, "c")  # it serves again while it refuses writes,
                await served["c"].start()  # so announces once it takes them
                await sim.run_for(0.01)
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("ab"))
                await take_writes(sim, "c")
                await sim.run_for(2)
                assert views(sim, sets) == dict.fromkeys("abc", frozenset("abc"))
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_a_pending_withdrawal_ends_when_the_node_stops_or_leaves(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=65) as sim:
            await sim.start("a", "b", "c", "d")
            sets = {n: MemberSet(sim.node(n), "cache") for n in sim.live}
            async with trio.open_nursery() as nursery:
                served = {n: Served(nursery, s) for n, s in sets.items()}
                for s in served.values():
                    await s.start()
                await sim.run_for(0.1)

                await refuse_writes(sim, "c")
                served["c"].stop()
                await sim.run_for(0.01)
                assert sets["c"]._retrying
                sim.crash("c")  # c's announcement names no live member any more
                await sim.run_for(2)
                assert not sets["c"]._retrying

                node = sim.node("d")
                await refuse_writes(sim, "d")
                served["d"].stop()
                await sim.run_for(0.01)
                assert sets["d"]._retrying
                await node.drain()  # d leaves: its announcement names no member
                await sim.run_for(2)
                assert not sets["d"]._retrying
                await sim.run_for(3)  # the others see c down
                assert sets["a"].serving() == sets["b"].serving() == {"a", "b"}
                nursery.cancel_scope.cancel()

    sim_run(main)
