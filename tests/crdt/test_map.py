import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt import TOMBSTONE, LWWMap, LWWRegister
from crdt.testing import (
    Operation,
    apply_operations,
    check_identity,
    check_semilattice,
    join_maps,
    lww_maps,
    model_state,
    operations,
    visible,
)
from hlc import Timestamp


def ts(wall_ms: int, logical: int = 0, node: str = "a") -> Timestamp:
    return Timestamp(wall_ms, logical, node)


# -- laws ------------------------------------------------------------------------


@given(lww_maps(), lww_maps(), lww_maps())
def test_merge_is_a_join_on_full_states(a: LWWMap, b: LWWMap, c: LWWMap) -> None:
    check_semilattice(join_maps, a, b, c)


@given(lww_maps())
def test_empty_map_is_the_identity(a: LWWMap) -> None:
    check_identity(join_maps, LWWMap(), a)


@given(st.lists(operations(), min_size=3, max_size=3))
def test_merge_is_a_join_on_deltas(ops: list[Operation]) -> None:
    scratch = LWWMap()
    deltas = [
        scratch.set(key, value, t) if kind == "set" else scratch.delete(key, t)
        for kind, key, value, t in ops
    ]
    check_semilattice(join_maps, *deltas)


@given(st.lists(operations(), max_size=20))
def test_visible_state_is_the_model_answer(ops: list[Operation]) -> None:
    assert visible(apply_operations(ops)) == model_state(ops)


@given(st.lists(operations(), max_size=15), st.data())
def test_any_delivery_of_deltas_gives_the_same_map(
    ops: list[Operation], data: st.DataObject
) -> None:
    writer = LWWMap()
    deltas = [
        writer.set(key, value, t) if kind == "set" else writer.delete(key, t)
        for kind, key, value, t in ops
    ]
    order = data.draw(st.permutations(deltas))
    duplicates = data.draw(st.lists(st.sampled_from(deltas), max_size=5)) if deltas else []
    replica = LWWMap()
    for delta in order + duplicates:
        replica.merge(delta)
    assert replica == writer

    # A subset first (as a peer that missed some), then the rest, then everything again.
    cut = data.draw(st.integers(0, len(deltas)))
    late = LWWMap()
    for delta in deltas[cut:]:
        late.merge(delta)
    for delta in deltas[:cut] + deltas:
        late.merge(delta)
    assert late == writer


@given(lww_maps(), lww_maps())
def test_merge_reports_exactly_the_keys_whose_visible_value_changed(a: LWWMap, b: LWWMap) -> None:
    before = visible(a)
    changed = a.merge(b)
    after = visible(a)
    expected = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == expected


# -- reads and writes --------------------------------------------------------------


def test_set_get_delete() -> None:
    m = LWWMap()
    m.set("x", 1, ts(1))
    assert m.get("x") == 1
    assert "x" in m
    assert len(m) == 1
    m.delete("x", ts(2))
    assert m.get("x") is None
    assert m.get("x", "dflt") == "dflt"
    assert "x" not in m
    assert len(m) == 0
    assert m.tombstone_count == 1
    with pytest.raises(KeyError):
        m["x"]


def test_set_returns_a_one_entry_delta() -> None:
    m = LWWMap()
    m.set("other", 0, ts(1))
    delta = m.set("x", {"on": True}, ts(2))
    assert isinstance(delta, LWWMap)
    assert dict(delta.items()) == {"x": {"on": True}}
    assert delta.register("x") == LWWRegister({"on": True}, ts(2))


def test_delete_returns_a_tombstone_delta_even_for_absent_keys() -> None:
    delta = LWWMap().delete("never", ts(5))
    assert len(delta) == 0
    assert delta.register("never") == LWWRegister(TOMBSTONE, ts(5))


def test_stale_write_loses_but_its_delta_is_returned() -> None:
    m = LWWMap()
    m.set("x", "new", ts(10))
    delta = m.set("x", "old", ts(5))
    assert m.get("x") == "new"
    assert delta.get("x") == "old"


def test_delete_beats_an_older_write_arriving_later() -> None:
    m = LWWMap()
    m.delete("x", ts(10))
    assert m.merge(LWWMap().copy()) == set()
    late = LWWMap()
    late.set("x", "stale", ts(5))
    assert m.merge(late) == set()
    assert "x" not in m


def test_values_read_back_as_every_replica_reads_them() -> None:
    m = LWWMap()
    m.set("t", (1, (2, 3)), ts(1))
    assert m.get("t") == [1, [2, 3]]


