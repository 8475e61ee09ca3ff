"""A member that dies for good must leave: its accusations, or its missing vouch,
must not keep it (and its stability report) in the member set forever.

Found by the adversarial review of 2026-11-30 (after b0e1dde). Each test states the
scenario; the simulated ones run minutes of simulated time, which is cheap.
"""

from __future__ import annotations

from typing import Any

import pytest

from transport import Membership
from transport._membership import EXPELLED
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(120)

HORIZON_S = 20.0


def three() -> Membership:
    m = Membership()
    m.found("a/1", "0/a/1")
    m.propose("b/1", "a/1")
    m.propose("c/1", "a/1")
    m.propose("c/1", "b/1")
    assert m.members() == m.vouched == {"a/1", "b/1", "c/1"}
    return m


def test_a_dead_members_accusation_does_not_keep_it_a_member() -> None:
    """a accused c over a one-way link, then died for good: b and c, 2 of 3, accuse
    it, so a's accusation of c no longer counts, and a goes."""
    m = three()
    m.vote_expel("c/1", "a/1")  # a did not hear c for the horizon (c -> a cut), then died
    m.vote_expel("a/1", "b/1")  # b and c, connected, do not hear a for the horizon
    m.vote_expel("a/1", "c/1")
    assert "a/1" not in m.members(), "b and c, 2 of 3, connected, never expel the dead a"


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="adversarial review: a died for good, c restarted before a's horizon: c/2 "
    "(sponsored by b alone) is never vouched for, so a and b are the voters and b's "
    "accusation is 1 of 2: a is never expelled",
)
def test_a_dead_member_goes_when_another_restarts_before_its_horizon() -> None:
    m = three()
    assert m.propose("c/2", "b/1")  # c restarted; a is dead and never hears it
    m.vote_expel("a/1", "b/1")
    m.vote_expel("a/1", "c/2")
    assert "a/1" not in m.members(), "b and c/2, 2 of 3, connected, never expel the dead a"


Outcome = tuple[dict[str, list[str]], dict[str, int]]


def test_a_member_dead_since_an_even_split_goes_after_the_heal() -> None:
    """A split {a, b} | {c, d} longer than the horizon, a dies before the heal: its
    accusations of c and d stand for good. b, c and d accuse it, 3 of 4: its own
    accusations no longer shield c and d, and it goes."""
    m = three()
    m.propose("d/1", "a/1")
    m.propose("d/1", "b/1")
    assert m.vouched == {"a/1", "b/1", "c/1", "d/1"}
    for voter, targets in (("a/1", "cd"), ("b/1", "cd"), ("c/1", "ab"), ("d/1", "ab")):
        for target in targets:
            m.vote_expel(f"{target}/1", voter)
    assert m.members() == {"a/1", "b/1", "c/1", "d/1"}  # the halves cancel out
    # The heal, a dead: b, c and d hear each other again and withdraw.
    for voter, target in (("b/1", "c/1"), ("b/1", "d/1"), ("c/1", "b/1"), ("d/1", "b/1")):
        assert m.withdraw(target, voter)
    m.vote_expel("a/1", "b/1")  # b does not hear a for the horizon
    assert "a/1" not in m.members(), "b, c and d, 3 of 4, connected, never expel the dead a"


async def _write_delete_wait(sim: Simulation, live: list[str], minutes: int) -> Outcome:
    """Write and delete a key and run ``minutes`` of simulated time: each live node's
    members and tombstone count then."""
    sim.node(live[0]).map("m").set("k", 1)
    await sim.run_for(1)
    sim.node(live[0]).map("m").delete("k")
    await sim.run_for(60.0 * minutes)
    members = {n: sorted(sim.node(n)._membership.members()) for n in live}
    return members, {n: sim.node(n)._state.tombstone_count for n in live}


def _check_collected(outcome: Outcome, live: list[str]) -> None:
    """Checked outside the trio run, so that a failure is an AssertionError."""
    members, tombstones = outcome
    assert all(all(m.split("/")[0] in live for m in ms) for ms in members.values()), (
        f"the dead member is still a member after minutes: {members}"
    )
    assert not any(tombstones.values()), f"tombstones never collected: {tombstones}"


