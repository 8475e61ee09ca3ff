"""Scheduled changes (flags._schedule) against crdt.LWWMap."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crdt import LWWMap
from flags._schedule import DELETED, effective_entries, schedule_timestamp
from hlc import Timestamp

KINDS = st.sampled_from([("boolean",), ("actor", "ann"), ("variant", "a")])
VALUES = st.booleans() | st.sampled_from(["x", "y"])
REAL = st.tuples(KINDS, st.none() | VALUES, st.integers(0, 20), st.sampled_from(["n1", "n2"]))
SCHEDULES = st.dictionaries(
    st.sampled_from(["s1", "s2", "s3"]),
    st.builds(
        lambda at, sets, deletes: {
            "at_ms": at,
            "set": [[*k, v] for k, v in sets.items()],
            "delete": [list(k) for k in deletes if k not in sets],
        },
        st.integers(0, 20),
        st.dictionaries(KINDS, VALUES),
        st.lists(KINDS, unique=True),
    ),
)


@given(st.lists(REAL), SCHEDULES, st.integers(0, 25), st.randoms(use_true_random=False))
def test_effective_entries_equal_an_lww_map_given_the_scheduled_writes(
    real: list[Any], schedules: dict[str, Any], now_ms: int, order: Any
) -> None:
    held = LWWMap()
    writes = []
    for kind, value, wall, node in real:
        writes.append((("f", *kind), value, Timestamp(wall, 0, node)))
    for sched_id, schedule in schedules.items():
        if schedule["at_ms"] <= now_ms:
            stamp = schedule_timestamp(sched_id, schedule["at_ms"])
            writes += [(("f", *w[:-1]), w[-1], stamp) for w in schedule["set"]]
            writes += [(("f", *w), None, stamp) for w in schedule["delete"]]
    for key, value, stamp in real_writes(real):
        (held.delete(key, stamp) if value is None else held.set(key, value, stamp))
    entries: dict[tuple[Any, ...], tuple[Timestamp, Any]] = {}
    for key, register in held.entries():
        assert type(key) is tuple
        entries[key] = (register.timestamp, DELETED if register.deleted else register.value)
    model = LWWMap()
    order.shuffle(writes)  # any interleaving of real and scheduled writes
    for key, value, stamp in writes:
        (model.delete(key, stamp) if value is None else model.set(key, value, stamp))
    keyed = {("f", "schedule", s): v for s, v in schedules.items()}
    assert effective_entries(entries, keyed, now_ms) == dict(model.items())


def real_writes(real: list[Any]) -> list[tuple[Any, Any, Timestamp]]:
    return [(("f", *k), v, Timestamp(wall, 0, node)) for k, v, wall, node in real]


def test_a_real_write_after_the_schedule_wins_and_one_before_loses() -> None:
    schedule = {("f", "schedule", "s"): {"at_ms": 100, "set": [["boolean", True]]}}
    before = {("f", "boolean"): (Timestamp(99, 0, "n"), False)}
    after = {("f", "boolean"): (Timestamp(101, 0, "n"), False)}
    assert effective_entries(before, schedule, 100) == {("f", "boolean"): True}
    assert effective_entries(after, schedule, 100) == {("f", "boolean"): False}
    assert effective_entries(before, schedule, 99) == {("f", "boolean"): False}


def test_a_malformed_schedule_changes_nothing() -> None:
    schedule = {"at_ms": 1, "set": [["boolean", True], ["audit", "x", 1]]}
    assert effective_entries({}, {("f", "schedule", "s"): schedule}, 5) == {}
