import contextlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt import (
    DecodeError,
    Digest,
    LWWMap,
    LWWRegister,
    SyncStep,
    decode_digest,
    decode_map,
    decode_register,
    decode_sync_step,
    decode_timestamp,
    encode_digest,
    encode_map,
    encode_register,
    encode_sync_step,
    encode_timestamp,
    sync_start,
)
from crdt.testing import lww_maps, registers, timestamps
from hlc import Timestamp

TS = Timestamp(1_700_000_000_000, 2, "node-a")


def sample_map() -> LWWMap:
    m = LWWMap()
    m.set("a", {"x": [1, 2]}, TS)
    m.set(("t", 1), b"\x00", Timestamp(5, 0, "node-b"))
    m.delete(7, Timestamp(6, 0, "node-a"))
    return m


def raw(*items: object) -> bytes:
    return cbor2.dumps(list(items))


# -- round trips --------------------------------------------------------------------


@given(timestamps())
def test_timestamp_round_trip(ts: Timestamp) -> None:
    assert decode_timestamp(encode_timestamp(ts)) == ts


@given(registers())
def test_register_round_trip(r: LWWRegister) -> None:
    assert decode_register(encode_register(r)) == r


@given(lww_maps())
def test_map_round_trip(m: LWWMap) -> None:
    decoded = decode_map(encode_map(m))
    assert decoded == m
    assert dict(decoded.items()) == dict(m.items())


@given(lww_maps(), lww_maps())
def test_sync_step_round_trip(a: LWWMap, b: LWWMap) -> None:
    step = SyncStep(
        digest=a.digest([(1, i) for i in range(16)]), delta=b, complete=[(2, 7)], pull=[(1, 3)]
    )
    assert decode_sync_step(encode_sync_step(step)) == step


def test_digest_round_trip() -> None:
    d = sample_map().digest([(0, 0), (1, 3), (4, 65535)])
    assert decode_digest(encode_digest(d)) == d
    assert decode_sync_step(encode_sync_step(sync_start(LWWMap()))).digest == Digest(
        [((0, 0), 0, 0)]
    )


# -- garbage in ---------------------------------------------------------------------

DECODERS = [decode_timestamp, decode_register, decode_map, decode_digest, decode_sync_step]


