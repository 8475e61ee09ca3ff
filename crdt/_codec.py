"""CBOR encodings of timestamps, registers, maps, digests and sync steps.

Every encoding is one CBOR array (RFC 8949) that starts with the format version and
a kind: ``[FORMAT_VERSION, kind, ...]``. Maps are columnar, so that cbor2's C code,
not a Python loop, does the work per entry::

    [1, "map", [key, ...], wall_ms, logical, node index, [node id, ...], live, values]

- ``wall_ms``: RFC 8746 typed array, uint64 little-endian (tag 71), one per key;
- ``logical`` and ``node index``: uint32 little-endian typed arrays (tag 70);
- ``live``: a byte string, one byte per key: 1 for a value, 0 for a tombstone;
- ``values``: the canonical CBOR of each live value, back to back (an RFC 8742 CBOR
  sequence), in key order.

Node ids are listed once and referenced by index.

Decoding trusts nothing: input over ``max_bytes``, malformed or truncated CBOR,
trailing bytes, an unknown version or kind, wrong types, out-of-range fields, repeated
keys and non-canonical values all raise `DecodeError`, and nothing is applied.

Decoding is strict as it goes (see `crdt._values.strict_loads`), so its work is
bounded by a small multiple of the input's size: no shared values (tags 28/29), string
references (25/256), regular expressions, MIME messages, bigfloats or other tags that
cost more than their bytes to decode. Every CBOR tag is refused while decoding (those
cbor2 would decode itself as soon as their head is read) unless it is one of:

- 70 and 71 (RFC 8746 typed arrays), holding a byte string: only in a map's or sync
  step's top-level array, where the map columns are;
- 2 and 3 (bignums) of at most `crdt._values.MAX_BIGNUM_BYTES` bytes: in map keys,
  values and anywhere in a map or sync step's top-level array.

Timestamps, digests, registers (outside their value) and `decode_cbor`'s messages
carry no tags at all. Indefinite-length items, maps with repeated keys or with keys
other than text or byte strings, and nesting over `MAX_MESSAGE_DEPTH` (over
`crdt._values.MAX_VALUE_DEPTH` inside a value) are refused too, and so is a map
whose int or tuple keys share hashes more than `MAX_HASH_COLLISIONS` times (building
its dicts would take time quadratic in their number).
"""

from __future__ import annotations

import array
import functools
import itertools
import operator
import sys
from collections.abc import Iterable
from typing import Any

import cbor2

from hlc import MAX_WALL_MS, Timestamp, TimestampError
from hlc._timestamp import MAX_NODE_BYTES
from hlc._timestamp import _check as _check_timestamp

from ._map import LWWMap
from ._merkle import Digest
from ._register import TOMBSTONE, LWWRegister
from ._sync import SyncStep
from ._values import (
    BIGNUMS,
    MAX_VALUE_DEPTH,
    NO_TAGS,
    VALUE_TAGS,
    Tags,
    describe,
    key_from_cbor,
    strict_loads,
)

#: The version written in every encoding; decoding refuses any other.
FORMAT_VERSION = 1
#: The most keys of a decoded map whose hash equals another key's (int and tuple
#: keys can be built to collide; str and bytes hashes are randomized per process).
MAX_HASH_COLLISIONS = 64
#: The default limit on encoded input, in bytes (64 MiB).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: How deeply a message's arrays (and tags) may nest, values aside: a map's keys are
#: tuples at most 8 deep, inside the key list, inside the message.
MAX_MESSAGE_DEPTH = 16


class DecodeError(ValueError):
    """Input bytes are not a valid chorus encoding; nothing was applied."""


def _dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj)


def decode_cbor(data: object, what: str = "message") -> Any:
    """Decode exactly one CBOR item from untrusted bytes, strictly.

    Unlike ``cbor2.loads``, which ignores what follows the first item, trailing
    bytes are an error; and nothing chorus never writes is decoded: no CBOR tag (so
    no shared values, string references, bignums or other costly items), no
    indefinite-length item, no map with repeated keys or with keys other than text or
    byte strings, no nesting over `MAX_MESSAGE_DEPTH`. The work is bounded by a small
    multiple of ``len(data)``.

    Args:
        data: the bytes.
        what: what they should be, to start the error messages with.

    Raises:
        DecodeError: ``data`` is not bytes, is malformed or truncated CBOR, has
            trailing bytes or holds anything listed above.
    """
    return _decode(data, what, NO_TAGS)