def test_a_dead_accuser_is_expelled_and_tombstones_are_collected(sim_run: Any) -> None:
    """3 nodes, n2 -> n0 cut one way for longer than the horizon (n0 accuses n2),
    then n0 dies for good: n1 and n2 expel it, and collect tombstones again."""

    async def main() -> tuple[frozenset[str], Outcome]:
        async with Simulation(
            seed=1, sync_interval_s=1.0, tombstone_horizon_s=HORIZON_S, max_offset_ms=500
        ) as sim:
            await sim.start("n0", "n1", "n2")
            await sim.run_for(5)
            sim.network.set_link("n2", "n0", loss=1.0, both_ways=False)
            await sim.run_for(HORIZON_S * 1.5)
            accused = sim.node("n1")._membership.accused_by(sim.node("n0")._me)
            sim.crash("n0")
            return accused, await _write_delete_wait(sim, ["n1", "n2"], minutes=10)

    accused, outcome = sim_run(main)
    assert accused  # the scenario: n0 accused n2 before it died
    _check_collected(outcome, ["n1", "n2"])


async def _n0_dies_and_n2_restarts(sim: Simulation) -> None:
    """Three nodes; n0 dies for good, and n2 restarts 4 s later (within n0's horizon)."""
    await sim.start("n0", "n1", "n2")
    await sim.run_for(5)
    sim.crash("n0")
    await sim.run_for(4)
    sim.crash("n2")
    await sim.start("n2", ready=False)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="adversarial review: 3 nodes, n0 dies for good and n2 restarts 4 s later: "
    "n2's new incarnation is never vouched for (n1 alone sponsors it), n0 stays a "
    "member for good and no tombstone is ever collected",
)
def test_a_dead_member_is_expelled_when_another_restarted_meanwhile(sim_run: Any) -> None:
    async def main() -> Outcome:
        async with Simulation(
            seed=1, sync_interval_s=1.0, tombstone_horizon_s=HORIZON_S, max_offset_ms=500
        ) as sim:
            await _n0_dies_and_n2_restarts(sim)
            return await _write_delete_wait(sim, ["n1", "n2"], minutes=10)

    _check_collected(sim_run(main), ["n1", "n2"])


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="adversarial review: 3 nodes, n0 dies for good and n2 restarts 4 s later; "
    "a new node n3 is never admitted (a new name needs 2 of the voters n0 and n1, and "
    "n0 is dead): it is never ready",
)
def test_a_new_node_joins_after_one_died_and_another_restarted(sim_run: Any) -> None:
    async def main() -> dict[str, str | None]:
        async with Simulation(
            seed=1, sync_interval_s=1.0, tombstone_horizon_s=HORIZON_S, max_offset_ms=500
        ) as sim:
            await _n0_dies_and_n2_restarts(sim)
            await sim.run_for(120)
            await sim.start("n3", ready=False)
            await sim.run_for(300)
            return {n: sim.node(n).not_ready_reason() for n in sim.live}

    reasons = sim_run(main)
    assert all(r is None for r in reasons.values()), reasons


def five() -> Membership:
    m = three()
    for name in ("d/1", "e/1"):
        for voter in sorted(m.members()):
            m.propose(name, voter)
    assert m.members() == m.vouched == {"a/1", "b/1", "c/1", "d/1", "e/1"}
    return m


def _split(m: Membership, *sides: str) -> None:
    """Every member of each side accuses every member of the other sides."""
    for side in sides:
        for voter in side:
            for other in sides:
                for target in other if other != side else "":
                    m.vote_expel(f"{target}/1", f"{voter}/1")


def test_a_split_into_three_still_cancels_out_in_every_order_merged() -> None:
    """Members accused by a majority lose their shield, but in a split into three
    every member is accused by a majority: nobody is expelled, whichever sides'
    accusations a replica has merged so far."""
    sides = ("ab", "cd", "e")
    for merged in (sides, sides[:2], sides[1:], (sides[0], sides[2])):
        m = five()
        for side in merged:
            _split(m, side, *[s for s in sides if s != side])
        assert len(m.members()) == 5, merged


