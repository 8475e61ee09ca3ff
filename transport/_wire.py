"""The Node's messages on the wire, and a cheap peek at their kind.

Every message is one CBOR array ``[1, kind, ...]`` (see crdt's codec):

- ``"heartbeat"``: a `Heartbeat`, sent to each peer every heartbeat interval;
- ``"members"``: ``[1, "members", [wall_ms, logical], membership]``, the sender's
  HLC reading and its whole `Membership`, sent when heartbeats show the two sides'
  memberships differ;
- ``"ack"``: ``[1, "ack", [wall_ms, logical]]``: "I merged your delta whose newest
  entry of yours is at this HLC reading" (see `Node.wait_replicated`);
- ``"map"``: a delta, as `crdt.encode_map` writes it;
- ``"sync"``: an anti-entropy step, as `crdt.encode_sync_step` writes it;
- ``"call"``, ``"reply"``: a request to a service and its answer (see
  `transport._calls`);
- ``"services"``: ``[1, "services", incarnation, seq, [name, ...]]``, the services the
  sender serves, sent when they change, to a peer that links up, and now and then.

A node of an older version drops a message of a kind it does not know (counted as
rejected), so new kinds never disturb it; the shapes of the old kinds never change.

The decoders here read untrusted bytes through `crdt.decode_cbor`, which refuses every
CBOR tag, indefinite-length item and deep nesting while decoding, so a message's
decoding costs at most a small multiple of its size.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any, cast

import attrs
import cbor2

from crdt import FORMAT_VERSION, DecodeError, decode_cbor
from crdt._stability import Point
from hlc import MAX_LOGICAL, MAX_WALL_MS

from ._membership import Membership

KINDS = frozenset({"ack", "heartbeat", "members", "map", "sync", "call", "reply", "services"})
#: Longest incarnation id accepted, in characters.
MAX_INCARNATION = 64
#: Most members a heartbeat's vectors may list.
MAX_MEMBERS = 4096


@attrs.frozen
class Heartbeat:
    """What a node tells each peer every heartbeat interval.

    Attributes:
        incarnation: the sender's incarnation id (the part after ``name/``).
        synced: whether a joiner may pull the sender's state.
        cluster: the sender's cluster id (None while it has joined none).
        membership: `Membership.digest` of the sender's member set state.
        epoch: `crdt._stability.membership_epoch` of its current members.
        clock: its HLC reading ``(wall_ms, logical)`` when it built the heartbeat.
        wall_ms: its clock then, in ms since the epoch (for clock-offset checks): the
            wall clock less any step it has not adopted (`Node.unconfirmed_step_ms`).
        root: ``(hash, count)`` of its whole state's Merkle root at ``clock``.
        floor: its tombstone floor ``(wall_ms, logical)``.
        coverage: its coverage vector, in its epoch's member order.
        reports: the stability reports it knows, in the same order.
        step_ms: its wall-clock step not adopted yet, in ms (its wall clock reads
            ``wall_ms + step_ms``; peers compare wall clocks to confirm steps).
    """

    incarnation: str
    synced: bool
    cluster: str | None
    membership: bytes
    epoch: bytes
    clock: Point
    wall_ms: int
    root: tuple[int, int]
    floor: Point
    coverage: tuple[Point, ...] = ()
    reports: tuple[Point, ...] = ()
    step_ms: int = 0


def peek_kind(data: bytes) -> str:
    """Return a message's kind by reading only its first bytes.

    Raises:
        DecodeError: the message does not start like ``[1, kind, ...]`` with a known
            version and kind.
    """
    if len(data) < 3:
        raise DecodeError("message too short")
    head = data[0]
    if head >> 5 != 4:  # major type 4: array
        raise DecodeError("message is not a CBOR array")
    offset = 1 + {24: 1, 25: 2, 26: 4, 27: 8}.get(head & 0x1F, 0)
    if offset >= len(data) or data[offset] != FORMAT_VERSION:
        raise DecodeError("unsupported message version")
    text = data[offset + 1] if offset + 1 < len(data) else 0
    if text >> 5 != 3 or (text & 0x1F) >= 24:  # a short text string
        raise DecodeError("message kind is not a short string")
    start = offset + 2
    try:
        kind = data[start : start + (text & 0x1F)].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("message kind is not ASCII") from None
    if kind not in KINDS:
        raise DecodeError(f"unknown message kind {kind!r}")
    return kind


def encode_heartbeat(heartbeat: Heartbeat) -> bytes:
    """Encode a `Heartbeat` as ``[1, "heartbeat", field, ...]`` in field order.

    The two vectors are byte strings of 12 bytes per point (big-endian uint64
    ``wall_ms``, uint32 ``logical``), so decoding them is one C call, not a loop.
    """
    h = heartbeat
    return cbor2.dumps(
        [
            FORMAT_VERSION,
            "heartbeat",
            h.incarnation,
            h.synced,
            h.cluster,
            h.membership,
            h.epoch,
            list(h.clock),
            h.wall_ms,
            list(h.root),
            list(h.floor),
            _pack(h.coverage),
            _pack(h.reports),
            h.step_ms,
        ]
    )


_POINT = struct.Struct(">QI")


def _pack(points: tuple[Point, ...]) -> bytes:
    return struct.pack(">" + "QI" * len(points), *itertools.chain.from_iterable(points))


def _unpack(blob: object) -> tuple[Point, ...]:
    if type(blob) is not bytes or len(blob) % _POINT.size or len(blob) > MAX_MEMBERS * 12:
        raise DecodeError("heartbeat: a vector is not 12 bytes per point")
    points = tuple(_POINT.iter_unpack(blob))
    if points and max(points)[0] > MAX_WALL_MS:
        raise DecodeError("heartbeat: a vector's wall_ms is out of range")
    return cast(tuple[Point, ...], points)


def _point(obj: object) -> Point:
    if (
        type(obj) is not list
        or len(obj) != 2
        or type(obj[0]) is not int
        or type(obj[1]) is not int
        or not 0 <= obj[0] <= MAX_WALL_MS
        or not 0 <= obj[1] <= MAX_LOGICAL
    ):
        raise DecodeError("heartbeat: expected an HLC reading [wall_ms, logical]")
    return (obj[0], obj[1])


def decode_heartbeat(data: bytes) -> Heartbeat:
    """Decode and check a heartbeat.

    Raises:
        DecodeError: malformed, of another shape, or with out-of-range fields.
    """
    obj = decode_cbor(data, "heartbeat")
    if type(obj) is not list or len(obj) != 14 or obj[:2] != [FORMAT_VERSION, "heartbeat"]:
        raise DecodeError("heartbeat: expected [1, 'heartbeat', 12 fields]")
    incarnation, synced, cluster, membership, epoch, clock, wall, root, floor, cov, rep, step = obj[
        2:
    ]
    if (
        type(incarnation) is not str
        or not 0 < len(incarnation) <= MAX_INCARNATION
        or not incarnation.replace("-", "").replace("_", "").isalnum()
        or not incarnation.isascii()
        or type(synced) is not bool
        or not (cluster is None or (type(cluster) is str and len(cluster) <= 256))
        or type(membership) is not bytes
        or type(epoch) is not bytes
        or len(membership) != 8
        or len(epoch) != 8
        or type(wall) is not int
        or not 0 <= wall <= MAX_WALL_MS
        or type(root) is not list
        or len(root) != 2
        or type(root[0]) is not int
        or type(root[1]) is not int
        or not 0 <= root[0] < 2**64
        or not 0 <= root[1] < 2**63
        or type(cov) is not bytes
        or type(rep) is not bytes
        or len(rep) != len(cov)
        or type(step) is not int
        or not -MAX_WALL_MS <= step <= MAX_WALL_MS
        or not 0 <= wall + step <= MAX_WALL_MS
    ):
        raise DecodeError("heartbeat: a field has the wrong type or range")
    return Heartbeat(
        incarnation,
        synced,
        cluster,
        membership,
        epoch,
        _point(clock),
        wall,
        (root[0], root[1]),
        _point(floor),
        _unpack(cov),
        _unpack(rep),
        step,
    )


def encode_ack(point: Point) -> bytes:
    """Encode an ``ack`` of the delta whose newest entry of the receiver is ``point``."""
    return cbor2.dumps([FORMAT_VERSION, "ack", list(point)])


def decode_ack(data: bytes) -> Point:
    """Decode an ``ack``.

    Raises:
        DecodeError: malformed.
    """
    obj: Any = decode_cbor(data, "ack")
    if type(obj) is not list or len(obj) != 3 or obj[:2] != [FORMAT_VERSION, "ack"]:
        raise DecodeError("ack: expected [1, 'ack', [wall_ms, logical]]")
    return _point(obj[2])


def encode_members(clock: Point, membership: Membership) -> bytes:
    """Encode a ``members`` message: the sender's HLC reading and membership."""
    return cbor2.dumps([FORMAT_VERSION, "members", list(clock), membership.to_wire()])