def _decode(data: object, what: str, tags: Tags) -> Any:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    try:
        return strict_loads(data, tags, MAX_MESSAGE_DEPTH)
    except ValueError as exc:
        raise DecodeError(f"{what}: malformed CBOR: {exc}") from None


def _loads(data: object, kind: str, max_bytes: int, tags: Tags = NO_TAGS) -> list[Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size > max_bytes:
        raise DecodeError(f"{kind}: {size} bytes is over the {max_bytes}-byte limit")
    obj = _decode(data, kind, tags)
    if type(obj) is not list or len(obj) < 2:
        raise DecodeError(f"{kind}: expected [version, kind, ...]")
    version, found = obj[0], obj[1]
    if type(version) is not int or version != FORMAT_VERSION:
        raise DecodeError(f"{kind}: unsupported format version {describe(version)}")
    if found != kind:
        raise DecodeError(f"expected a {kind!r} encoding, got {describe(found)}")
    return obj[2:]


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise DecodeError(what)


# -- timestamps and registers ------------------------------------------------


def encode_timestamp(ts: Timestamp) -> bytes:
    """Encode a Timestamp as ``[1, "ts", wall_ms, logical, node]``."""
    return _dumps([FORMAT_VERSION, "ts", ts.wall_ms, ts.logical, ts.node])


def _check_node(node: object, what: str) -> None:
    # Checked here first so that hlc's messages, which repr the node, stay short.
    if type(node) is not str or not 0 < len(node) <= MAX_NODE_BYTES:
        raise DecodeError(f"{what}: node must be a non-empty str, got {describe(node)}")
    try:
        _check_timestamp(0, 0, node)
    except TimestampError as exc:
        raise DecodeError(f"{what}: {exc}") from None


def _timestamp(fields: list[Any], kind: str) -> Timestamp:
    wall_ms, logical, node = fields
    if type(wall_ms) is not int or type(logical) is not int:
        raise DecodeError(f"{kind}: bad timestamp: wall_ms and logical must be ints")
    _check_node(node, f"{kind}: bad timestamp")
    try:
        return Timestamp(wall_ms, logical, node)
    except (TimestampError, TypeError) as exc:
        raise DecodeError(f"{kind}: bad timestamp: {exc}") from None


def decode_timestamp(data: bytes, *, max_bytes: int = 1024) -> Timestamp:
    """Decode `encode_timestamp`'s output.

    Raises:
        DecodeError: see the module notes.
    """
    body = _loads(data, "ts", max_bytes)
    _expect(len(body) == 3, "ts: expected wall_ms, logical, node")
    return _timestamp(body, "ts")


def encode_register(register: LWWRegister) -> bytes:
    """Encode a register as ``[1, "reg", wall_ms, logical, node, value bytes]``."""
    ts = register.timestamp
    return _dumps([FORMAT_VERSION, "reg", ts.wall_ms, ts.logical, ts.node, register.payload])


def decode_register(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> LWWRegister:
    """Decode `encode_register`'s output.

    Raises:
        DecodeError: see the module notes.
    """
    body = _loads(data, "reg", max_bytes)
    _expect(len(body) == 4, "reg: expected wall_ms, logical, node, value")
    ts = _timestamp(body[:3], "reg")
    payload = body[3]
    _expect(type(payload) is bytes, "reg: value must be a byte string")
    value = _value(payload, "reg") if payload else TOMBSTONE
    return LWWRegister(value, ts)


def _value(payload: bytes, kind: str) -> Any:
    try:
        value = strict_loads(payload, VALUE_TAGS, MAX_VALUE_DEPTH)
        canonical = _canonical(value)
    except Exception as exc:
        raise DecodeError(f"{kind}: bad value: {exc}") from None
    _expect(canonical == payload, f"{kind}: value is not canonical CBOR")
    return value


# -- maps ----------------------------------------------------------------------


_by_wall, _by_logical, _by_node, _by_payload = (operator.itemgetter(i) for i in range(4))
_canonical = functools.partial(cbor2.dumps, canonical=True)
_UINT32_LE, _UINT64_LE = 70, 71  # RFC 8746 typed-array tags
_SWAP = sys.byteorder != "little"


#: The tags a map's or sync step's top-level array may carry: its typed-array columns
#: and the bignums of its int keys.
_COLUMN_TAGS = Tags(BIGNUMS, byte_tags=(_UINT32_LE, _UINT64_LE))


def _typed(code: str, tag: int, values: Iterable[int]) -> cbor2.CBORTag:
    column = array.array(code, list(values))  # from a list: about 3x faster than an iterator
    if _SWAP:
        column.byteswap()
    return cbor2.CBORTag(tag, column.tobytes())


def _untyped(obj: Any, code: str, tag: int, count: int, kind: str) -> array.array[int]:
    column = array.array(code)
    _expect(
        type(obj) is cbor2.CBORTag and obj.tag == tag and type(obj.value) is bytes,
        f"{kind}: expected an RFC 8746 typed array (tag {tag})",
    )
    _expect(len(obj.value) == count * column.itemsize, f"{kind}: map columns differ in length")
    column.frombytes(obj.value)
    if _SWAP:
        column.byteswap()
    return column


def _array_header(length: int) -> bytes:
    """The CBOR head of an array of ``length`` items (RFC 8949, section 3.1)."""
    if length < 24:
        return bytes([0x80 | length])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * size):
            return bytes([0x80 | info]) + length.to_bytes(size, "big")
    raise OverflowError("array too long for CBOR")


def _key_of(obj: Any) -> Any:
    # A pair of str (a Node's (map, key)) is the common non-str key: no recursion.
    if type(obj) is list and len(obj) == 2 and type(obj[0]) is str and type(obj[1]) is str:
        return (obj[0], obj[1])
    return obj if type(obj) is str else key_from_cbor(obj)


def _map_columns(m: LWWMap) -> list[Any]:
    regs = m._regs
    entries = list(regs.values())
    nodes = list(map(_by_node, entries))
    table = {node: i for i, node in enumerate(dict.fromkeys(nodes))}
    payloads = list(map(_by_payload, entries))
    return [
        list(regs),
        _typed("Q", _UINT64_LE, map(_by_wall, entries)),
        _typed("I", _UINT32_LE, map(_by_logical, entries)),
        _typed("I", _UINT32_LE, map(table.__getitem__, nodes)),
        list(table),
        bytes(map(bool, payloads)),
        b"".join(payloads),  # tombstones are b"": only live values land here
    ]


def _columns_map(columns: list[Any], kind: str) -> LWWMap:
    _expect(len(columns) == 7, f"{kind}: expected 7 map columns")
    keys, walls_col, logicals_col, refs_col, nodes, live, blob = columns
    _expect(type(keys) is list and type(nodes) is list, f"{kind}: keys and nodes must be arrays")
    count = len(keys)
    walls = _untyped(walls_col, "Q", _UINT64_LE, count, kind)
    logicals = _untyped(logicals_col, "I", _UINT32_LE, count, kind)
    refs = _untyped(refs_col, "I", _UINT32_LE, count, kind)
    _expect(type(live) is bytes and len(live) == count, f"{kind}: bad live flags")
    _expect(not live.translate(None, b"\x00\x01"), f"{kind}: live flags must be 0 or 1")
    _expect(type(blob) is bytes, f"{kind}: values must be a byte string")
    if count:
        _expect(max(walls) <= MAX_WALL_MS, f"{kind}: wall_ms out of range")
        _expect(max(refs) < len(nodes), f"{kind}: node index out of range")
    for node in nodes:
        _check_node(node, f"{kind}: bad node id")
    if set(map(type, keys)) - {str}:  # str keys, the common case, need no walk
        try:
            keys = [_key_of(key) for key in keys]
        except TypeError as exc:
            raise DecodeError(f"{kind}: {exc}") from None
        # Python randomizes the hashes of str and bytes, not of ints and tuples: keys
        # made to share a hash would make building the map's dicts quadratic. Hash
        # values are ints, equal when they collide, so counting them is linear.
        collisions = count - len(set(map(hash, keys)))
        _expect(
            collisions <= MAX_HASH_COLLISIONS,
            f"{kind}: {collisions} keys share another key's hash (at most "
            f"{MAX_HASH_COLLISIONS} may): keys built to collide",
        )

    # The values are a CBOR sequence (RFC 8742): decode it as one array, then check
    # that re-encoding each value gives back the bytes exactly. That proves every
    # value canonical and fixes the boundaries between them. The array adds a level of
    # nesting, so a value may nest here as deep as on its own.
    live_count = live.count(1)
    try:
        values = strict_loads(_array_header(live_count) + blob, VALUE_TAGS, MAX_VALUE_DEPTH + 1)
    except ValueError as exc:  # "bad value: 3 trailing bytes", if the sequence says so
        raise DecodeError(f"{kind}: bad value: {exc}") from None
    try:
        payloads = list(map(_canonical, values))
    except Exception as exc:
        raise DecodeError(f"{kind}: bad value: {exc}") from None
    _expect(b"".join(payloads) == blob, f"{kind}: values are not canonical CBOR")

    if live_count != count:
        it = iter(payloads)
        payloads = [next(it) if flag else b"" for flag in live]
    result = LWWMap()
    entries = zip(walls, logicals, map(nodes.__getitem__, refs), payloads, strict=True)
    result._regs = dict(zip(keys, entries, strict=True))
    _expect(len(result._regs) == count, f"{kind}: repeated keys")
    result._live = dict(zip(itertools.compress(keys, live), values, strict=True))
    return result


def encode_map(m: LWWMap) -> bytes:
    """Encode a map's full state (a delta is a map too), tombstones included."""
    return _dumps([FORMAT_VERSION, "map", *_map_columns(m)])


def decode_map(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> LWWMap:
    """Decode `encode_map`'s output into a new LWWMap.

    Raises:
        DecodeError: see the module notes.
    """
    return _columns_map(_loads(data, "map", max_bytes, _COLUMN_TAGS), "map")


# -- digests and sync steps ----------------------------------------------------


def _digest_flat(digest: Digest) -> list[int]:
    flat: list[int] = []
    for (level, index), h, count in digest:
        flat += (level, index, h, count)
    return flat


def _flat_digest(flat: Any, kind: str) -> Digest:
    _expect(type(flat) is list and len(flat) % 4 == 0, f"{kind}: bad digest")
    _expect(all(type(x) is int for x in flat), f"{kind}: digest fields must be ints")
    items = [((flat[i], flat[i + 1]), flat[i + 2], flat[i + 3]) for i in range(0, len(flat), 4)]
    for _, h, count in items:
        _expect(0 <= h < 2**64 and 0 <= count < 2**63, f"{kind}: digest field out of range")
    try:
        return Digest(items)
    except ValueError as exc:
        raise DecodeError(f"{kind}: {exc}") from None


def encode_digest(digest: Digest) -> bytes:
    """Encode a digest as ``[1, "digest", [level, index, hash, count, ...]]``."""
    return _dumps([FORMAT_VERSION, "digest", _digest_flat(digest)])


def decode_digest(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Digest:
    """Decode `encode_digest`'s output.

    Raises:
        DecodeError: see the module notes.
    """
    body = _loads(data, "digest", max_bytes)
    _expect(len(body) == 1, "digest: expected one field")
    return _flat_digest(body[0], "digest")


def _prefixes_flat(prefixes: Iterable[tuple[int, int]]) -> list[int]:
    return [part for prefix in prefixes for part in prefix]


def _flat_prefixes(flat: Any, kind: str, what: str) -> list[tuple[int, int]]:
    _expect(type(flat) is list and len(flat) % 2 == 0, f"{kind}: bad {what} list")
    _expect(all(type(x) is int for x in flat), f"{kind}: {what} fields must be ints")
    return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def encode_sync_step(step: SyncStep) -> bytes:
    """Encode a step: ``[1, "sync", digest, <7 map columns>, complete, pull]``.

    ``digest`` is flat as in `encode_digest`; ``complete`` and ``pull`` are flat
    ``[level, index, ...]`` lists.
    """
    return _dumps(
        [
            FORMAT_VERSION,
            "sync",
            _digest_flat(step.digest),
            *_map_columns(step.delta),
            _prefixes_flat(step.complete),
            _prefixes_flat(step.pull),
        ]
    )


def decode_sync_step(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> SyncStep:
    """Decode `encode_sync_step`'s output.

    Raises:
        DecodeError: see the module notes.
    """
    body = _loads(data, "sync", max_bytes, _COLUMN_TAGS)
    _expect(len(body) == 10, "sync: expected digest, 7 map columns, complete, pull")
    digest = _flat_digest(body[0], "sync")
    delta = _columns_map(body[1:8], "sync")
    complete = _flat_prefixes(body[8], "sync", "complete")
    pull = _flat_prefixes(body[9], "sync", "pull")
    try:
        return SyncStep(digest=digest, delta=delta, complete=complete, pull=pull)
    except ValueError as exc:
        raise DecodeError(f"sync: {exc}") from None