def test_an_even_split_with_a_member_heard_by_both_halves_expels_nobody() -> None:
    """{a, b} | {c, d}, e hearing both: a, b, c, d are each accused by 2 of 5."""
    m = five()
    _split(m, "ab", "cd")
    assert len(m.members()) == 5


def test_the_minority_of_a_split_goes_and_its_accusations_do_not_save_it() -> None:
    m = five()
    _split(m, "ab", "cde")
    assert m.members() == {"c/1", "d/1", "e/1"}
    assert all(m.removed[f"{x}/1"] == EXPELLED for x in "ab")


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="adversarial review: one lying member (it accuses members it hears, which "
    "only it can withdraw) keeps a dead member in the member set for good: its "
    "targets are 'accused', and their accusations of the dead member do not count. "
    "A liveness attack (tombstones are never collected), not a safety one",
)
def test_one_lying_member_cannot_keep_a_dead_member_for_good() -> None:
    m = three()
    m.propose("d/1", "a/1")
    m.propose("d/1", "b/1")
    assert m.vouched == {"a/1", "b/1", "c/1", "d/1"}
    # a lies: it accuses b and c, which it hears. Then d dies, and a, b and c do
    # not hear it for the horizon.
    m.vote_expel("b/1", "a/1")
    m.vote_expel("c/1", "a/1")
    for voter in ("a/1", "b/1", "c/1"):
        m.vote_expel("d/1", voter)
    assert "d/1" not in m.members(), "a, b and c, 3 of 4, never expel the dead d"


def test_a_minority_does_not_expel_the_majority_with_a_withdrawn_accusation(
    sim_run: Any,
) -> None:
    """c accused a over a one-way link cut (1 of 3); b is split off just as the link
    heals, so b never learns that c withdrew. Alone, b accuses a: c's accusation is
    stale, and b, which no longer hears c, does not count it: only a and c expel,
    and they expel b. Found on b0e1dde: there, b's view expelled a, so both sides expelled each
    other."""

    async def main() -> tuple[dict[str, int], dict[str, str | None]]:
        async with Simulation(
            seed=1, sync_interval_s=1.0, tombstone_horizon_s=HORIZON_S, max_offset_ms=500
        ) as sim:
            net = sim.network
            await sim.start("a", "b", "c")
            await sim.run_for(5)
            net.set_link("a", "c", loss=1.0, both_ways=False)  # c stops hearing a
            await sim.run_for(HORIZON_S + 3)  # c accuses a, and b learns it
            net.set_link("a", "c", loss=0.0, both_ways=False)  # c hears a again...
            net.partition({"b"}, {"a", "c"})  # ...but b is cut off at once
            await sim.run_for(HORIZON_S + 5)
            net.heal()
            await sim.run_for(30)
            drops = {n: sim.node(n).stats.state_drops for n in sim.live}
            return drops, {n: sim.node(n).not_ready_reason() for n in sim.live}

    drops, reasons = sim_run(main)
    assert all(r is None for r in reasons.values()), reasons
    assert drops["b"] >= 1  # the minority was expelled, as it should be
    assert drops["c"] == 0, drops
    assert drops["a"] == 0, f"the majority side lost a member: {drops}"


def test_a_replica_does_not_count_accusers_it_no_longer_hears() -> None:
    """The safety case above on one replica: b holds c's accusation of a, but no
    longer hears c (it may have withdrawn since): b's own accusation is 1 of 3."""
    m = three()
    m.vote_expel("a/1", "c/1")
    m.silent = lambda member: member in ("a/1", "c/1")
    m.vote_expel("a/1", "b/1")
    assert "a/1" in m.members()
    # Not state: a replica that hears c (as b does once the split heals, if c did not
    # withdraw) decides on the same merged state, and the silence is never sent.
    other = Membership.from_wire(m.to_wire())
    assert other == m
    assert other.silent is None
    other.decide()
    assert "a/1" not in other.members()
