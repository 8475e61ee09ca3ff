"""Audit records carry the gates after each change; `FlagStore.restore` writes them back."""

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from flags import FlagStore, LocalMap, RestoreError
from flags._store import MAX_AUDIT_STATE_BYTES
from hlc import Timestamp

ACTORS = st.sampled_from(["ann", "bob", "cy"])
GROUPS = st.sampled_from(["beta", "staff"])
RATIOS = st.sampled_from([0.0, 0.25, 0.5, 1.0])

#: One writer call each: (method, args). Collide on few names so gates overwrite.
WRITES = st.one_of(
    st.tuples(st.just("enable"), st.just(())),
    st.tuples(st.just("disable"), st.just(())),
    st.tuples(st.just("enable_for_actor"), st.tuples(ACTORS)),
    st.tuples(st.just("disable_for_actor"), st.tuples(ACTORS)),
    st.tuples(st.just("enable_for_group"), st.tuples(GROUPS)),
    st.tuples(st.just("disable_for_group"), st.tuples(GROUPS)),
    st.tuples(st.just("enable_percentage_of_actors"), st.tuples(RATIOS)),
    st.tuples(st.just("enable_percentage_of_time"), st.tuples(RATIOS)),
    st.tuples(st.just("clear"), st.just(())),
)


def gates(store: FlagStore, name: str = "f") -> dict[str, Any]:
    """The flag's gate fields, as a state records them."""
    return {k: v for k, v in attrs.asdict(store.flag(name)).items() if k in GATE_FIELDS}


GATE_FIELDS = ("boolean", "actors", "groups", "percentage_of_actors", "percentage_of_time")


def apply(store: FlagStore, write: tuple[str, tuple[Any, ...]]) -> None:
    method, args = write
    getattr(store, method)("f", *args)


@given(st.lists(WRITES, min_size=1, max_size=8), st.lists(WRITES, max_size=8), st.data())
def test_restore_brings_back_the_gates_recorded_by_any_entry(
    before: list[tuple[str, tuple[Any, ...]]],
    after: list[tuple[str, tuple[Any, ...]]],
    data: st.DataObject,
) -> None:
    store = FlagStore(LocalMap("n1"))
    seen = []
    for write in before:
        apply(store, write)
        seen.append(gates(store))
    entries = store.audit("f")[::-1]  # oldest first, one per write
    assert [e.state for e in entries] == seen  # each record: the gates right after it
    index = data.draw(st.integers(0, len(entries) - 1))
    for write in after:
        apply(store, write)
    store.restore("f", entries[index].timestamp, author="ops")
    assert gates(store) == seen[index]


def test_a_restore_is_one_audited_change_and_a_second_one_writes_nothing() -> None:
    store = FlagStore(LocalMap("n1"))
    store.enable_for_actor("f", "ann")
    store.enable_percentage_of_actors("f", 0.3)
    target = store.audit("f")[0].timestamp
    store.enable("f")
    store.disable_for_group("f", "banned")
    store.set_metadata("f", description="kept")

    assert store.restore("f", target, author="ops") is True
    newest = store.audit("f")[0]
    assert (newest.action, newest.target, newest.author) == ("restore", target, "ops")
    assert newest.value == {"set": 0, "cleared": 2}  # boolean and the group gate removed
    assert newest.state == gates(store)
    assert store.flag("f").description == "kept"  # metadata is not part of a state

    entries = len(store.audit("f"))
    stamps = {k: store._map.timestamp(k) for k, _ in store._map.items()}
    assert store.restore("f", target) is False
    assert len(store.audit("f")) == entries
    assert {k: store._map.timestamp(k) for k, _ in store._map.items()} == stamps


def test_restore_refuses_an_unknown_entry_and_one_without_a_state() -> None:
    shared = LocalMap("n1")
    store = FlagStore(shared)
    store.enable("f")
    with pytest.raises(RestoreError, match="no audit entry"):
        store.restore("f", "0000000000000000-0000000000-n1")
    # A record written before records carried a state.
    shared.set(("f", "audit", "0000000000001-0000000000-n0"), {"action": "enable", "node": "n0"})
    old = store.audit("f")[-1]
    assert old.state is None
    with pytest.raises(RestoreError, match="records no state"):
        store.restore("f", old.timestamp)
    assert len(store.audit("f")) == 2  # nothing written
    assert issubclass(RestoreError, ValueError)


def test_a_state_too_large_to_keep_is_recorded_as_none() -> None:
    store = FlagStore(LocalMap("n1"))
    actors = {f"user-{i:06d}-{'x' * 40}": True for i in range(MAX_AUDIT_STATE_BYTES // 40)}
    store.import_flags([attrs.evolve(store.flag("f"), actors=actors)])
    assert store.audit("f")[0].state is None
    store.enable_for_actor("small", "ann")
    assert store.audit("small")[0].state is not None


def test_last_changed_is_the_newest_gate_timestamp() -> None:
    clock = [1_000_000]
    store = FlagStore(LocalMap("n1", wall_ms=lambda: clock[0]))
    assert store.last_changed("f") is None
    store.enable("f")
    clock[0] += 5_000
    store.enable_for_actor("f", "ann")
    clock[0] += 5_000
    store.set_metadata("f", owner="team")  # metadata is no gate
    stamp = store.last_changed("f")
    assert isinstance(stamp, Timestamp)
    assert stamp.wall_ms == 1_005_000


def test_clear_removes_one_gate_by_kind() -> None:
    store = FlagStore(LocalMap("n1"))
    store.enable("f")
    store.enable_percentage_of_time("f", 0.5)
    store.clear("f", gate="percentage_of_time")
    assert (store.flag("f").boolean, store.flag("f").percentage_of_time) == (True, None)
    with pytest.raises(ValueError, match="gate must be one of"):
        store.clear("f", gate="actor")
