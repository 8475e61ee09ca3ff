"""Entries from too far in the future: held, bounded, released in time order.

Sans-IO: the caller passes the wall clock reading.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from crdt import Key, LWWMap
from crdt._stability import Point


class HeldEntries:
    """Entries whose timestamps are further ahead of the local wall clock than the
    skew guard allows (CockroachDB's ``max_offset``), kept aside until it catches up.

    Nothing here is refused because of the local clock alone: an entry is held, not
    dropped, unless it is beyond ``max_hold_ms`` ahead (a hard bound: a clock a year
    fast), the held set is full (``max_entries`` or ``max_bytes``), or its writer's
    incarnation is known to be gone (`purge`).

    Args:
        max_hold_ms: entries further ahead than this are refused, in ms.
        max_entries: the most entries held.
        max_bytes: the most value bytes held.
    """

    __slots__ = ("_bytes", "_heap", "_held", "max_bytes", "max_entries", "max_hold_ms")

    def __init__(
        self, *, max_hold_ms: int = 3_600_000, max_entries: int = 10_000, max_bytes: int = 1 << 24
    ) -> None:
        self.max_hold_ms = max_hold_ms
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._held = LWWMap()
        self._heap: list[tuple[int, int, int, Key]] = []  # (wall_ms, logical, seq, key)
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held._regs)

    def timestamp(self, key: Key) -> Point | None:
        """The held entry's ``(wall_ms, logical)`` for ``key``, if one is held."""
        entry = self._held._regs.get(key)
        return None if entry is None else (entry[0], entry[1])

    def lowest(self) -> Point | None:
        """The smallest held ``(wall_ms, logical)``, or None when nothing is held."""
        heap, regs = self._heap, self._held._regs
        while heap:
            wall, logical, _, key = heap[0]
            entry = regs.get(key)
            if entry is not None and entry[0] == wall and entry[1] == logical:
                return (wall, logical)
            heapq.heappop(heap)  # superseded or released
        return None

    def split(self, delta: LWWMap, wall_ms: int, max_offset_ms: int) -> tuple[LWWMap, int]:
        """Hold what ``delta`` has from too far ahead; return the rest and how many
        entries were refused (beyond the hard bound, or the held set is full).

        Args:
            delta: entries received.
            wall_ms: the local wall clock now, in ms.
            max_offset_ms: entries further ahead than this are held.
        """
        limit = wall_ms + max_offset_ms
        regs = delta._regs
        late = [k for k, e in regs.items() if e[0] > limit]
        if not late:
            return delta, 0
        now = delta._subset([k for k, e in regs.items() if e[0] <= limit])
        refused = 0
        bound = wall_ms + self.max_hold_ms
        held = self._held
        for key in late:
            entry = regs[key]
            size = len(entry[3])
            if entry[0] > bound or (
                key not in held._regs
                and (len(held._regs) >= self.max_entries or self._bytes + size > self.max_bytes)
            ):
                refused += 1
                continue
            old = held._regs.get(key)
            held.merge(delta._subset([key]))
            if held._regs[key] != old:
                self._bytes += size - (len(old[3]) if old is not None else 0)
                heapq.heappush(self._heap, (entry[0], entry[1], len(self._heap), key))
        return now, refused

    def due(self, wall_ms: int, max_offset_ms: int) -> LWWMap:
        """Take out and return every held entry no longer too far ahead."""
        limit = wall_ms + max_offset_ms
        keys = []
        heap, regs = self._heap, self._held._regs
        while heap and heap[0][0] <= limit:
            wall, logical, _, key = heapq.heappop(heap)
            entry = regs.get(key)
            if entry is not None and entry[0] == wall and entry[1] == logical:
                keys.append(key)
        # Two pushes can match one entry (equal readings from two writers): once each.
        return self._take(list(dict.fromkeys(keys)))

    def purge(self, gone: Callable[[str], bool]) -> int:
        """Drop every held entry whose writer ``gone(node id)`` says is gone.

        Returns:
            How many entries were dropped.
        """
        keys = [k for k, e in self._held._regs.items() if gone(e[2])]
        self._take(keys)
        return len(keys)

    def clear(self) -> None:
        """Drop everything."""
        self._held, self._heap, self._bytes = LWWMap(), [], 0

    def _take(self, keys: list[Key]) -> LWWMap:
        taken = self._held._subset(keys)
        for key in keys:
            entry = self._held._regs.pop(key)
            self._held._live.pop(key, None)
            self._bytes -= len(entry[3])
        return taken
