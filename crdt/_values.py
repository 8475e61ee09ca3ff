"""Keys and values: what a map accepts, their canonical CBOR bytes, and strict decoding.

Values are stored as canonical CBOR (RFC 8949, section 4.2.1: deterministic encoding),
so every replica compares, hashes and breaks ties on the same bytes, whatever Python
object a writer passed in (a tuple and a list encode alike; ``True`` and ``1`` do not).

A value is what JSON holds, plus byte strings: null, booleans, integers (beyond 64
bits as CBOR bignums, tags 2 and 3, of at most `MAX_BIGNUM_BYTES` bytes), floats, text
and byte strings, arrays, and maps whose keys are text or byte strings. CBOR's
undefined and simple values pass too. No other tag does: a datetime, Decimal, UUID,
set or `cbor2.CBORTag` value is refused on write (`canonical_value` raises TypeError)
and on read.

Every decoder of untrusted bytes goes through `strict_loads`, which refuses, while
decoding, every tag its caller does not list, indefinite-length items, repeated map
keys and map keys other than text or byte strings (the only keys whose hashes Python
randomizes: an attacker can make int, float or tuple keys collide, and a dict of
colliding keys costs quadratic time to build). So the work of a decode is bounded by
a small multiple of its input's size: nothing in the input can ask for shared values
(tags 28/29), string references (25/256), regular expressions (35), MIME messages
(36), bigfloats (5) or other costly decoding.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeAlias, cast

import cbor2

#: A map key: str, bytes, int (not bool), or a tuple of keys.
Key: TypeAlias = str | bytes | int | tuple["Key", ...]

#: How deeply tuple keys may nest.
MAX_KEY_DEPTH = 8


def check_key(key: object, _depth: int = 0) -> None:
    """Raise TypeError unless ``key`` is a valid map key (see `Key`): a str that
    encodes as UTF-8 (no lone surrogate, as ``os.fsdecode`` can make), bytes, an int
    within `MAX_BIGNUM_BYTES` (what peers decode), or a tuple of those."""
    kind = type(key)
    if kind is bytes:
        return
    if kind is str:
        if not cast(str, key).isascii():
            try:
                cast(str, key).encode("utf-8")
            except UnicodeEncodeError:
                raise TypeError(f"map keys are Unicode text; {key!r:.80} is not") from None
        return
    if kind is int:
        if not _MIN_INT <= cast(int, key) < _MAX_INT:
            raise TypeError(f"int keys are within +-2**{8 * MAX_BIGNUM_BYTES}, as peers decode")
        return
    if kind is tuple:
        if _depth >= MAX_KEY_DEPTH:
            raise TypeError(f"tuple keys may nest at most {MAX_KEY_DEPTH} deep")
        for part in key:  # type: ignore[attr-defined]
            check_key(part, _depth + 1)
        return
    raise TypeError(
        f"map keys are str, bytes, int or tuples of those, not {kind.__name__}: {key!r:.80}"
    )


def encode_key(key: Key) -> bytes:
    """Return the canonical CBOR encoding of a valid key (tuples become arrays)."""
    return cbor2.dumps(key, canonical=True)


def key_from_cbor(obj: Any, _depth: int = 0) -> Key:
    """Turn a decoded CBOR item back into a key (arrays become tuples).

    Raises:
        TypeError: ``obj`` is not the decoding of a valid key.
    """
    kind = type(obj)
    if kind is str or kind is bytes or kind is int:
        return obj  # type: ignore[no-any-return]
    if kind is list and _depth < MAX_KEY_DEPTH:
        return tuple(key_from_cbor(part, _depth + 1) for part in obj)
    raise TypeError(f"not a map key: {describe(obj)}")


# -- strict decoding -------------------------------------------------------------------

#: The largest integer a key or value may hold, as the byte length of its CBOR bignum
#: (tags 2 and 3): 128 bytes, so ``-2**1024 <= n < 2**1024``. Far beyond any JSON
#: number, and small enough that an int never has over 4,300 digits, where Python's
#: ``repr`` raises ValueError, nor costs much to hash, compare or print.
MAX_BIGNUM_BYTES = 128
_MAX_INT = 2 ** (8 * MAX_BIGNUM_BYTES)
_MIN_INT = -_MAX_INT

#: How deeply a value's arrays and maps may nest (a scalar is depth 0, ``[1]`` depth 1).
MAX_VALUE_DEPTH = 400

#: A tag's decoder as cbor2 calls it: ``(tagged item, immutable) -> decoded object``.
TagDecoder: TypeAlias = Callable[[Any, bool], Any]

#: The tags cbor2 6.3 decodes itself (datetimes, bignums, decimals, string references,
#: shared values, regular expressions, MIME, UUIDs, sets, IP addresses...). A strict
#: decode overrides every one of them; a test checks that no other tag up to 65535 is
#: decoded by cbor2, so that a new cbor2 with a new built-in tag cannot slip by.
CBOR2_BUILTIN_TAGS = frozenset(
    {0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004}
    | {43000, 55799}
)


class _Refused(Exception):
    """Raised inside cbor2's decoding to refuse a tag; cbor2 wraps it."""


