"""Causal stability: the point below which every member holds every entry.

Sans-IO bookkeeping for tombstone collection. It reads no clock and sends nothing:
the replication runtime feeds it coverage reports and asks it for the stable point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

#: An HLC reading without its node id: ``(wall_ms, logical)``.
Point = tuple[int, int]
#: "Not covered yet": below every reading a clock can make.
ZERO: Point = (0, 0)


def membership_epoch(members: Iterable[str]) -> bytes:
    """An 8-byte digest naming a set of members (order does not matter)."""
    blob = "\n".join(sorted(members)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(blob, digest_size=8).digest()


class Stability:
    """Causal stability over one membership epoch (Baquero, Almeida and Shoker,
    "Pure Operation-Based Replicated Data Types", 2017, section 5).

    Members are incarnation ids (``name/incarnation``). Two kinds of vectors, both
    indexed by member and holding HLC readings (`Point`):

    - coverage ``V[z] = p``: this replica holds, or has superseded, every entry that
      member ``z`` held when ``z``'s HLC read ``p``. ``V[me]`` is our own clock.
      `covered` raises it when our state was found equal to a member's (their root
      digests matched, see the runtime), and raises every other entry to what that
      member covered: coverage is transitive, so two members that never meet still
      cover each other through a third.
    - reports ``W[z]``: the best known ``w_z = min(V_z)`` of each member, relayed
      from member to member with `merge_reports` (links may be non-transitive).

    The stable point is ``S = min(W)`` once every member's ``w`` is known. Every member
    then holds (or has superseded) every entry written at or below ``S``, and every
    member's HLC has passed ``S``, so no entry at or below ``S`` can still be written:
    a tombstone at or below ``S`` can be dropped, and an entry at or below it for a
    key that is absent is one a collected tombstone superseded.

    Membership epochs: `reset` starts a new epoch with a new member set and forgets
    every coverage value and report, and reports of another epoch are ignored. So a
    stable point is computed only from values all taken after every member knew the
    same member set. That is what makes removing a member safe: once a member knows
    an incarnation is removed it takes no more data from it, and coverage taken after
    that includes everything the removed incarnation left with that member.

    Not thread-safe; one task owns it.
    """

    __slots__ = ("_coverage", "_epoch", "_index", "_me", "_members", "_reports")

    def __init__(self, me: str, members: Iterable[str] = ()) -> None:
        self._me = me
        self._members: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._epoch = b""
        self._coverage: list[Point] = []
        self._reports: list[Point] = []
        self.reset(members)

    @property
    def members(self) -> tuple[str, ...]:
        """The epoch's members, sorted."""
        return self._members

    @property
    def epoch(self) -> bytes:
        """The `membership_epoch` of `members`."""
        return self._epoch

    def reset(self, members: Iterable[str]) -> bool:
        """Start a new epoch over ``members`` (this replica need not be one).

        Returns:
            True if the member set changed (coverage and reports were cleared).
        """
        ordered = tuple(sorted(set(members)))
        if ordered == self._members and self._epoch:
            return False
        self._members = ordered
        self._index = {m: i for i, m in enumerate(ordered)}
        self._epoch = membership_epoch(ordered)
        self._coverage = [ZERO] * len(ordered)
        self._reports = [ZERO] * len(ordered)
        return True

    def covered(self, source: str, at: Point, vector: Sequence[Point], epoch: bytes) -> bool:
        """Record that our state equalled ``source``'s when its HLC read ``at``.

        Args:
            source: the member whose state we hold.
            at: its HLC reading when its state was what we compared with.
            vector: its coverage vector then, in `members` order.
            epoch: the epoch it was computed in.

        Returns:
            False (nothing recorded) when the epoch differs, ``source`` is not a
            member, or ``vector`` has the wrong length.
        """
        index = self._index.get(source)
        if epoch != self._epoch or index is None or len(vector) != len(self._members):
            return False
        coverage = self._coverage
        if at > coverage[index]:
            coverage[index] = at
        for i, point in enumerate(vector):
            if point > coverage[i]:
                coverage[i] = point
        return True

    def merge_reports(self, reports: Sequence[Point], epoch: bytes) -> bool:
        """Merge another member's relayed reports (``W``) of the same epoch.

        Returns:
            False when the epoch or the length differs (nothing merged).
        """
        if epoch != self._epoch or len(reports) != len(self._members):
            return False
        mine = self._reports
        for i, point in enumerate(reports):
            if point > mine[i]:
                mine[i] = point
        return True

    def report(self, now: Point) -> tuple[list[Point], list[Point]]:
        """Our vectors to gossip, with our clock reading ``now`` (a fresh HLC reading).

        Returns:
            ``(coverage, reports)`` in `members` order. Our own coverage entry is
            ``now``, and our own report is ``min(coverage)`` (when we are a member).
        """
        index = self._index.get(self._me)
        if index is not None:
            if now > self._coverage[index]:
                self._coverage[index] = now
            w = min(self._coverage)
            if w > self._reports[index]:
                self._reports[index] = w
        return list(self._coverage), list(self._reports)

    def stable(self) -> Point | None:
        """The stable point ``S``: None until every member's report is known."""
        if not self._reports or self._me not in self._index:
            return None
        low = min(self._reports)
        return None if low == ZERO else low

    def index_of(self, member: str) -> int | None:
        """The member's position in `members` (and in gossiped vectors), or None."""
        return self._index.get(member)

    def coverage_of(self, member: str) -> Point:
        """``V[member]``: how far this replica covers it (`ZERO` if not at all)."""
        index = self._index.get(member)
        return ZERO if index is None else self._coverage[index]

    def __repr__(self) -> str:
        return f"<Stability {self._me} members={len(self._members)} stable={self.stable()}>"
