"""Membership: a CRDT (merge in any order gives one state) with majority rules."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from transport import Membership
from transport._membership import EXPELLED, LEFT, REPLACED

GENESIS = "a/1"
IDS = st.sampled_from(["a/1", "b/1", "b/2", "c/1", "c/2", "d/1", "e/1"])


def founded() -> Membership:
    m = Membership()
    assert m.found(GENESIS, "0/a/1")
    return m


def test_a_new_name_needs_a_majority_and_a_restart_needs_one_sponsor() -> None:
    m = founded()
    assert m.propose("b/1", "a/1")  # one member: its vote is a majority
    assert m.members() == {"a/1", "b/1"}
    assert m.propose("c/1", "a/1")
    assert "c/1" not in m.members()  # one vote of two is not a majority
    assert m.propose("c/1", "b/1")
    assert m.members() == {"a/1", "b/1", "c/1"}
    assert m.propose("b/2", "c/1")  # b restarted: replaced at once
    assert m.members() == {"a/1", "b/2", "c/1"}
    assert m.removed["b/1"] == REPLACED
    assert not m.propose("b/1", "a/1")  # removal is final


def test_a_minority_never_expels_and_an_even_split_expels_nobody() -> None:
    m = founded()
    for name, voters in (("b/1", ["a/1"]), ("c/1", ["a/1", "b/1"]), ("d/1", ["a/1", "b/1"])):
        for voter in voters:
            m.propose(name, voter)
    assert len(m.members()) == 4
    m.vote_expel("c/1", "a/1")
    m.vote_expel("c/1", "b/1")
    assert "c/1" in m.members()  # 2 of 4: an even split
    assert m.withdraw("c/1", "b/1")  # b hears c again
    m.vote_expel("c/1", "d/1")
    assert "c/1" in m.members()  # a and d: still 2 of 4
    m.vote_expel("c/1", "b/1")
    assert m.removed["c/1"] == EXPELLED
    assert m.propose("c/2", "a/1")  # a name the members knew comes back: one sponsor
    assert "c/2" in m.members()


def test_a_restart_not_vouched_for_yet_does_not_turn_half_into_a_majority() -> None:
    # Found by the cluster machine: a split {a, b} | {c, d} longer than the horizon
    # (c and d accuse a and b), a heals, a restarts and d hears a/2 first. With a/1
    # replaced and a/2 not vouched for, three members vote; c and d are two of them,
    # but only two of the four members: b must stay.
    m = founded()
    for name, voters in (("b/1", ["a/1"]), ("c/1", ["a/1", "b/1"]), ("d/1", ["a/1", "b/1"])):
        for voter in voters:
            m.propose(name, voter)
    assert m.vouched == {"a/1", "b/1", "c/1", "d/1"}
    for voter in ("c/1", "d/1"):
        for target in ("a/1", "b/1"):
            m.vote_expel(target, voter)
    assert m.propose("a/2", "d/1")
    assert m.members() == {"a/2", "b/1", "c/1", "d/1"}
    assert "a/2" not in m.vouched
    m.decide()  # as the next merge does
    assert "b/1" not in m.removed
    m.propose("a/2", "c/1")  # c hears it too: vouched for, it votes, and is no accuser
    assert "a/2" in m.vouched
    assert "b/1" in m.members()


def test_members_accusing_each_other_cancel_out() -> None:
    m = founded()
    for name, voters in (("b/1", ["a/1"]), ("c/1", ["a/1", "b/1"]), ("d/1", ["a/1", "b/1"])):
        for voter in voters:
            m.propose(name, voter)
    # A split into {a} | {c} | {b, d}: each side accuses what it cannot hear.
    for voter, targets in (("a/1", "bcd"), ("c/1", "abd"), ("b/1", "ac"), ("d/1", "ac")):
        for t in targets:
            m.vote_expel(f"{t}/1", voter)
    assert len(m.members()) == 4  # everyone stands accused: nobody's accusation counts


def test_leave_and_wire_round_trip() -> None:
    m = founded()
    m.propose("b/1", "a/1")
    assert m.leave("b/1")
    assert m.removed["b/1"] == LEFT
    again = Membership.from_wire(m.to_wire())
    assert again.digest() == m.digest()
    assert again.members() == m.members()


OPS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["propose", "expel", "withdraw", "second", "leave"]),
        IDS,
        IDS,
    ),
    max_size=40,
)


def _apply(m: Membership, op: str, target: str, voter: str) -> None:
    if op == "propose":
        m.propose(target, voter)
    elif op == "expel":
        m.vote_expel(target, voter)
    elif op == "withdraw":
        m.withdraw(target, voter)
    elif op == "second":
        m.second(voter)
    else:
        m.leave(voter)


@given(OPS, st.permutations([0, 1, 2]))
def test_replicas_merged_in_any_order_agree(
    ops: list[tuple[int, str, str, str]], order: list[int]
) -> None:
    replicas = [founded() for _ in range(3)]
    for index, op, target, voter in ops:
        _apply(replicas[index], op, target, voter)
        if op == "propose" and index == 0:  # some gossip midway
            replicas[1].merge(copy.deepcopy(replicas[0]))
    forward = founded()
    for i in range(3):
        forward.merge(copy.deepcopy(replicas[i]))
    shuffled = founded()
    for i in order:
        shuffled.merge(copy.deepcopy(replicas[i]))
    assert forward.members() == shuffled.members()
    assert forward.removed == shuffled.removed
    assert forward.digest() == shuffled.digest()  # the whole state, votes included
    twice = copy.deepcopy(forward)
    assert not twice.merge(copy.deepcopy(forward))  # idempotent
    assert twice.digest() == forward.digest()