def _refuser(tag: int) -> Any:
    # A "shareable decoder" is called as soon as cbor2 reads the tag's head, with no
    # item: so this refuses the tag before reading what it holds.
    def refuse(_immutable: bool) -> NoReturn:
        raise _Refused(f"CBOR tag {tag} is not allowed here")

    return cbor2.shareable_decoder(refuse)


class Tags:
    """Which CBOR tags a strict decode allows (`strict_loads`); it refuses all others.

    Args:
        decoders: tag -> decoder, for tags decoded into Python objects.
        byte_tags: tags kept as a `cbor2.CBORTag` holding a byte string (RFC 8746
            typed arrays); any other item under one of them is refused.

    cbor2's own tags (`CBOR2_BUILTIN_TAGS`) not in ``decoders`` are refused as soon as
    their head is read; any other tag not allowed is refused once its content (decoded
    under the same rules) is read.
    """

    def __init__(
        self, decoders: Mapping[int, TagDecoder] | None = None, byte_tags: Iterable[int] = ()
    ) -> None:
        self.decoders: dict[int, Any] = {tag: _refuser(tag) for tag in CBOR2_BUILTIN_TAGS}
        self.decoders.update(decoders or {})
        self.byte_tags = frozenset(byte_tags)
        self._options: dict[int, dict[str, Any]] = {}

    def options(self, max_depth: int) -> dict[str, Any]:
        """cbor2 decoder options for a strict decode allowing these tags (`strict_loads`)."""
        options = self._options.get(max_depth)
        if options is None:
            options = self._options[max_depth] = {
                "semantic_decoders": self.decoders,
                "tag_hook": self.hook,
                "max_depth": max_depth,
                "allow_indefinite": False,
                "allow_duplicate_keys": False,
                "strict_hashable_types": True,
            }
        return options

    def hook(self, tag: cbor2.CBORTag, _immutable: bool) -> cbor2.CBORTag:
        """cbor2's ``tag_hook``: return ``tag`` if allowed, else refuse it."""
        if tag.tag not in self.byte_tags:
            raise _Refused(f"CBOR tag {tag.tag} is not allowed here")
        if type(tag.value) is not bytes:
            raise _Refused(f"CBOR tag {tag.tag} must hold a byte string")
        return tag


def _bignum(item: Any, _immutable: bool) -> int:
    if type(item) is not bytes:
        raise _Refused("a bignum must be a byte string")
    if len(item) > MAX_BIGNUM_BYTES:
        raise _Refused(f"a bignum of {len(item)} bytes is over the {MAX_BIGNUM_BYTES}-byte limit")
    return int.from_bytes(item, "big")


def _negative_bignum(item: Any, immutable: bool) -> int:
    return -1 - _bignum(item, immutable)


#: The tags a value (or a key) may carry: bignums (2 and 3), for integers beyond 64 bits.
BIGNUMS: Mapping[int, TagDecoder] = {2: _bignum, 3: _negative_bignum}
VALUE_TAGS = Tags(BIGNUMS)
#: No tags at all.
NO_TAGS = Tags()


