"""Hypothesis strategies for fuzzing decoders: random CBOR items and mutated encodings.

Random bytes rarely get past a decoder's first check, so most inputs here start from
something valid (see `tests.fuzz.targets`) and break it a little: flip or set a byte,
splice in a CBOR head that asks for costly work (a shared value, a string reference,
an indefinite length, a huge length, a bignum), truncate, extend, duplicate a slice;
or replace one field of a valid message by a random CBOR item, tags and all.
"""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import strategies as st

from tests.fuzz.hostile import (
    REFUSED_VALUE_TAGS,
    array,
    head,
    sharing_bomb,
    stringref_bomb,
    tag,
)

#: Byte strings worth splicing into an encoding.
SPLICES = [
    b"\xd8\x1c",  # shareable
    b"\xd8\x1d\x00",  # shared reference 0
    b"\xd9\x01\x00",  # string reference namespace
    b"\xd8\x19\x00",  # string reference 0
    b"\xc2\x41\x01",  # bignum
    b"\xc3\x41\x01",  # negative bignum
    b"\xc2\x58\x81" + b"\xff" * 129,  # a bignum over the limit
    b"\xd8\x46\x40",  # typed array, uint32 LE
    b"\xd8\x47\x40",  # typed array, uint64 LE
    b"\xc0",  # datetime
    b"\xc4\x82\x01\x1b\x7f\xff\xff\xff\xff\xff\xff\xff",  # decimal, huge exponent
    b"\xc5\x82\x1a\x3b\x9a\xca\x00\x01",  # bigfloat
    b"\xd8\x23\x68(a+)+$!!",  # regular expression
    b"\xd8\x24\x61x",  # MIME
    b"\xd9\x01\x02",  # set
    b"\xd9\xd9\xf7",  # self-described CBOR
    b"\x5f",  # indefinite byte string
    b"\x7f",  # indefinite text string
    b"\x9f",  # indefinite array
    b"\xbf",  # indefinite map
    b"\xff",  # break
    b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",  # the largest uint
    b"\x3b\xff\xff\xff\xff\xff\xff\xff\xff",  # the most negative int
    b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",  # a byte string of 2**64 - 1 bytes
    b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00",  # an array of 2**32 items
    b"\xbb\xff\xff\xff\xff\xff\xff\xff\xff",  # a map of 2**64 - 1 pairs
    b"\xf9\x7e\x00",  # NaN
    b"\xfb\x7f\xf0\x00\x00\x00\x00\x00\x00",  # infinity
    b"\xf7",  # undefined
    b"\xf8\x20",  # simple value 32
    b"\xa2\x61a\x01\x61a\x02",  # a map with a repeated key
    b"\xa1\x01\x02",  # a map with an int key
    b"\x81" * 20 + b"\x01",  # deep nesting
    sharing_bomb(24),
    stringref_bomb(64, 64),
    b"\x00\x00\x00\x00",  # a zero frame length
    b"\xff\xff\xff\xff",  # the largest frame length
    b"\x00\x00\x04\x00",  # a frame of 1024 bytes
]

#: Tag numbers worth trying: each refused one, the allowed ones, and the edges.
TAG_NUMBERS = [*REFUSED_VALUE_TAGS, 2, 3, 70, 71, 24, 64, 2**32, 2**63]


def _text(s: str) -> bytes:
    data = s.encode("utf-8", "surrogatepass")
    return head(3, len(data)) + data


def _wide_head(major: int, value: int, width: int) -> bytes:
    """A head with a wider argument than needed (not canonical, still valid CBOR)."""
    info, size = {1: (24, 1), 2: (25, 2), 4: (26, 4), 8: (27, 8)}[width]
    if value >= 1 << (8 * size):
        return head(major, value)
    return bytes([major << 5 | info]) + value.to_bytes(size, "big")


