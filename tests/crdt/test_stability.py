"""Stability: the stable point never passes an entry some member lacks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crdt import Stability
from crdt._stability import ZERO, membership_epoch

MEMBERS = ("a/1", "b/1", "c/1")


def test_nothing_is_stable_until_every_member_reported() -> None:
    s = Stability("a/1", MEMBERS)
    s.report((10, 0))
    assert s.stable() is None
    epoch = s.epoch
    assert s.merge_reports([ZERO, (7, 0), (8, 0)], epoch)
    assert s.stable() is None  # a's own report is (0, 0): it covers nobody yet
    assert s.covered("b/1", (9, 0), [(6, 0), (9, 0), (5, 0)], epoch)
    s.report((11, 0))  # a: min(own clock 11, b at 9, c at 5) = 5
    assert s.stable() == (5, 0)


def test_another_epoch_is_ignored_and_a_reset_forgets() -> None:
    s = Stability("a/1", MEMBERS)
    other = membership_epoch(["a/1", "b/1"])
    assert not s.covered("b/1", (9, 0), [(9, 0)] * 3, other)
    assert not s.merge_reports([(9, 0)] * 3, other)
    assert not s.covered("b/1", (9, 0), [(9, 0)] * 2, s.epoch)  # wrong length
    assert not s.covered("z/1", (9, 0), [(9, 0)] * 3, s.epoch)  # not a member
    assert s.covered("b/1", (9, 0), [(9, 0)] * 3, s.epoch)
    assert s.coverage_of("b/1") == (9, 0)
    assert not s.reset(reversed(MEMBERS))  # same set: nothing forgotten
    assert s.coverage_of("b/1") == (9, 0)
    assert s.reset(["a/1", "b/2", "c/1"])  # b restarted: a new epoch
    assert s.coverage_of("b/2") == ZERO
    assert s.stable() is None


def test_a_non_member_computes_nothing() -> None:
    s = Stability("z/1", MEMBERS)
    s.report((10, 0))
    s.merge_reports([(5, 0)] * 3, s.epoch)
    assert s.stable() is None


# A model: replicas hold sets of entries (timestamp, writer); a heartbeat from i to j
# carries i's clock, vectors and state; j records coverage only when its state equals
# i's. Links are arbitrary (any pair, any order), so transitivity is exercised.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.just("beat"), st.integers(0, 2), st.integers(0, 2)),
    ),
    max_size=80,
)


@given(OPS)
def test_the_stable_point_is_held_by_every_member(ops: list[tuple[str, int, int]]) -> None:
    names = list(MEMBERS)
    clocks = [0, 0, 0]
    states: list[set[tuple[int, int]]] = [set(), set(), set()]
    ever: set[tuple[int, int]] = set()
    replicas = [Stability(name, names) for name in names]
    epoch = replicas[0].epoch

    def tick(i: int, at_least: int = 0) -> int:
        clocks[i] = max(clocks[i], at_least) + 1
        return clocks[i]

    for op, i, j in ops:
        if op == "write":
            entry = (tick(i), i)
            states[i].add(entry)
            ever.add(entry)
        elif op == "sync":  # j pulls i's state (anti-entropy), through its clock
            states[j] |= states[i]
            tick(j, max((t for t, _ in states[i]), default=0))
        elif i != j:  # a heartbeat from i to j
            now = (tick(i), 0)
            coverage, reports = replicas[i].report(now)
            tick(j, now[0])
            replicas[j].merge_reports(reports, epoch)
            if states[j] == states[i]:
                replicas[j].covered(names[i], now, coverage, epoch)
        for replica in replicas:
            stable = replica.stable()
            if stable is None:
                continue
            for entry in ever:
                if entry[0] <= stable[0]:
                    assert all(entry in state for state in states), (entry, stable)
            # No member can still write at or below the stable point.
            assert all(clock >= stable[0] for clock in clocks)
