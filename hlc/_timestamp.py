"""The hybrid logical clock timestamp: a value, with its binary and text forms."""

from __future__ import annotations

import struct
from typing import Any

import attrs

#: Largest ``wall_ms`` a Timestamp may carry: 2**48 - 1 ms, about the year 10889.
MAX_WALL_MS = 2**48 - 1
#: Largest ``logical`` counter. The clock carries into ``wall_ms`` past it (see HLC).
MAX_LOGICAL = 2**32 - 1
#: Largest node id, in bytes of UTF-8.
MAX_NODE_BYTES = 255

_HEADER = struct.Struct(">QIB")  # wall_ms, logical, len(node): 13 bytes
_TEXT_WALL_DIGITS = 15  # len(str(MAX_WALL_MS))
_TEXT_LOGICAL_DIGITS = 10  # len(str(MAX_LOGICAL))
_TEXT_PREFIX = _TEXT_WALL_DIGITS + 1 + _TEXT_LOGICAL_DIGITS + 1


class TimestampError(ValueError):
    """A Timestamp field is out of range, or a binary or text form is malformed."""


def _check(wall_ms: object, logical: object, node: object) -> None:
    # bool is an int subclass; a True wall clock is a bug, not a timestamp.
    if type(wall_ms) is not int or not 0 <= wall_ms <= MAX_WALL_MS:
        raise TimestampError(f"wall_ms must be an int in [0, {MAX_WALL_MS}], got {wall_ms!r}")
    if type(logical) is not int or not 0 <= logical <= MAX_LOGICAL:
        raise TimestampError(f"logical must be an int in [0, {MAX_LOGICAL}], got {logical!r}")
    if type(node) is not str or not node:
        raise TimestampError(f"node must be a non-empty str, got {node!r}")
    try:
        size = len(node.encode("utf-8"))
    except UnicodeEncodeError:
        raise TimestampError(f"node must be encodable as UTF-8, got {node!r}") from None
    if size > MAX_NODE_BYTES:
        raise TimestampError(f"node must be at most {MAX_NODE_BYTES} bytes of UTF-8")