_uint = st.integers(0, 2**64 - 1) | st.integers(0, 30)
_leaves = st.one_of(
    _uint.map(lambda n: head(0, n)),
    _uint.map(lambda n: head(1, n)),
    st.tuples(st.integers(0, 2), _uint, st.sampled_from([1, 2, 4, 8])).map(
        lambda t: _wide_head(t[0] % 2, t[1], t[2])
    ),
    st.binary(max_size=24).map(lambda b: head(2, len(b)) + b),
    st.text(max_size=12).map(_text),
    st.binary(max_size=140).map(lambda b: b"\xc2" + head(2, len(b)) + b),
    st.sampled_from(SPLICES),
    st.floats().map(lambda f: cbor2.dumps(f)),
    st.sampled_from([b"\xf4", b"\xf5", b"\xf6", b"\xf7", b"\xf8\xff", b"\xfa\x7f\x80\x00\x00"]),
)


def _extend(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.lists(inner, max_size=5).map(lambda items: array(*items)),
        st.lists(inner, max_size=4).map(lambda items: b"\x9f" + b"".join(items) + b"\xff"),
        st.lists(st.tuples(inner, inner), max_size=3).map(
            lambda pairs: head(5, len(pairs)) + b"".join(k + v for k, v in pairs)
        ),
        st.tuples(st.sampled_from(TAG_NUMBERS) | _uint, inner).map(lambda t: tag(*t)),
    )


#: One random CBOR item, as bytes: any major type, tags from `TAG_NUMBERS`, widths
#: not always minimal, indefinite lengths, and now and then a splice that is not CBOR.
cbor_items: st.SearchStrategy[bytes] = st.recursive(_leaves, _extend, max_leaves=24)


#: One mutation: (operation, position, a number, bytes); `mutate` reads the position
#: modulo the data's length and uses the number and bytes as the operation needs.
Mutation = tuple[str, int, int, bytes]

mutations: st.SearchStrategy[list[Mutation]] = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "splice", "delete", "truncate", "extend", "repeat"]),
        st.integers(0, 2**16),
        st.integers(0, 255),
        st.sampled_from(SPLICES) | st.binary(min_size=1, max_size=16),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, program: list[Mutation]) -> bytes:
    """``data`` after each mutation of ``program`` in turn (deterministic)."""
    out = bytearray(data)
    for op, position, number, chunk in program:
        at = position % (len(out) + 1)
        if op == "flip" and out:
            out[at % len(out)] ^= 1 << (number % 8)
        elif op == "set" and out:
            out[at % len(out)] = number
        elif op == "splice":
            out[at:at] = chunk
        elif op == "delete":
            del out[at : at + 1 + number % 16]
        elif op == "truncate":
            del out[at:]
        elif op == "extend":
            out += chunk
        elif op == "repeat":
            out[at:at] = out[at : at + 1 + number % 32] * (1 + number % 8)
    return bytes(out)


def mutated(seeds: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A valid encoding from ``seeds``, broken by one to four mutations."""
    return st.builds(mutate, seeds, mutations)


@st.composite
def with_random_field(draw: st.DrawFn, seeds: st.SearchStrategy[bytes]) -> bytes:
    """A valid message (a CBOR array) with one field replaced by a random CBOR item; or,
    for a byte-string field (such as a map's values), its content replaced by one."""
    fields: list[Any] = cbor2.loads(draw(seeds))
    encoded = [cbor2.dumps(field) for field in fields]
    at = draw(st.integers(0, len(encoded) - 1))
    item = draw(cbor_items)
    if type(fields[at]) is bytes and draw(st.booleans()):
        item = head(2, len(item)) + item  # in the byte string: a value column, say
    encoded[at] = item
    return array(*encoded)


def inputs(seeds: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Inputs for a decoder whose valid inputs are ``seeds``: random bytes, random CBOR
    items, mutated seeds and seeds with a random field, in about equal parts."""
    return st.one_of(
        st.binary(max_size=256),
        cbor_items,
        mutated(seeds),
        with_random_field(seeds),
    )
