"""Hostile CBOR: tags, sharing bombs and costly items are refused while decoding, fast.

Every decoder refuses what chorus never writes, and a writer is refused what its
peers would refuse (`crdt._values.canonical_value`).
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import gc
import ipaddress
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt import (
    DecodeError,
    LWWMap,
    LWWRegister,
    decode_cbor,
    decode_digest,
    decode_map,
    decode_register,
    decode_sync_step,
    decode_timestamp,
    encode_map,
    encode_register,
)
from crdt._codec import MAX_MESSAGE_DEPTH
from crdt._values import (
    CBOR2_BUILTIN_TAGS,
    MAX_BIGNUM_BYTES,
    MAX_VALUE_DEPTH,
    NO_TAGS,
    canonical_value,
    strict_loads,
)
from hlc import Timestamp
from tests.fuzz.hostile import (
    REFUSED_VALUE_TAGS,
    array,
    head,
    map_with_values,
    register_with_value,
    sharing_bomb,
    stringref_bomb,
    sync_with_values,
    tag,
)

TS = Timestamp(5, 0, "n")

#: Each decoder that reads a value, with a way to put a value's bytes in its input.
VALUE_CARRIERS: list[tuple[Callable[[bytes], Any], Callable[[bytes], bytes]]] = [
    (decode_map, map_with_values),
    (decode_sync_step, sync_with_values),
    (decode_register, register_with_value),
]


def refused_fast(decode: Callable[[bytes], Any], data: bytes, match: str) -> None:
    # CPU time, garbage collection off: a loaded machine does not make this flaky.
    gc.disable()
    start = time.process_time()
    try:
        with pytest.raises(DecodeError, match=match):
            decode(data)
        assert time.process_time() - start < 0.1
    finally:
        gc.enable()


# -- the value-sharing bomb (issue 13) ------------------------------------------------


@pytest.mark.parametrize(("decode", "carry"), VALUE_CARRIERS)
def test_a_30_level_value_sharing_bomb_is_refused_at_once(
    decode: Callable[[bytes], Any], carry: Callable[[bytes], bytes]
) -> None:
    # Before the fix, this bomb's 18 levels cost 0.14 s and each level doubled it:
    # 30 levels (276 bytes) would take about 10 minutes, 40 levels a week.
    bomb = sharing_bomb(30)
    assert len(bomb) < 300
    refused_fast(decode, carry(bomb), "tag 28 is not allowed")


def test_a_sharing_bomb_anywhere_in_a_message_is_refused_at_once() -> None:
    bomb = sharing_bomb(30)
    cases: list[tuple[Callable[[bytes], Any], bytes]] = [
        (decode_cbor, bomb),
        (decode_digest, array(head(0, 1), head(3, 6) + b"digest", bomb)),
        (
            decode_timestamp,
            array(head(0, 1), head(3, 2) + b"ts", bomb, head(0, 0), head(3, 1) + b"n"),
        ),
        (decode_map, bomb),
    ]
    for decode, data in cases:
        refused_fast(decode, data, "tag 28 is not allowed")


@pytest.mark.parametrize(("decode", "carry"), VALUE_CARRIERS)
def test_a_string_reference_bomb_is_refused_at_once(
    decode: Callable[[bytes], Any], carry: Callable[[bytes], bytes]
) -> None:
    # 31 KB that a re-encode would turn into 10 MB.
    refused_fast(decode, carry(stringref_bomb()), "tag 256 is not allowed")


# -- which tags, where -----------------------------------------------------------------


@pytest.mark.parametrize("number", sorted(REFUSED_VALUE_TAGS))
@pytest.mark.parametrize(("decode", "carry"), VALUE_CARRIERS)
def test_a_value_may_carry_no_tag_but_bignums(
    number: int, decode: Callable[[bytes], Any], carry: Callable[[bytes], bytes]
) -> None:
    refused_fast(decode, carry(REFUSED_VALUE_TAGS[number]), f"tag {number} is not allowed")


@pytest.mark.parametrize("number", sorted(REFUSED_VALUE_TAGS))
def test_node_messages_carry_no_tag_at_all(number: int) -> None:
    refused_fast(decode_cbor, array(REFUSED_VALUE_TAGS[number]), f"tag {number} is not allowed")
    refused_fast(decode_cbor, tag(2, head(2, 1) + b"\x01"), "tag 2 is not allowed")


def test_typed_arrays_only_in_maps_and_sync_steps() -> None:
    typed = tag(70, head(2, 0))
    refused_fast(decode_digest, array(head(0, 1), head(3, 6) + b"digest", typed), "tag 70")
    refused_fast(decode_register, register_with_value(typed), "tag 70")
    # In a map they decode, and the shape checks refuse them where columns are not.
    refused_fast(decode_map, array(head(0, 1), head(3, 3) + b"map", typed), "7 map columns")
    # ...and a typed array must hold a byte string.
    fields = cbor2.loads(encode_map(LWWMap()))
    fields[3] = cbor2.CBORTag(71, [])
    refused_fast(decode_map, cbor2.dumps(fields), "tag 71 must hold a byte string")


def refusal(data: bytes) -> str:
    try:
        strict_loads(data, NO_TAGS, 4)
    except ValueError as exc:
        return str(exc)
    return "decoded"


def test_no_cbor2_built_in_tag_is_missed() -> None:
    # Every tag up to 65535 is refused by our code, not decoded by cbor2: a new cbor2
    # with a new built-in tag fails this test. cbor2's own (CBOR2_BUILTIN_TAGS) are
    # refused at their head, before their content is read: here, before the EOF.
    missed = [n for n in range(65536) if f"tag {n} is not allowed" not in refusal(tag(n, b"\x01"))]
    assert missed == []
    at_head = [n for n in range(65536) if "not allowed" in refusal(tag(n, b""))]
    assert at_head == sorted(CBOR2_BUILTIN_TAGS)


def test_bignums_in_keys_and_values_up_to_the_limit() -> None:
    big = 2 ** (8 * MAX_BIGNUM_BYTES) - 1
    m = LWWMap()
    for n in (2**64, -(2**64) - 1, big, -big - 1):
        m.set(n, [n], TS)
    assert decode_map(encode_map(m)) == m
    assert decode_register(encode_register(LWWRegister(big, TS))).value == big
    for n in (big + 1, -big - 2):
        with pytest.raises(TypeError, match="over the 128-byte limit"):
            m.set("k", n, TS)
        encoded = cbor2.dumps(n)
        refused_fast(decode_register, register_with_value(encoded), "128-byte limit")
        refused_fast(decode_map, map_with_values(encoded), "128-byte limit")
        keyed = cbor2.loads(encode_map(m))
        keyed[2][0] = n  # as a key
        refused_fast(decode_map, cbor2.dumps(keyed), "128-byte limit")


def test_a_bignum_must_hold_a_byte_string() -> None:
    refused_fast(decode_map, map_with_values(tag(2, array())), "bignum must be a byte string")


# -- costs of allowed items --------------------------------------------------------------


def test_indefinite_lengths_are_refused() -> None:
    for item in (b"\x5f\x41a\xff", b"\x7f\x61a\xff", b"\x9f\x01\xff", b"\xbf\x61a\x01\xff"):
        refused_fast(decode_map, map_with_values(item), "indefinite")
        refused_fast(decode_cbor, item, "indefinite")


def test_repeated_map_keys_in_a_value_are_refused() -> None:
    refused_fast(decode_map, map_with_values(b"\xa2\x61a\x01\x61a\x02"), "Duplicate")


@pytest.mark.parametrize("key", [b"\x01", b"\x82\x01\x02", b"\xa0", b"\xf9\x3c\x00", b"\xf5"])
def test_a_value_map_key_is_a_text_or_byte_string(key: bytes) -> None:
    # Other keys' hashes can be made to collide: a map of them decodes in quadratic time.
    refused_fast(decode_map, map_with_values(b"\xa1" + key + b"\x00"), "map key must be")


def test_nesting_is_bounded() -> None:
    deep = b"\x81" * (MAX_MESSAGE_DEPTH + 1) + b"\x01"
    refused_fast(decode_cbor, deep, "depth")
    refused_fast(decode_map, map_with_values(b"\x81" * (MAX_VALUE_DEPTH + 1) + b"\x01"), "depth")


def test_a_value_nests_as_deep_in_a_map_as_in_a_register() -> None:
    value: Any = 1
    for _ in range(MAX_VALUE_DEPTH):
        value = [value]
    m = LWWMap()
    m.set("k", value, TS)  # accepted on write...
    assert decode_map(encode_map(m)) == m  # ...so read back by peers, in a map
    assert decode_register(encode_register(LWWRegister(value, TS))).value == value
    with pytest.raises(TypeError, match="depth"):
        m.set("k", [value], TS)


def test_error_messages_stay_short_and_never_fail() -> None:
    # A version, kind or node id of any size is described, not repr'd.
    huge = 2 ** (8 * MAX_BIGNUM_BYTES - 1)
    data = map_with_values(b"\x01")
    fields = cbor2.loads(data)
    for index, value, match in [
        (0, huge, "version a large int"),
        (1, ["x"] * 100_000, "got a list of 100000"),
        (6, ["x" * 100_000], "node must be a non-empty str, got 'xxx"),
    ]:
        bad = list(fields)
        bad[index] = value
        with pytest.raises(DecodeError, match=match) as info:
            decode_map(cbor2.dumps(bad))
        assert len(str(info.value)) < 300


# -- writers are refused what peers refuse ---------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
        datetime.date(2024, 1, 1),
        decimal.Decimal("1.5"),
        fractions.Fraction(1, 3),
        uuid.UUID(int=0),
        {1, 2},
        frozenset(),
        re.compile("a+"),
        ipaddress.ip_address("10.0.0.1"),
        ipaddress.ip_network("10.0.0.0/8"),
        1 + 2j,
        cbor2.CBORTag(1234, 1),
        {"nested": [cbor2.CBORTag(70, b"")]},
        {1: "int key"},
        {("a", 1): "tuple key"},
        2 ** (8 * MAX_BIGNUM_BYTES),
    ],
    ids=repr,
)
def test_a_writer_is_refused_what_peers_refuse(value: object) -> None:
    with pytest.raises(TypeError, match="cannot be decoded by peers"):
        canonical_value(value)
    with pytest.raises(TypeError):
        LWWMap().set("k", value, TS)
    with pytest.raises(TypeError):
        LWWRegister(value, TS)


JSON_LIKE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2 ** (8 * MAX_BIGNUM_BYTES)), 2 ** (8 * MAX_BIGNUM_BYTES) - 1)
    | st.floats()
    | st.text()
    | st.binary()
    | st.just(cbor2.undefined),
    lambda inner: (
        st.lists(inner) | st.tuples(inner, inner) | st.dictionaries(st.text() | st.binary(), inner)
    ),
    max_leaves=20,
)


@given(JSON_LIKE)
def test_every_value_a_writer_may_write_reads_back_byte_for_byte(value: object) -> None:
    # Why canonical_value need not re-encode what it decoded: what passes the strict
    # decode always re-encodes to the same bytes, as peers check it does.
    payload, stored = canonical_value(value)
    assert cbor2.dumps(stored, canonical=True) == payload
    m = LWWMap()
    m.set("k", value, TS)
    assert decode_map(encode_map(m)) == m


def test_map_keys_built_to_share_a_hash_are_refused_quickly() -> None:
    """Python's int hash is the value mod 2**61 - 1: multiples of it all hash to 0,
    and a dict of n such keys takes n**2 steps to build (8,000 took 0.36 s)."""
    from crdt import LWWMap, encode_map
    from crdt._codec import MAX_HASH_COLLISIONS, decode_map
    from hlc import Timestamp

    modulus = 2**61 - 1
    honest = LWWMap()
    colliding = LWWMap()
    ts = Timestamp(1, 0, "n")
    for i in range(MAX_HASH_COLLISIONS + 1):
        honest.set(i, True, ts)
    for i in range(3_000):  # quadratic here too: the writer's own map
        colliding.set(i * modulus, True, ts)
    assert len(decode_map(encode_map(honest))) == MAX_HASH_COLLISIONS + 1
    data = encode_map(colliding)
    started = time.process_time()
    with pytest.raises(DecodeError, match="share another key's hash"):
        decode_map(data)
    assert time.process_time() - started < 0.5