@attrs.frozen(eq=False, order=False)
class Timestamp:
    """A hybrid logical clock timestamp (Kulkarni et al., 2014).

    Timestamps are totally ordered by ``(wall_ms, logical, node)``: the node id breaks
    ties between distinct nodes, so two nodes never issue equal timestamps.

    Args:
        wall_ms: milliseconds since the Unix epoch, in ``[0, MAX_WALL_MS]``.
        logical: the logical counter, in ``[0, MAX_LOGICAL]``.
        node: the issuing node's id, a non-empty str of at most 255 bytes of UTF-8.

    Raises:
        TimestampError: (a ValueError) a field has the wrong type or is out of range.

    Two forms round-trip exactly:

    - ``to_bytes()`` / ``from_bytes()``: 13 bytes plus the node's UTF-8, big-endian.
    - ``str(ts)`` / ``Timestamp.parse()``: ``"001700000000000-0000000003-node-a"``,
      fixed-width decimal, so sorting the strings sorts the timestamps.
    """

    wall_ms: int
    logical: int
    node: str

    def __attrs_post_init__(self) -> None:
        _check(self.wall_ms, self.logical, self.node)

    def as_tuple(self) -> tuple[int, int, str]:
        """Return ``(wall_ms, logical, node)``, the tuple whose order is the timestamp's."""
        return (self.wall_ms, self.logical, self.node)

    # Hand-written comparisons: attrs' generated ones cost about 2 µs each.
    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Timestamp:
            return NotImplemented
        assert isinstance(other, Timestamp)
        return (
            self.wall_ms == other.wall_ms
            and self.logical == other.logical
            and self.node == other.node
        )

    def __hash__(self) -> int:
        return hash((self.wall_ms, self.logical, self.node))

    def __lt__(self, other: Timestamp) -> bool:
        if other.__class__ is not Timestamp:
            return NotImplemented
        return (self.wall_ms, self.logical, self.node) < (other.wall_ms, other.logical, other.node)

    def __le__(self, other: Timestamp) -> bool:
        if other.__class__ is not Timestamp:
            return NotImplemented
        return (self.wall_ms, self.logical, self.node) <= (
            other.wall_ms,
            other.logical,
            other.node,
        )

    def __gt__(self, other: Timestamp) -> bool:
        if other.__class__ is not Timestamp:
            return NotImplemented
        return (self.wall_ms, self.logical, self.node) > (other.wall_ms, other.logical, other.node)

    def __ge__(self, other: Timestamp) -> bool:
        if other.__class__ is not Timestamp:
            return NotImplemented
        return (self.wall_ms, self.logical, self.node) >= (
            other.wall_ms,
            other.logical,
            other.node,
        )

    def __str__(self) -> str:
        wall, logical = (
            f"{self.wall_ms:0{_TEXT_WALL_DIGITS}d}",
            f"{self.logical:0{_TEXT_LOGICAL_DIGITS}d}",
        )
        return f"{wall}-{logical}-{self.node}"

    def to_bytes(self) -> bytes:
        """Return the compact binary form: ``>QIB`` (wall_ms, logical, node length), node."""
        node = self.node.encode("utf-8")
        return _HEADER.pack(self.wall_ms, self.logical, len(node)) + node

    @classmethod
    def from_bytes(cls, data: bytes) -> Timestamp:
        """Decode the form written by `to_bytes`.

        Raises:
            TimestampError: ``data`` is not bytes, is truncated, has trailing bytes, a
                field out of range, or a node id that is not UTF-8.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TimestampError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise TimestampError(f"truncated timestamp: {len(data)} bytes")
        wall_ms, logical, size = _HEADER.unpack_from(data)
        if len(data) != _HEADER.size + size:
            raise TimestampError(
                f"timestamp length {len(data)} does not match its node length {size}"
            )
        try:
            node = data[_HEADER.size :].decode("utf-8")
        except UnicodeDecodeError:
            raise TimestampError("node id is not valid UTF-8") from None
        return cls(wall_ms, logical, node)

    @classmethod
    def parse(cls, text: str) -> Timestamp:
        """Decode the text form written by ``str(ts)``.

        Raises:
            TimestampError: ``text`` is not a str in the fixed-width form.
        """
        if not isinstance(text, str):
            raise TimestampError(f"expected str, got {type(text).__name__}")
        wall, logical = text[:_TEXT_WALL_DIGITS], text[_TEXT_WALL_DIGITS + 1 : _TEXT_PREFIX - 1]
        if (
            len(text) <= _TEXT_PREFIX
            or text[_TEXT_WALL_DIGITS] != "-"
            or text[_TEXT_PREFIX - 1] != "-"
            or not (wall.isascii() and wall.isdigit())
            or not (logical.isascii() and logical.isdigit())
        ):
            raise TimestampError(f"not a timestamp: {text!r}")
        return cls(int(wall), int(logical), text[_TEXT_PREFIX:])

    @classmethod
    def from_tuple(cls, fields: Any) -> Timestamp:
        """Build a Timestamp from a ``(wall_ms, logical, node)`` sequence, as decoded.

        Raises:
            TimestampError: not a 3-item list or tuple, or a field is invalid.
        """
        if not isinstance(fields, (list, tuple)) or len(fields) != 3:
            raise TimestampError(f"expected [wall_ms, logical, node], got {fields!r:.80}")
        return cls(*fields)


_new = object.__new__
_set_wall = Timestamp.__dict__["wall_ms"].__set__
_set_logical = Timestamp.__dict__["logical"].__set__
_set_node = Timestamp.__dict__["node"].__set__


def _trusted(wall_ms: int, logical: int, node: str) -> Timestamp:
    """Build a Timestamp without validation, for fields in range by construction.

    The clock's hot path: writing the slots directly costs about half of
    ``object.__setattr__`` on a frozen class.
    """
    ts: Timestamp = _new(Timestamp)
    _set_wall(ts, wall_ms)
    _set_logical(ts, logical)
    _set_node(ts, node)
    return ts
