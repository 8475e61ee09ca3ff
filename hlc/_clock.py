"""The hybrid logical clock: send and receive rules, with a skew guard."""

from __future__ import annotations

import time
from collections.abc import Callable

from ._timestamp import MAX_LOGICAL, MAX_WALL_MS, Timestamp, _check, _trusted


class ClockSkewError(ValueError):
    """A remote timestamp is further ahead of the local wall clock than ``max_offset_ms``.

    Attributes:
        remote: the rejected timestamp.
        local_wall_ms: the local wall clock when it was rejected, in ms.
        max_offset_ms: the limit that was exceeded, in ms.
    """

    def __init__(self, remote: Timestamp, local_wall_ms: int, max_offset_ms: int) -> None:
        self.remote = remote
        self.local_wall_ms = local_wall_ms
        self.max_offset_ms = max_offset_ms
        ahead = remote.wall_ms - local_wall_ms
        super().__init__(
            f"timestamp from {remote.node!r} is {ahead} ms ahead of the local clock "
            f"(max_offset_ms={max_offset_ms})"
        )


def system_wall_ms() -> int:
    """Return the system's real-time clock in whole milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


class HLC:
    """A hybrid logical clock (Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014).

    Timestamps follow the wall clock closely (``wall_ms`` is the greatest wall time seen,
    local or remote) while never going backwards: every timestamp this clock returns is
    strictly greater than every timestamp it returned or accepted before, even when the
    injected wall clock stalls or steps back.

    Args:
        node: this clock's node id (see `Timestamp`); it breaks ties between nodes.
        max_offset_ms: how far ahead of the local wall clock, in ms, a remote timestamp
            may be before `update` refuses it. As in CockroachDB's hlc package, this caps
            how far one bad clock can drag every other clock forward.
        wall_ms: a callable returning the wall clock in ms since the epoch. The clock
            reads time only through it; tests and simulations inject their own.
        last: a timestamp to start above, e.g. the greatest timestamp seen before a
            restart. Defaults to ``(0, 0, node)``.

    Raises:
        TimestampError: ``node`` is not a valid node id.
        ValueError: ``max_offset_ms`` is negative.

    Logical-counter overflow: ``logical`` is a 32-bit counter. When an event would push
    it past `MAX_LOGICAL` (over four billion events in one millisecond, or a remote
    timestamp that already sits at the limit), the clock carries: it moves ``wall_ms``
    one millisecond ahead and restarts ``logical`` at 0. The result is still strictly
    greater than everything before it; the cost is that this clock runs ahead of real
    time by that millisecond until the wall clock catches up.

    Past `MAX_WALL_MS` (the year 10889) the clock raises OverflowError.

    The clock is not thread-safe; each trio task or thread that owns it serialises access.
    """

    __slots__ = ("_last_logical", "_last_wall", "_max_offset_ms", "_node", "_wall_ms")

    def __init__(
        self,
        node: str,
        *,
        max_offset_ms: int = 500,
        wall_ms: Callable[[], int] = system_wall_ms,
        last: Timestamp | None = None,
    ) -> None:
        _check(0, 0, node)
        if max_offset_ms < 0:
            raise ValueError(f"max_offset_ms must be >= 0, got {max_offset_ms}")
        self._node = node
        self._max_offset_ms = max_offset_ms
        self._wall_ms = wall_ms
        self._last_wall = 0
        self._last_logical = 0
        if last is not None:
            self._last_wall, self._last_logical = last.wall_ms, last.logical

    @property
    def node(self) -> str:
        """This clock's node id."""
        return self._node

    @property
    def max_offset_ms(self) -> int:
        """The skew guard's limit, in ms."""
        return self._max_offset_ms

    @property
    def last(self) -> Timestamp:
        """The greatest timestamp issued or accepted so far, as this node's timestamp."""
        return _trusted(self._last_wall, self._last_logical, self._node)

    def now(self) -> Timestamp:
        """Return a timestamp for a local or send event.

        Returns:
            A Timestamp of this node, strictly greater than every timestamp this clock
            returned or accepted before.
        """
        physical = self._wall_ms()
        if physical > self._last_wall:
            self._last_wall = physical
            self._last_logical = 0
        elif self._last_logical < MAX_LOGICAL:
            self._last_logical += 1
        else:
            self._carry()
        return _trusted(self._last_wall, self._last_logical, self._node)

    def now_after(self, floor: Timestamp) -> Timestamp:
        """Return a timestamp for a local event that must order after ``floor``.

        Like `now`, and also strictly greater than ``floor`` whatever the local wall
        clock says: no skew guard. For a write that must beat an entry this node has
        seen but not yet accepted (one held back for being too far ahead), since a
        last-writer-wins register orders by timestamp alone.

        Returns:
            A Timestamp of this node greater than ``floor`` and than every timestamp
            this clock returned or accepted before.
        """
        ts = self.now()
        if (ts.wall_ms, ts.logical) > (floor.wall_ms, floor.logical):
            return ts
        self._last_wall, self._last_logical = floor.wall_ms, floor.logical
        if self._last_logical < MAX_LOGICAL:
            self._last_logical += 1
        else:
            self._carry()
        return _trusted(self._last_wall, self._last_logical, self._node)

    def update(self, remote: Timestamp) -> Timestamp:
        """Accept a timestamp received from another node: the HLC receive rule.

        Args:
            remote: the received timestamp.

        Returns:
            A Timestamp of this node strictly greater than ``remote`` and than every
            timestamp this clock returned or accepted before.

        Raises:
            ClockSkewError: ``remote.wall_ms`` is more than ``max_offset_ms`` ahead of
                the local wall clock. The clock is left unchanged.
        """
        physical = self._wall_ms()
        if remote.wall_ms - physical > self._max_offset_ms:
            raise ClockSkewError(remote, physical, self._max_offset_ms)
        last_wall, last_logical = self._last_wall, self._last_logical
        wall = max(last_wall, remote.wall_ms, physical)
        if wall == last_wall and wall == remote.wall_ms:
            logical = max(last_logical, remote.logical) + 1
        elif wall == last_wall:
            logical = last_logical + 1
        elif wall == remote.wall_ms:
            logical = remote.logical + 1
        else:
            logical = 0
        self._last_wall = wall
        if logical <= MAX_LOGICAL:
            self._last_logical = logical
        else:
            self._last_logical = MAX_LOGICAL
            self._carry()
        return _trusted(self._last_wall, self._last_logical, self._node)

    def _carry(self) -> None:
        if self._last_wall >= MAX_WALL_MS:
            raise OverflowError("the hybrid logical clock reached its maximum timestamp")
        self._last_wall += 1
        self._last_logical = 0

    def __repr__(self) -> str:
        return f"HLC(node={self._node!r}, last={self.last!s})"
