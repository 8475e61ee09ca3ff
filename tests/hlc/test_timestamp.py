import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt.testing import timestamps
from hlc import MAX_LOGICAL, MAX_NODE_BYTES, MAX_WALL_MS, Timestamp, TimestampError


@given(timestamps())
def test_bytes_round_trip(ts: Timestamp) -> None:
    assert Timestamp.from_bytes(ts.to_bytes()) == ts


@given(timestamps())
def test_text_round_trip(ts: Timestamp) -> None:
    assert Timestamp.parse(str(ts)) == ts


@given(timestamps(), timestamps())
def test_text_order_is_timestamp_order(a: Timestamp, b: Timestamp) -> None:
    assert (str(a) < str(b)) == (a < b)
    assert (str(a) == str(b)) == (a == b)


@given(timestamps(), timestamps())
def test_order_is_wall_then_logical_then_node(a: Timestamp, b: Timestamp) -> None:
    expected = (a.wall_ms, a.logical, a.node) < (b.wall_ms, b.logical, b.node)
    assert (a < b) == expected
    assert (a > b) == (b < a)
    assert (a <= b) == (a < b or a == b)
    assert (a >= b) == (b <= a)


@given(timestamps())
def test_equal_timestamps_hash_equal(ts: Timestamp) -> None:
    copy = Timestamp(ts.wall_ms, ts.logical, ts.node)
    assert copy == ts
    assert hash(copy) == hash(ts)
    assert len({ts, copy}) == 1


def test_not_equal_to_a_plain_tuple() -> None:
    ts = Timestamp(1, 2, "a")
    assert ts != (1, 2, "a")
    with pytest.raises(TypeError):
        _ = ts < (1, 2, "a")  # type: ignore[operator]


def test_frozen() -> None:
    ts = Timestamp(1, 2, "a")
    with pytest.raises(AttributeError):
        ts.wall_ms = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("wall_ms", "logical", "node"),
    [
        (-1, 0, "a"),
        (MAX_WALL_MS + 1, 0, "a"),
        (0, -1, "a"),
        (0, MAX_LOGICAL + 1, "a"),
        (0, 0, ""),
        (0, 0, "x" * (MAX_NODE_BYTES + 1)),
        (0, 0, "é" * 128),  # 256 bytes of UTF-8
        (0, 0, "\ud800"),  # a lone surrogate cannot be encoded
        (True, 0, "a"),
        (1.0, 0, "a"),
        (0, "1", "a"),
        (0, 0, b"a"),
        (0, 0, None),
    ],
)
def test_rejects_bad_fields(wall_ms: object, logical: object, node: object) -> None:
    with pytest.raises(TimestampError):
        Timestamp(wall_ms, logical, node)  # type: ignore[arg-type]


def test_largest_fields_round_trip() -> None:
    ts = Timestamp(MAX_WALL_MS, MAX_LOGICAL, "é" * 127)
    assert Timestamp.from_bytes(ts.to_bytes()) == ts
    assert Timestamp.parse(str(ts)) == ts


def test_text_form_is_fixed_width() -> None:
    assert str(Timestamp(1_700_000_000_000, 3, "node-a")) == "001700000000000-0000000003-node-a"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 12,  # shorter than the header
        Timestamp(1, 2, "abc").to_bytes()[:-1],  # truncated node
        Timestamp(1, 2, "abc").to_bytes() + b"x",  # trailing byte
        b"\x00" * 12 + b"\x00",  # empty node
        b"\x00" * 12 + b"\x02\xff\xfe",  # node is not UTF-8
        b"\xff" * 12 + b"\x01a",  # wall_ms beyond MAX_WALL_MS
    ],
)
def test_from_bytes_rejects_malformed(data: bytes) -> None:
    with pytest.raises(TimestampError):
        Timestamp.from_bytes(data)


def test_from_bytes_rejects_non_bytes() -> None:
    with pytest.raises(TimestampError):
        Timestamp.from_bytes("abc")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "001700000000000-0000000003-",  # empty node
        "001700000000000-0000000003",
        "1700000000000-3-node",  # not fixed width
        "00170000000000x-0000000003-node",
        "001700000000000_0000000003-node",
        "\uff10\uff101700000000000-0000000003-node",  # fullwidth digits
        "999999999999999-0000000003-node",  # wall_ms beyond MAX_WALL_MS
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(TimestampError):
        Timestamp.parse(text)


@given(st.binary(max_size=64))
def test_from_bytes_never_raises_anything_else(data: bytes) -> None:
    try:
        ts = Timestamp.from_bytes(data)
    except TimestampError:
        return
    assert ts.to_bytes() == data


def test_from_tuple() -> None:
    assert Timestamp.from_tuple([5, 6, "n"]) == Timestamp(5, 6, "n")
    with pytest.raises(TimestampError):
        Timestamp.from_tuple([5, 6])
    with pytest.raises(TimestampError):
        Timestamp.from_tuple("abc")