def _reason(exc: BaseException) -> str:
    """A short description of a decoding error, never raising."""
    try:
        text = str(exc) or type(exc).__name__
        inner = exc.__cause__ or exc.__context__
        if inner is not None and str(inner):
            text = f"{text}: {inner}"
    except Exception:  # a str() that raises: say what it was
        text = type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def strict_loads(
    data: bytes | bytearray | memoryview, tags: Tags = NO_TAGS, max_depth: int = MAX_VALUE_DEPTH
) -> Any:
    """Decode exactly one CBOR item from untrusted bytes, refusing what chorus never writes.

    Args:
        data: the bytes.
        tags: the tags allowed, with their decoders; any other tag is refused.
        max_depth: how deeply arrays, maps and tags may nest.

    Raises:
        ValueError: malformed or truncated CBOR, trailing bytes, nesting deeper than
            ``max_depth``, a tag not in ``tags``, an indefinite-length item, a map key
            that is not a text or byte string, or a repeated map key.
    """
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream, **tags.options(max_depth)).decode()
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise ValueError(_reason(exc)) from None
    if stream.tell() != len(data):
        raise ValueError(f"{len(data) - stream.tell()} trailing bytes")
    return obj


_VALUE_OPTIONS = VALUE_TAGS.options(MAX_VALUE_DEPTH)


def _load_value(payload: bytes) -> Any:
    # For our own encodings only: cbor2.loads ignores trailing bytes.
    return cbor2.loads(payload, **_VALUE_OPTIONS)


def describe(obj: object) -> str:
    """A short, safe description of a decoded object for an error message.

    Cheap whatever ``obj`` is: no full ``repr`` of a large container or int.
    """
    kind = type(obj)
    if kind is str or kind is bytes:
        text = repr(obj[:40])  # type: ignore[index]
        return text if len(obj) <= 40 else f"{text[:-1]}...{text[-1]}"  # type: ignore[arg-type]
    if kind is int:
        return repr(obj) if -(2**64) < obj < 2**64 else "a large int"  # type: ignore[operator]
    if kind is bool or kind is float or obj is None:
        return repr(obj)
    if kind is list or kind is dict:
        return f"a {kind.__name__} of {len(obj)}"  # type: ignore[arg-type]
    return f"a {kind.__name__}"


# -- values ----------------------------------------------------------------------------


def encode_value(value: Any) -> bytes:
    """Return the canonical CBOR encoding of ``value``.

    Raises:
        TypeError: ``value`` (or something inside it) cannot be encoded as CBOR, or
            peers would refuse its encoding (see `canonical_value`).
    """
    return canonical_value(value)[0]


def _check_depth(value: Any) -> None:
    """Raise TypeError for lists and dicts nested deeper than `MAX_VALUE_DEPTH`, before
    cbor2's C encoder recurses into them: nested some 20,000 deep, it overflows the
    C stack and the process dies. Iterative, and a cycle is refused as too deep."""
    if not isinstance(value, (list, tuple, dict)):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_VALUE_DEPTH:
            raise TypeError(f"value is not CBOR-encodable: nesting depth over {MAX_VALUE_DEPTH}")
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, tuple, dict)))


def canonical_value(value: Any) -> tuple[bytes, Any]:
    """Return ``(payload, stored)``: the canonical CBOR and the value decoded from it.

    Every replica holds ``stored``, so a writer reads back what its peers read. The
    payload is decoded as a peer decodes it (`strict_loads` with `VALUE_TAGS`), so a
    value peers would refuse is refused here. (Peers also check that ``stored``
    re-encodes to ``payload``; a test shows that every value decoded this way does.)

    Raises:
        TypeError: ``value`` cannot be encoded, or peers would refuse its encoding: it
            holds a tag other than a bignum (a datetime, Decimal, UUID, set,
            `cbor2.CBORTag`...), an int beyond `MAX_BIGNUM_BYTES`, a map key that is
            not a str or bytes, or nesting deeper than `MAX_VALUE_DEPTH`.
    """
    _check_depth(value)
    try:
        payload = cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise TypeError(f"value is not CBOR-encodable: {_reason(exc)}") from None
    try:
        # The payload is one item of our own making, so no trailing bytes to look for:
        # cbor2.loads, faster than strict_loads' stream, applies the same rules.
        return payload, _load_value(payload)
    except Exception as exc:
        raise TypeError(f"value cannot be decoded by peers: {_reason(exc)}") from None
