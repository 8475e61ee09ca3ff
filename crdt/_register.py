"""The last-writer-wins register."""

from __future__ import annotations

import enum
from typing import Any

import attrs

from hlc import Timestamp

from ._values import encode_value


class _Tombstone(enum.Enum):
    TOMBSTONE = "TOMBSTONE"

    def __repr__(self) -> str:
        return "TOMBSTONE"


#: The value of a deleted register. It sorts below every real value on a timestamp tie.
TOMBSTONE = _Tombstone.TOMBSTONE


def payload_of(value: Any) -> bytes:
    """The bytes a value is compared by: canonical CBOR, or ``b""`` for `TOMBSTONE`.

    No CBOR item encodes to zero bytes, so a tombstone never equals a value.
    """
    return b"" if value is TOMBSTONE else encode_value(value)


@attrs.frozen(eq=False)
class LWWRegister:
    """A last-writer-wins register: a value and the timestamp of the write that set it.

    `merge` keeps the register with the greater timestamp (Shapiro et al., "A
    comprehensive study of Convergent and Commutative Replicated Data Types", 2011,
    LWW-Register). Timestamps are unique per write when nodes use distinct HLC node ids
    per incarnation; should two writes still share a timestamp (a restarted node
    reusing one), the greater canonical CBOR encoding of the value wins, and a
    `TOMBSTONE` loses to any value. So merge is commutative, associative and idempotent
    on every input.

    Equality compares timestamps and canonical encodings, not Python ``==``:
    ``LWWRegister(1, ts) != LWWRegister(True, ts)``, as they differ on the wire.

    Args:
        value: a JSON-like value (None, bool, int of at most 1024 bits, float, str,
            bytes, lists, dicts with str or bytes keys), or `TOMBSTONE` for a
            deleted entry.
        timestamp: the write's `hlc.Timestamp`.

    Raises:
        TypeError: ``value`` is not such a value (peers would refuse it), or
            ``timestamp`` is not a Timestamp.
    """

    value: Any
    timestamp: Timestamp = attrs.field(validator=attrs.validators.instance_of(Timestamp))
    _payload: bytes = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_payload", payload_of(self.value))

    @property
    def deleted(self) -> bool:
        """True when this register holds a tombstone."""
        return self.value is TOMBSTONE

    @property
    def payload(self) -> bytes:
        """The value's canonical CBOR bytes (``b""`` for a tombstone)."""
        return self._payload

    def merge(self, other: LWWRegister) -> LWWRegister:
        """Return the winner of ``self`` and ``other``: the join of the two registers."""
        if self._order_key() >= other._order_key():
            return self
        return other

    def _order_key(self) -> tuple[int, int, str, bytes]:
        ts = self.timestamp
        return (ts.wall_ms, ts.logical, ts.node, self._payload)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not LWWRegister:
            return NotImplemented
        assert isinstance(other, LWWRegister)
        return self._order_key() == other._order_key()

    def __hash__(self) -> int:
        return hash(self._order_key())