def test_rewrite_with_same_value_is_not_a_visible_change() -> None:
    m = LWWMap()
    m.set("x", 1, ts(1))
    same = LWWMap()
    same.set("x", 1, ts(2))
    assert m.merge(same) == set()
    assert m.timestamp("x") == ts(2)


@pytest.mark.parametrize("key", [True, 1.5, None, ["a"], {"a": 1}, ("a", [1]), frozenset()])
def test_rejects_bad_keys_and_writes_nothing(key: object) -> None:
    m = LWWMap()
    with pytest.raises(TypeError, match="keys"):
        m.set(key, 1, ts(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keys"):
        m.delete(key, ts(1))  # type: ignore[arg-type]
    assert m == LWWMap()


def test_rejects_deeply_nested_tuple_keys() -> None:
    key: object = "a"
    for _ in range(9):
        key = (key,)
    with pytest.raises(TypeError, match="nest"):
        LWWMap().set(key, 1, ts(1))  # type: ignore[arg-type]


def test_rejects_bad_values_and_writes_nothing() -> None:
    m = LWWMap()
    with pytest.raises(TypeError, match="CBOR"):
        m.set("x", object(), ts(1))
    deep: list[object] = []
    for _ in range(500):
        deep = [deep]
    with pytest.raises(TypeError, match="nesting depth over 400"):  # before cbor2 recurses
        m.set("x", deep, ts(1))
    assert m == LWWMap()


def test_rejects_timestamps_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="Timestamp"):
        LWWMap().set("x", 1, (1, 0, "a"))  # type: ignore[arg-type]


def test_equality_includes_tombstones() -> None:
    dead = LWWMap()
    dead.delete("x", ts(1))
    assert dead != LWWMap()
    assert len(dead) == len(LWWMap()) == 0


def test_registers_entries_and_timestamps() -> None:
    m = LWWMap()
    m.set("a", 1, ts(1))
    m.delete("b", ts(2))
    assert m.register("a") == LWWRegister(1, ts(1))
    assert m.register("b") == LWWRegister(TOMBSTONE, ts(2))
    assert m.register("c") is None
    assert m.timestamp("b") == ts(2)
    assert m.timestamp("c") is None
    assert dict(m.entries()) == {"a": LWWRegister(1, ts(1)), "b": LWWRegister(TOMBSTONE, ts(2))}
    assert m.max_timestamp() == ts(2)
    assert LWWMap().max_timestamp() is None
    assert list(m.keys()) == list(m) == ["a"]


def test_copy_is_independent() -> None:
    m = LWWMap()
    m.set("a", 1, ts(1))
    c = m.copy()
    c.set("a", 2, ts(2))
    assert m.get("a") == 1
    assert c.get("a") == 2


def test_merge_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        LWWMap().merge({"a": 1})  # type: ignore[arg-type]


def test_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(LWWMap())


# -- tombstone collection ----------------------------------------------------------


def test_collect_tombstones_drops_only_old_tombstones() -> None:
    m = LWWMap()
    m.delete("old", ts(1))
    m.delete("new", ts(10))
    m.set("live", 1, ts(1))
    assert m.collect_tombstones(ts(5)) == 1
    assert m.register("old") is None
    assert m.register("new") == LWWRegister(TOMBSTONE, ts(10))
    assert m.get("live") == 1


def test_collect_tombstones_keeps_those_it_is_told_to() -> None:
    m = LWWMap()
    m.delete("kept", ts(1))
    m.delete("gone", ts(1))
    asked = []

    def keep(key: object) -> bool:
        asked.append(key)
        return key == "kept"

    assert m.collect_tombstones(ts(5), keep) == 1
    assert m.register("kept") == LWWRegister(TOMBSTONE, ts(1))
    assert m.register("gone") is None
    assert sorted(map(str, asked)) == ["gone", "kept"]  # asked only of tombstones about to go


def test_collecting_too_early_lets_a_stale_replica_resurrect_a_value() -> None:
    # The documented risk that the tombstone horizon exists to avoid.
    a, stale = LWWMap(), LWWMap()
    stale.set("x", "zombie", ts(1))
    a.merge(stale)
    a.delete("x", ts(2))
    a.collect_tombstones(ts(3))  # too early: `stale` never saw the delete
    assert a.merge(stale) == {"x"}
    assert a.get("x") == "zombie"
