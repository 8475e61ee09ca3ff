"""Scheduled changes: a flag's entries as they are at a given time, with no coordinator.

Pure: no map, no I/O, no clock (``now_ms`` is an argument).

A schedule is a map entry of the flag it changes, replicated like any other::

    (name, "schedule", sched_id) -> {
        "at_ms": int,                                  # HLC wall ms
        "set": [[kind, *key_rest, value], ...],        # (name, kind, *key_rest) := value
        "delete": [[kind, *key_rest], ...],            # (name, kind, *key_rest) deleted
    }

Each scheduled write counts as if written at the HLC timestamp ``(at_ms, 0,
"schedule:" + sched_id)`` and joins the real entry by last-writer-wins, exactly as
`crdt.LWWRegister.merge` would: a real write stamped after ``at_ms`` wins over the
schedule, one stamped before it loses. Every node computes the same entries from the
same map and time, and a node that restarts after ``at_ms`` computes the same as one
that ran through it: there is nothing to apply, only a view to compute. Before
``at_ms`` a schedule changes nothing. A schedule may change only its own flag's
entries of the kinds in `SCHEDULABLE_KINDS` (not schedules, not the audit log).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crdt import TOMBSTONE, LWWRegister
from hlc import MAX_WALL_MS, Timestamp

from ._schema import GATE_KINDS, FlagFormatError, _short, valid_name

#: The value of a deleted entry in `effective_entries`' input.
DELETED = TOMBSTONE
#: The kinds of entry a schedule may set or delete.
SCHEDULABLE_KINDS = (
    *GATE_KINDS,
    "meta",
    "type",
    "variant",
    "off_variant",
    "fallthrough",
    "rule",
    "prereq",
)
#: The most writes (sets and deletes) one schedule makes.
MAX_SCHEDULE_WRITES = 200
#: The most schedules one flag holds (writers refuse more): each change of the flag
#: joins them all, so together they bound that work (at most 10,000 writes).
MAX_SCHEDULES = 50

Key = tuple[Any, ...]


def schedule_timestamp(sched_id: str, at_ms: int) -> Timestamp:
    """The HLC timestamp a schedule's writes count as written at."""
    return Timestamp(at_ms, 0, "schedule:" + sched_id)


def scheduled_writes(name: str, schedule: object) -> list[tuple[Key, Any]]:
    """The writes of one schedule of flag ``name``: ``[(key, value or DELETED)]``.

    Raises:
        FlagFormatError: the schedule is malformed, with the RFC 6901 pointer of the
            first bad field: not an object, ``at_ms`` not an int in [0,
            `hlc.MAX_WALL_MS`], a write not a list starting with a kind of
            `SCHEDULABLE_KINDS`, a key part not a str, more than
            `MAX_SCHEDULE_WRITES` writes, or the same key written twice.
    """
    if not isinstance(schedule, Mapping):
        raise FlagFormatError("", f"a schedule is an object, not {_short(schedule)}")
    for field in schedule:
        if field not in ("at_ms", "set", "delete"):
            raise FlagFormatError("/" + str(field), "a schedule has at_ms, set and delete")
    at_ms = schedule.get("at_ms")
    if type(at_ms) is not int or not 0 <= at_ms <= MAX_WALL_MS:
        raise FlagFormatError("/at_ms", f"an int of HLC wall ms, not {_short(at_ms)}")
    writes: list[tuple[Key, Any]] = []
    seen: set[Key] = set()
    for field, has_value in (("set", True), ("delete", False)):
        items = schedule.get(field, [])
        if not isinstance(items, list):
            raise FlagFormatError("/" + field, f"a list, not {_short(items)}")
        for index, item in enumerate(items):
            at = f"/{field}/{index}"
            least = 2 if has_value else 1
            if not isinstance(item, list) or len(item) < least:
                raise FlagFormatError(at, f"a list [kind, ...key{', value' if has_value else ''}]")
            parts = item[:-1] if has_value else item
            if parts[0] not in SCHEDULABLE_KINDS:
                raise FlagFormatError(at + "/0", f"one of {SCHEDULABLE_KINDS}")
            for position, part in enumerate(parts[1:], 1):
                if not valid_name(part):
                    raise FlagFormatError(f"{at}/{position}", "a key part is a name")
            key = (name, *parts)
            if key in seen:
                raise FlagFormatError(at, "this key is written twice by the schedule")
            seen.add(key)
            writes.append((key, item[-1] if has_value else DELETED))
    if len(writes) > MAX_SCHEDULE_WRITES:
        raise FlagFormatError("", f"at most {MAX_SCHEDULE_WRITES} writes")
    return writes


def effective_entries(
    entries: Mapping[Key, tuple[Timestamp, Any]],
    schedules: Mapping[Key, Any] | Iterable[tuple[Key, Any]],
    now_ms: int,
) -> dict[Key, Any]:
    """The live entries at ``now_ms``, with the schedules due by then applied.

    Args:
        entries: ``{key: (timestamp, value or DELETED)}``: the real entries of the
            map, tombstones included (a tombstone newer than a schedule's time keeps
            its key deleted).
        schedules: ``{(name, "schedule", sched_id): schedule}`` (or their items).
            Malformed ones are ignored (writers refuse them: `scheduled_writes`).
        now_ms: the time, in HLC wall ms; schedules with ``at_ms <= now_ms`` apply.

    Returns:
        ``{key: value}`` of the live entries: for each key, the LWW join of its real
        entry and every due scheduled write of it, as `crdt.LWWMap` would hold it
        after all those writes in any order.
    """
    winners: dict[Key, LWWRegister] = {}
    items = schedules.items() if isinstance(schedules, Mapping) else schedules
    for schedule_key, schedule in items:
        if (
            type(schedule_key) is not tuple
            or len(schedule_key) != 3
            or schedule_key[1] != "schedule"
            or not valid_name(schedule_key[2])
            or not isinstance(schedule, Mapping)
            or type(schedule.get("at_ms")) is not int
            or schedule["at_ms"] > now_ms
        ):
            continue
        try:
            stamp = schedule_timestamp(schedule_key[2], schedule["at_ms"])
            writes = [
                (key, LWWRegister(value, stamp))
                for key, value in scheduled_writes(schedule_key[0], schedule)
            ]
        except (FlagFormatError, TypeError, ValueError):  # all of a schedule, or none
            continue
        for key, write in writes:
            held = winners.get(key)
            winners[key] = write if held is None else held.merge(write)
    result = {key: value for key, (_, value) in entries.items() if value is not DELETED}
    for key, write in winners.items():
        real = entries.get(key)
        if real is not None:
            write = write.merge(LWWRegister(real[1], real[0]))
        if write.value is DELETED:
            result.pop(key, None)
        else:
            result[key] = write.value
    return result