@pytest.mark.parametrize("decode", DECODERS)
@given(data=st.binary(max_size=64))
def test_random_bytes_are_refused_cleanly(decode, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    ("encode", "decode", "value"),
    [
        (encode_timestamp, decode_timestamp, TS),
        (encode_register, decode_register, LWWRegister([1, "x"], TS)),
        (encode_map, decode_map, sample_map()),
        (encode_sync_step, decode_sync_step, SyncStep(delta=sample_map(), complete=[(1, 2)])),
    ],
)
def test_every_truncation_and_any_trailing_byte_is_refused(encode, decode, value) -> None:  # type: ignore[no-untyped-def]
    data = encode(value)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            decode(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        decode(data + b"\x00")


def test_oversized_input_is_refused_before_parsing() -> None:
    data = encode_map(sample_map())
    with pytest.raises(DecodeError, match="limit"):
        decode_map(data, max_bytes=len(data) - 1)
    assert decode_map(data, max_bytes=len(data)) == sample_map()


def test_not_bytes() -> None:
    with pytest.raises(DecodeError, match="bytes"):
        decode_map("text")  # type: ignore[arg-type]


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(DecodeError, match="malformed"):
        decode_map(b"\x81" * 100_000 + b"\x01")


def test_indefinite_length_bomb_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_map(b"\x9a\xff\xff\xff\xff")


def good_map_fields() -> list[object]:
    """The decoded fields of a valid map encoding: "a" live, ("t", 1) a tombstone."""
    m = LWWMap()
    m.set("a", [1, 2], Timestamp(5, 0, "n"))
    m.delete(("t", 1), Timestamp(6, 1, "n"))
    fields: list[object] = cbor2.loads(encode_map(m))
    assert len(fields) == 9
    return fields


def with_field(index: int, value: object) -> bytes:
    fields = good_map_fields()
    fields[index] = value
    return cbor2.dumps(fields)


def u64(*values: int) -> cbor2.CBORTag:
    return cbor2.CBORTag(71, b"".join(v.to_bytes(8, "little") for v in values))


def u32(*values: int) -> cbor2.CBORTag:
    return cbor2.CBORTag(70, b"".join(v.to_bytes(4, "little") for v in values))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (with_field(0, 2), "version"),
        (with_field(0, "1"), "version"),
        (with_field(1, "reg"), "expected a 'map'"),
        (cbor2.dumps({"v": 1}), "version, kind"),
        (cbor2.dumps(good_map_fields()[:8]), "7 map columns"),
        (with_field(2, "abc"), "arrays"),
        (with_field(2, ["a", "a"]), "repeated"),
        (with_field(2, ["a", 1.5]), "map key"),
        (with_field(2, ["a", True]), "map key"),
        (with_field(2, ["a"]), "length"),
        (with_field(3, [5, 6]), "typed array"),
        (with_field(3, cbor2.CBORTag(70, bytes(16))), "typed array"),
        (with_field(3, u64(5)), "length"),
        (with_field(3, u64(5, 2**48)), "wall_ms"),
        (with_field(4, u32(0)), "length"),
        (with_field(5, u32(0, 1)), "node index"),
        (with_field(6, [""]), "node id"),
        (with_field(6, [7]), "node id"),
        (with_field(7, b"\x01"), "live flags"),
        (with_field(7, b"\x01\x02"), "0 or 1"),
        (with_field(7, [1, 0]), "live flags"),
        (with_field(8, "x"), "byte string"),
        (with_field(8, b"\x82\x01\x02\x03"), "trailing"),
        (with_field(8, b"\x82\x01"), "bad value"),
        (with_field(8, b"\x82\x19\x00\x01\x02"), "canonical"),
        (with_field(8, b"\xff"), "bad value"),
    ],
)
def test_malformed_maps_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_map(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (raw(1, "digest", [0, 0, 5]), "bad digest"),
        (raw(1, "digest", [0, 1, 5, 1]), "prefix"),
        (raw(1, "digest", [5, 0, 5, 1]), "prefix"),
        (raw(1, "digest", [0, 0, -5, 1]), "range"),
        (raw(1, "digest", [0, 0, 2**64, 1]), "tag 2 is not allowed"),  # a bignum
        (raw(1, "digest", [0, 0, "h", 1]), "ints"),
        (raw(1, "digest"), "one field"),
    ],
)
def test_malformed_digests_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_digest(data)


def test_malformed_registers_and_timestamps_are_refused() -> None:
    with pytest.raises(DecodeError, match="timestamp"):
        decode_register(raw(1, "reg", 5, 0, "", b"\x01"))
    with pytest.raises(DecodeError, match="byte string"):
        decode_register(raw(1, "reg", 5, 0, "n", 1))
    with pytest.raises(DecodeError, match="canonical"):
        decode_register(raw(1, "reg", 5, 0, "n", b"\x19\x00\x01"))
    with pytest.raises(DecodeError, match="timestamp"):
        decode_timestamp(raw(1, "ts", True, 0, "n"))
    with pytest.raises(DecodeError, match="expected wall_ms"):
        decode_timestamp(raw(1, "ts", 1, 0))


def test_malformed_sync_steps_are_refused() -> None:
    good = cbor2.loads(encode_sync_step(SyncStep(delta=sample_map())))
    bad_complete = [*good[:-2], [1], []]
    with pytest.raises(DecodeError, match="complete"):
        decode_sync_step(cbor2.dumps(bad_complete))
    bad_pull = [*good[:-1], "x"]
    with pytest.raises(DecodeError, match="pull"):
        decode_sync_step(cbor2.dumps(bad_pull))
    bad_prefix = [*good[:-1], [9, 9]]
    with pytest.raises(DecodeError, match="prefix"):
        decode_sync_step(cbor2.dumps(bad_prefix))
    with pytest.raises(DecodeError, match="expected digest"):
        decode_sync_step(cbor2.dumps(good[:-1]))


def test_decoded_map_is_fully_usable() -> None:
    m = decode_map(encode_map(sample_map()))
    assert m.get(("t", 1)) == b"\x00"
    m.set("b", 2, Timestamp(10, 0, "z"))
    assert m.digest() != sample_map().digest()