def decode_members(data: bytes) -> tuple[Point, Membership]:
    """Decode a ``members`` message.

    Raises:
        DecodeError: malformed.
    """
    obj: Any = decode_cbor(data, "members")
    if type(obj) is not list or len(obj) != 4 or obj[:2] != [FORMAT_VERSION, "members"]:
        raise DecodeError("members: expected [1, 'members', clock, membership]")
    try:
        return _point(obj[2]), Membership.from_wire(obj[3])
    except ValueError as exc:
        raise DecodeError(str(exc)) from None


# -- calls (see transport/_calls.py) ------------------------------------------------------

#: Longest service name, in characters.
MAX_SERVICE_CHARS = 100
#: Most services one node may serve.
MAX_SERVICES = 64
#: A reply's status: the handler's answer, or why there is none.
REPLY_STATUSES = frozenset({"ok", "error", "unknown_service", "overloaded", "expired", "restarted"})


#: Why a name is not a service name (for the errors of both sides of the wire).
SERVICE_NAME_RULE = f"a service name is 1 to {MAX_SERVICE_CHARS} ASCII characters"


def valid_service(name: object) -> bool:
    """True when ``name`` is a service name: 1 to `MAX_SERVICE_CHARS` ASCII characters."""
    return type(name) is str and 0 < len(name) <= MAX_SERVICE_CHARS and name.isascii()


