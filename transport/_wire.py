"""The Node's messages on the wire, and a cheap peek at their kind.

Every message is one CBOR array ``[1, kind, ...]`` (see crdt's codec):

- ``"heartbeat"``: ``[1, "heartbeat", incarnation, synced, floor_ms]``, sent every
  heartbeat interval; ``synced`` tells joiners whether this node may be pulled from,
  ``floor_ms`` how far it has collected tombstones;
- ``"map"``: a delta, as `crdt.encode_map` writes it;
- ``"sync"``: an anti-entropy step, as `crdt.encode_sync_step` writes it.
"""

from __future__ import annotations

import cbor2

from crdt import FORMAT_VERSION, DecodeError, decode_cbor

KINDS = frozenset({"heartbeat", "map", "sync"})
#: Longest incarnation id accepted, in characters.
MAX_INCARNATION = 64


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


def encode_heartbeat(incarnation: str, synced: bool = True, floor_ms: int = 0) -> bytes:
    """Encode a heartbeat: incarnation id, whether synced, tombstone floor (ms)."""
    return cbor2.dumps([FORMAT_VERSION, "heartbeat", incarnation, synced, floor_ms])


def decode_heartbeat(data: bytes) -> tuple[str, bool, int]:
    """Return the ``(incarnation id, synced, floor_ms)`` a heartbeat carries.

    Raises:
        DecodeError: malformed.
    """
    obj = decode_cbor(data, "heartbeat")
    if (
        type(obj) is not list
        or len(obj) != 5
        or obj[:2] != [FORMAT_VERSION, "heartbeat"]
        or type(obj[2]) is not str
        or not 0 < len(obj[2]) <= MAX_INCARNATION
        or type(obj[3]) is not bool
        or type(obj[4]) is not int
        or not 0 <= obj[4] < 2**48
    ):
        raise DecodeError("heartbeat: expected [1, 'heartbeat', incarnation, synced, floor_ms]")
    return obj[2], obj[3], obj[4]
