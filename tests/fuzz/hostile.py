"""Hand-built hostile CBOR: the inputs the strict decoders must refuse, and fast.

Shared by the codec's tests (tests/crdt/test_strict_cbor.py), the fuzz tests and
the corpus writer (``python -m tests.fuzz.seed_corpus``).
"""

from __future__ import annotations

from typing import Any

import cbor2

from crdt import LWWMap, SyncStep, encode_map, encode_sync_step
from hlc import Timestamp

SHAREABLE, SHAREDREF = 28, 29
STRINGREF, STRINGREF_NAMESPACE = 25, 256


def head(major: int, argument: int) -> bytes:
    """The head of a CBOR item (RFC 8949, section 3): major type and argument."""
    if argument < 24:
        return bytes([major << 5 | argument])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if argument < 1 << (8 * size):
            return bytes([major << 5 | info]) + argument.to_bytes(size, "big")
    raise OverflowError(argument)


def tag(number: int, item: bytes) -> bytes:
    """``item`` (encoded) under tag ``number``."""
    return head(6, number) + item


def array(*items: bytes) -> bytes:
    """An array of already encoded items."""
    return head(4, len(items)) + b"".join(items)


def sharing_bomb(levels: int) -> bytes:
    """An array of ``levels`` shared arrays, each holding two references to the one before.

    About 6 bytes a level; it decodes (with value sharing) into a DAG whose tree, as a
    re-encode walks it, has 2**levels leaves.
    """
    items = [tag(SHAREABLE, array())]
    for i in range(1, levels):
        ref = tag(SHAREDREF, head(0, i - 1))
        items.append(tag(SHAREABLE, array(ref, ref)))
    return array(*items)


def stringref_bomb(length: int = 1000, refs: int = 10_000) -> bytes:
    """A string reference namespace holding one ``length``-byte string and ``refs``
    3-byte references to it: a re-encode writes the string ``refs + 1`` times."""
    text = head(3, length) + b"a" * length
    ref = tag(STRINGREF, head(0, 0))
    return tag(STRINGREF_NAMESPACE, head(4, refs + 1) + text + ref * refs)


def one_map() -> LWWMap:
    """A map of one live entry, ``"a" = 0``."""
    m = LWWMap()
    m.set("a", 0, Timestamp(5, 0, "n"))
    return m


def map_with_values(blob: bytes) -> bytes:
    """A "map" message of one live key whose values column is ``blob``."""
    fields: list[Any] = cbor2.loads(encode_map(one_map()))
    fields[8] = blob
    return cbor2.dumps(fields)


def sync_with_values(blob: bytes) -> bytes:
    """A "sync" message whose delta holds one live key with values column ``blob``."""
    fields: list[Any] = cbor2.loads(encode_sync_step(SyncStep(delta=one_map())))
    fields[9] = blob
    return cbor2.dumps(fields)


def register_with_value(payload: bytes) -> bytes:
    """A "reg" message whose value bytes are ``payload``."""
    return cbor2.dumps([1, "reg", 5, 0, "n", payload])


#: A value under each tag cbor2 would decode itself, and some it would not: every one
#: must be refused in a value (tags 2 and 3, bignums, are allowed there).
REFUSED_VALUE_TAGS = {
    0: tag(0, head(3, 20) + b"2013-03-21T20:04:00Z"),  # datetime string
    1: tag(1, head(0, 1_363_896_240)),  # epoch datetime
    4: tag(4, array(head(1, 1), head(0, 27315))),  # decimal fraction
    5: tag(5, array(head(0, 1_000_000_000), head(0, 3))),  # bigfloat: 3 * 2**1e9
    25: tag(25, head(0, 0)),  # string reference
    28: tag(28, array()),  # shareable
    29: tag(29, head(0, 0)),  # shared reference
    30: tag(30, array(head(0, 1), head(0, 3))),  # rational
    35: tag(35, head(3, 8) + b"(a+)+$!!"),  # regular expression
    36: tag(36, head(3, 10) + b"Subject: x"),  # MIME message
    37: tag(37, head(2, 16) + bytes(16)),  # UUID
    52: tag(52, head(2, 4) + bytes(4)),  # IPv4 address
    54: tag(54, head(2, 16) + bytes(16)),  # IPv6 address
    70: tag(70, head(2, 4) + bytes(4)),  # typed array: only map columns
    71: tag(71, head(2, 8) + bytes(8)),  # typed array: only map columns
    100: tag(100, head(0, 1)),  # epoch date
    256: tag(256, array()),  # string reference namespace
    258: tag(258, array(head(0, 1))),  # set
    260: tag(260, head(2, 4) + bytes(4)),  # network address
    261: tag(261, cbor2.dumps({b"\x00\x00\x00\x00": 8})),  # network prefix
    1004: tag(1004, head(3, 10) + b"2013-03-21"),  # date string
    43000: tag(43000, array(head(0, 1), head(0, 2))),  # complex
    55799: tag(55799, head(0, 1)),  # self-described CBOR
    1234: tag(1234, head(0, 1)),  # a tag no one decodes
    2**64 - 1: tag(2**64 - 1, head(0, 1)),  # the largest tag number
}
