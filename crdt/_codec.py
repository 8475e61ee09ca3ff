"""CBOR encodings of timestamps, registers, maps, digests and sync steps.

Every encoding is one CBOR array (RFC 8949) that starts with the format version and
a kind: ``[FORMAT_VERSION, kind, ...]``. Maps are columnar, which decodes about four
times faster than one array per entry::

    [1, "map", [key...], [wall_ms...], [logical...], [node index...], [node...], [value...]]

Each value is a byte string holding the value's canonical CBOR (empty for a
tombstone). Node ids are listed once and referenced by index.

Decoding trusts nothing: input over ``max_bytes``, malformed or truncated CBOR,
trailing bytes, an unknown version or kind, wrong types, out-of-range fields, repeated
keys and non-canonical values all raise `DecodeError`, and nothing is applied.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from hlc import Timestamp, TimestampError
from hlc._timestamp import _check as _check_timestamp

from ._map import LWWMap
from ._merkle import Digest, Entry
from ._register import TOMBSTONE, LWWRegister
from ._sync import SyncStep
from ._values import key_from_cbor

#: The version written in every encoding; decoding refuses any other.
FORMAT_VERSION = 1
#: The default limit on encoded input, in bytes (64 MiB).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class DecodeError(ValueError):
    """Input bytes are not a valid chorus encoding; nothing was applied."""


def _dumps(obj: Any) -> bytes:
    return cbor2.dumps(obj)


def _loads(data: object, kind: str, max_bytes: int) -> list[Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    size = len(data)
    if size > max_bytes:
        raise DecodeError(f"{kind}: {size} bytes is over the {max_bytes}-byte limit")
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise DecodeError(f"{kind}: malformed CBOR: {exc}") from None
    if stream.tell() != size:
        raise DecodeError(f"{kind}: {size - stream.tell()} trailing bytes")
    if type(obj) is not list or len(obj) < 2:
        raise DecodeError(f"{kind}: expected [version, kind, ...]")
    version, found = obj[0], obj[1]
    if type(version) is not int or version != FORMAT_VERSION:
        raise DecodeError(f"{kind}: unsupported format version {version!r:.40}")
    if found != kind:
        raise DecodeError(f"expected a {kind!r} encoding, got {found!r:.40}")
    return obj[2:]


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise DecodeError(what)


# -- timestamps and registers ------------------------------------------------


def encode_timestamp(ts: Timestamp) -> bytes:
    """Encode a Timestamp as ``[1, "ts", wall_ms, logical, node]``."""
    return _dumps([FORMAT_VERSION, "ts", ts.wall_ms, ts.logical, ts.node])


def _timestamp(fields: list[Any], kind: str) -> Timestamp:
    try:
        return Timestamp(*fields)
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
        value = cbor2.loads(payload)
        canonical = cbor2.dumps(value, canonical=True)
    except Exception as exc:
        raise DecodeError(f"{kind}: bad value: {exc}") from None
    _expect(canonical == payload, f"{kind}: value is not canonical CBOR")
    return value


# -- maps ----------------------------------------------------------------------


def _map_columns(m: LWWMap) -> list[Any]:
    regs = m._regs
    node_index: dict[str, int] = {}
    keys: list[Any] = list(regs)
    walls: list[int] = []
    logicals: list[int] = []
    nodes: list[int] = []
    payloads: list[bytes] = []
    for wall_ms, logical, node, payload in regs.values():
        walls.append(wall_ms)
        logicals.append(logical)
        index = node_index.get(node)
        if index is None:
            index = node_index[node] = len(node_index)
        nodes.append(index)
        payloads.append(payload)
    return [keys, walls, logicals, nodes, list(node_index), payloads]


def _columns_map(columns: list[Any], kind: str) -> LWWMap:
    _expect(len(columns) == 6, f"{kind}: expected 6 map columns")
    keys, walls, logicals, node_refs, nodes, payloads = columns
    _expect(all(type(c) is list for c in columns), f"{kind}: map columns must be arrays")
    count = len(keys)
    _expect(
        len(walls) == len(logicals) == len(node_refs) == len(payloads) == count,
        f"{kind}: map columns differ in length",
    )
    for node in nodes:
        try:
            _check_timestamp(0, 0, node)
        except TimestampError as exc:
            raise DecodeError(f"{kind}: bad node id: {exc}") from None
    result = LWWMap()
    regs, live = result._regs, result._live
    loads, dumps = cbor2.loads, cbor2.dumps
    node_count = len(nodes)
    try:
        for key, wall_ms, logical, ref, payload in zip(
            keys, walls, logicals, node_refs, payloads, strict=True
        ):
            if type(key) is not str:  # str keys are the common case: skip the walk
                key = key_from_cbor(key)
            _check_timestamp(wall_ms, logical, "n")
            if type(ref) is not int or not 0 <= ref < node_count:
                raise DecodeError(f"{kind}: node index {ref!r:.20} out of range")
            if type(payload) is not bytes:
                raise DecodeError(f"{kind}: values must be byte strings")
            entry: Entry = (wall_ms, logical, nodes[ref], payload)
            regs[key] = entry
            if payload:
                value = loads(payload)
                if dumps(value, canonical=True) != payload:
                    raise DecodeError(f"{kind}: value of {key!r:.40} is not canonical CBOR")
                live[key] = value
    except DecodeError:
        raise
    except (TypeError, TimestampError) as exc:
        raise DecodeError(f"{kind}: bad entry: {exc}") from None
    except Exception as exc:  # a value payload that cbor2 refuses
        raise DecodeError(f"{kind}: bad value: {exc}") from None
    _expect(len(regs) == count, f"{kind}: repeated keys")
    return result


def encode_map(m: LWWMap) -> bytes:
    """Encode a map's full state (a delta is a map too), tombstones included."""
    return _dumps([FORMAT_VERSION, "map", *_map_columns(m)])


def decode_map(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> LWWMap:
    """Decode `encode_map`'s output into a new LWWMap.

    Raises:
        DecodeError: see the module notes.
    """
    return _columns_map(_loads(data, "map", max_bytes), "map")


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


def encode_sync_step(step: SyncStep) -> bytes:
    """Encode a step as ``[1, "sync", digest, map columns..., [level, index, ...]]``."""
    complete: list[int] = []
    for level, index in step.complete:
        complete += (level, index)
    return _dumps(
        [FORMAT_VERSION, "sync", _digest_flat(step.digest), *_map_columns(step.delta), complete]
    )


def decode_sync_step(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> SyncStep:
    """Decode `encode_sync_step`'s output.

    Raises:
        DecodeError: see the module notes.
    """
    body = _loads(data, "sync", max_bytes)
    _expect(len(body) == 8, "sync: expected digest, 6 map columns, complete")
    digest = _flat_digest(body[0], "sync")
    delta = _columns_map(body[1:7], "sync")
    flat = body[7]
    _expect(type(flat) is list and len(flat) % 2 == 0, "sync: bad complete list")
    try:
        return SyncStep(
            digest=digest,
            delta=delta,
            complete=[(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)],
        )
    except ValueError as exc:
        raise DecodeError(f"sync: {exc}") from None
