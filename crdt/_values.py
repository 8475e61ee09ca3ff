"""Keys and values: what a map accepts, and their canonical CBOR bytes.

Values are stored as canonical CBOR (RFC 8949, section 4.2.1: deterministic encoding),
so every replica compares, hashes and breaks ties on the same bytes, whatever Python
object a writer passed in (a tuple and a list encode alike; ``True`` and ``1`` do not).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import cbor2

#: A map key: str, bytes, int (not bool), or a tuple of keys.
Key: TypeAlias = str | bytes | int | tuple["Key", ...]

#: How deeply tuple keys may nest.
MAX_KEY_DEPTH = 8


def check_key(key: object, _depth: int = 0) -> None:
    """Raise TypeError unless ``key`` is a valid map key (see `Key`)."""
    kind = type(key)
    if kind is str or kind is bytes or kind is int:
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
    raise TypeError(f"not a map key: {obj!r:.80}")


def encode_value(value: Any) -> bytes:
    """Return the canonical CBOR encoding of ``value``.

    Raises:
        TypeError: ``value`` (or something inside it) cannot be encoded as CBOR.
    """
    try:
        return cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise TypeError(f"value is not CBOR-encodable: {exc}") from None


def canonical_value(value: Any) -> tuple[bytes, Any]:
    """Return ``(payload, stored)``: the canonical CBOR and the value decoded from it.

    Every replica holds ``stored``, so a writer reads back what its peers read.

    Raises:
        TypeError: ``value`` cannot be encoded, or its encoding cannot be decoded by
            a peer (cbor2 refuses nesting deeper than 400).
    """
    payload = encode_value(value)
    try:
        return payload, cbor2.loads(payload)
    except cbor2.CBORDecodeError as exc:
        raise TypeError(f"value cannot be decoded by peers: {exc}") from None