def _check_service(name: object) -> str:
    if not valid_service(name):
        raise DecodeError(SERVICE_NAME_RULE)
    return cast(str, name)


def encode_call(
    call_id: int,
    service: str,
    timeout_ms: int,
    incarnation: str,
    payload: bytes,
    *,
    caller: str = "",
    sent_wall_ms: int = 0,
) -> bytes:
    """``[1, "call", id, service, timeout_ms, incarnation, payload, caller,
    sent_wall_ms]``: call ``service`` on the incarnation ``incarnation`` of the
    receiver ("" for whichever runs), answering within ``timeout_ms``; ``payload`` is
    the argument's canonical CBOR; ``caller`` is the caller's incarnation and
    ``sent_wall_ms`` its clock when it sent the call (0: not said), so that the
    callee can tell a call that arrives after its caller gave up."""
    return cbor2.dumps(
        [
            FORMAT_VERSION,
            "call",
            call_id,
            service,
            timeout_ms,
            incarnation,
            payload,
            caller,
            sent_wall_ms,
        ]
    )


@attrs.frozen
class Call:
    """A decoded ``call`` (see `encode_call`)."""

    call_id: int
    service: str
    timeout_ms: int
    incarnation: str
    payload: bytes
    caller: str
    sent_wall_ms: int


def decode_call(data: bytes) -> Call:
    """Decode a ``call``.

    Raises:
        DecodeError: malformed, or a field of the wrong type or range.
    """
    obj: Any = decode_cbor(data, "call")
    if type(obj) is not list or len(obj) != 9 or obj[:2] != [FORMAT_VERSION, "call"]:
        raise DecodeError(
            "call: expected [1, 'call', id, service, timeout_ms, incarnation, payload, "
            "caller, sent_wall_ms]"
        )
    call_id, service, timeout_ms, incarnation, payload, caller, sent = obj[2:]
    if (
        type(call_id) is not int
        or not 0 <= call_id < 2**64
        or type(timeout_ms) is not int
        or not 0 < timeout_ms <= 24 * 3600 * 1000
        or type(incarnation) is not str
        or len(incarnation) > MAX_INCARNATION
        or type(payload) is not bytes
        or type(caller) is not str
        or len(caller) > MAX_INCARNATION
        or type(sent) is not int
        or not 0 <= sent <= MAX_WALL_MS
    ):
        raise DecodeError("call: a field has the wrong type or range")
    return Call(call_id, _check_service(service), timeout_ms, incarnation, payload, caller, sent)


def encode_reply(call_id: int, status: str, body: bytes | str) -> bytes:
    """``[1, "reply", id, status, body]``: the answer's canonical CBOR when ``status`` is
    ``"ok"``, else a message saying why there is none."""
    return cbor2.dumps([FORMAT_VERSION, "reply", call_id, status, body])


def decode_reply(data: bytes) -> tuple[int, str, bytes | str]:
    """Decode a ``reply``: ``(id, status, body)``.

    Raises:
        DecodeError: malformed, an unknown status, or a body of the wrong type.
    """
    obj: Any = decode_cbor(data, "reply")
    if type(obj) is not list or len(obj) != 5 or obj[:2] != [FORMAT_VERSION, "reply"]:
        raise DecodeError("reply: expected [1, 'reply', id, status, body]")
    call_id, status, body = obj[2:]
    if type(call_id) is not int or not 0 <= call_id < 2**64 or status not in REPLY_STATUSES:
        raise DecodeError("reply: a field has the wrong type or range")
    if (status == "ok") != (type(body) is bytes) or type(body) not in (bytes, str):
        raise DecodeError("reply: an ok reply carries bytes, any other a message")
    return call_id, status, body


def encode_services(incarnation: str, seq: int, services: frozenset[str]) -> bytes:
    """``[1, "services", incarnation, seq, [name, ...]]``: the services the sender's
    incarnation ``incarnation`` serves now (sorted), ``seq`` counting its changes so
    that a receiver keeps the newest of messages that arrive out of order."""
    return cbor2.dumps([FORMAT_VERSION, "services", incarnation, seq, sorted(services)])


def decode_services(data: bytes) -> tuple[str, int, frozenset[str]]:
    """Decode a ``services`` message: ``(incarnation, seq, services)``.

    Raises:
        DecodeError: malformed, or more than `MAX_SERVICES` names.
    """
    obj: Any = decode_cbor(data, "services")
    if type(obj) is not list or len(obj) != 5 or obj[:2] != [FORMAT_VERSION, "services"]:
        raise DecodeError("services: expected [1, 'services', incarnation, seq, names]")
    incarnation, seq, names = obj[2:]
    if (
        type(incarnation) is not str
        or not 0 < len(incarnation) <= MAX_INCARNATION
        or type(seq) is not int
        or not 0 <= seq < 2**63
        or type(names) is not list
        or len(names) > MAX_SERVICES
    ):
        raise DecodeError("services: a field has the wrong type or range")
    return incarnation, seq, frozenset(_check_service(n) for n in names)
