import pytest
from hypothesis import given

from crdt import TOMBSTONE, LWWRegister
from crdt.testing import check_semilattice, join_registers, registers
from hlc import Timestamp

TS = Timestamp(10, 0, "a")


@given(registers(), registers(), registers())
def test_merge_is_a_join(a: LWWRegister, b: LWWRegister, c: LWWRegister) -> None:
    check_semilattice(join_registers, a, b, c)


@given(registers(), registers())
def test_merge_keeps_the_greater_timestamp(a: LWWRegister, b: LWWRegister) -> None:
    winner = a.merge(b)
    assert winner in (a, b)
    assert winner.timestamp == max(a.timestamp, b.timestamp)


def test_later_write_wins() -> None:
    old, new = LWWRegister("old", Timestamp(1, 0, "b")), LWWRegister("new", TS)
    assert old.merge(new) == new
    assert new.merge(old) == new


def test_tie_goes_to_the_greater_encoding_whatever_the_order() -> None:
    small, large = LWWRegister("a", TS), LWWRegister("b", TS)  # b"\x61a" < b"\x61b"
    assert small.merge(large).value == "b"
    assert large.merge(small).value == "b"


def test_tombstone_loses_a_tie() -> None:
    dead, alive = LWWRegister(TOMBSTONE, TS), LWWRegister(None, TS)
    assert dead.merge(alive) is alive
    assert alive.merge(dead) is alive
    assert dead.deleted
    assert not alive.deleted


def test_equality_is_by_encoding() -> None:
    assert LWWRegister(1, TS) != LWWRegister(True, TS)
    assert LWWRegister(1, TS) != LWWRegister(1.0, TS)
    assert LWWRegister((1, 2), TS) == LWWRegister([1, 2], TS)
    assert hash(LWWRegister((1, 2), TS)) == hash(LWWRegister([1, 2], TS))


def test_rejects_unencodable_values_and_bad_timestamps() -> None:
    with pytest.raises(TypeError, match="CBOR"):
        LWWRegister(object(), TS)
    with pytest.raises(TypeError):
        LWWRegister(1, (10, 0, "a"))  # type: ignore[arg-type]


def test_tombstone_repr() -> None:
    assert repr(TOMBSTONE) == "TOMBSTONE"
