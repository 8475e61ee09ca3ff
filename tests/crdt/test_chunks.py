import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt import (
    DEPTH,
    ROOT,
    Coverage,
    LWWMap,
    SyncStep,
    encode_sync_step,
    split_step,
    sync_pull,
    sync_respond,
    sync_start,
)
from crdt.testing import lww_maps
from hlc import Timestamp


def big_map(n: int, value_bytes: int = 20) -> LWWMap:
    m = LWWMap()
    for i in range(n):
        m.set(f"key:{i}", "v" * value_bytes, Timestamp(1_000 + i, 0, "a"))
    return m


def deliver_all(receiver: LWWMap, steps: list[SyncStep]) -> list[SyncStep]:
    answers = []
    for step in steps:
        answer, _ = sync_respond(receiver, step)
        if not answer.done:
            answers.append(answer)
    return answers


def test_a_small_step_is_left_whole() -> None:
    step = sync_start(big_map(10))
    assert split_step(step, 10_000) == [step]


def test_a_pull_answer_is_cut_to_the_limit_and_covers_everything() -> None:
    source, joiner = big_map(3_000), LWWMap()
    answer, _ = sync_respond(source, sync_pull())
    parts = split_step(answer, 8_192)
    assert len(parts) > 1
    assert all(len(encode_sync_step(p)) <= 8_192 for p in parts)
    coverage = Coverage()
    for part in parts:
        coverage.add(part.complete)
    assert coverage.complete
    assert deliver_all(joiner, parts) == []  # the joiner had nothing to send back
    assert joiner == source


def test_empty_children_are_marked_complete_too() -> None:
    source = big_map(40, value_bytes=100)  # over 1 KiB: refined into 16 children
    answer, _ = sync_respond(source, sync_pull())
    parts = split_step(answer, 1024)
    assert len(parts) > 1
    coverage = Coverage()
    for part in parts:
        coverage.add(part.complete)
    assert coverage.complete
    assert ROOT not in coverage._covered


def test_limits_under_one_kib_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        split_step(sync_start(LWWMap()), 1023)


@given(
    lww_maps(max_size=30),
    lww_maps(max_size=30),
    st.integers(1024, 4096),
    st.integers(0, 60),
)
def test_cut_steps_still_bring_replicas_to_equality(
    a: LWWMap, b: LWWMap, limit: int, extra: int
) -> None:
    for i in range(extra):  # some bulk on one side, so that steps need cutting
        a.set(f"bulk:{i}", "x" * 100, Timestamp(i, 0, "a"))
    expected = a.copy()
    expected.merge(b)
    sides = (a, b)
    pending = [(1, sync_start(a))]
    for _ in range(10_000):
        if not pending:
            break
        turn, step = pending.pop()
        for part in split_step(step, limit):
            assert len(encode_sync_step(part)) <= limit  # the size bound holds
            answer, _ = sync_respond(sides[turn], part)
            if not answer.done:
                pending.append((turn ^ 1, answer))
    assert not pending
    assert a == b == expected


def test_an_uncuttable_step_is_returned_whole() -> None:
    m = LWWMap()
    m.set("big", "x" * 5_000, Timestamp(1, 0, "a"))
    answer, _ = sync_respond(m, sync_pull())
    parts = split_step(answer, 2_048)
    assert any(len(encode_sync_step(p)) > 2_048 for p in parts)
    joiner = LWWMap()
    deliver_all(joiner, parts)
    assert joiner == m


def test_coverage_missing() -> None:
    coverage = Coverage()
    assert coverage.missing() == [ROOT]
    coverage.add([(1, i) for i in range(16) if i != 5])
    assert coverage.missing() == [(1, 5)]
    assert not coverage.complete
    coverage.add([(2, 5 * 16 + i) for i in range(16)])
    assert coverage.complete
    assert coverage.missing() == []


def test_coverage_of_deep_leaves() -> None:
    coverage = Coverage()
    coverage.add([(DEPTH, 0)])
    missing = coverage.missing()
    assert len(missing) == 15 * DEPTH
    coverage.add(missing)
    assert coverage.complete


def test_pull_of_an_empty_replica_still_confirms_coverage() -> None:
    answer, _ = sync_respond(LWWMap(), sync_pull())
    assert not answer.done
    assert answer.complete == (ROOT,)
