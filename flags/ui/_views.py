"""What the pages show, computed from the store: pure functions of flags, audit
entries and times, no request and no I/O. The templates only lay these out."""

from __future__ import annotations

import datetime
from typing import Any

import attrs

from hlc import Timestamp, TimestampError

from .._schema import Flag
from .._store import AuditEntry

_DAY_MS = 86_400_000


def percent(ratio: float) -> str:
    """A ratio in [0, 1] as people read it: ``0.3`` is ``"30 %"``, ``0.255`` is
    ``"25.5 %"``."""
    return f"{round(ratio * 100, 4):g} %"


def state_text(flag: Flag) -> str:
    """The flag's state at a glance: ``"on"`` or ``"off"`` (a boolean gate alone),
    ``"default"`` (no gate: the store's default, or off), or ``"partial: "`` and the
    gates that let it through or deny it (``"partial: actors, 30 % of actors"``)."""
    if not flag.has_gates:
        return "default"
    others = (
        flag.actors,
        flag.groups,
        flag.percentage_of_actors is not None,
        flag.percentage_of_time is not None,
    )
    if not any(others):
        return "on" if flag.boolean else "off"
    parts = ["everyone"] if flag.boolean else []
    for kind, gates in (("actors", flag.actors), ("groups", flag.groups)):
        if any(gates.values()):
            parts.append(kind)
        if not all(gates.values()):
            parts.append(f"denied {kind}")
    if flag.percentage_of_actors is not None:
        parts.append(f"{percent(flag.percentage_of_actors)} of actors")
    if flag.percentage_of_time is not None:
        parts.append(f"{percent(flag.percentage_of_time)} of time")
    return "partial: " + ", ".join(parts) if parts else "off"


def steady_text(flag: Flag, last_changed: Timestamp | None, now_ms: int) -> str | None:
    """``"fully on for N days"`` (or off) for a flag held by its boolean gate alone,
    N whole days since ``last_changed`` (its newest gate's HLC wall time) at wall
    time ``now_ms``; None for any other flag."""
    state = state_text(flag)
    if state not in ("on", "off") or last_changed is None:
        return None
    days = max(0, (now_ms - last_changed.wall_ms) // _DAY_MS)
    return f"fully {state} for {days} day{'' if days == 1 else 's'}"


def when(timestamp: str) -> str:
    """An audit entry's HLC timestamp text as a UTC time to the millisecond
    (``"2026-11-30 09:49:36.123 UTC"``); the text itself if it is no timestamp."""
    try:
        wall_ms = Timestamp.parse(timestamp).wall_ms
        # A valid HLC wall time reaches the year 10889; datetime stops at 9999.
        moment = datetime.datetime.fromtimestamp(wall_ms / 1000, datetime.UTC)
    except (TimestampError, ValueError, OverflowError, OSError):
        return timestamp
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{wall_ms % 1000:03d} UTC"


def what(entry: AuditEntry) -> str:
    """An audit entry's change in a line: the action, its target, and its value
    (``"enable_for_actor user-1: True"``, ``"restore 0001...: {'set': 1, ...}"``)."""
    text = entry.action
    if entry.target is not None:
        text += f" {entry.target}"
    if entry.value is not None:
        text += f": {entry.value}"
    return text


@attrs.frozen
class Gate:
    """One gate as the flag page lists it.

    Attributes:
        kind: ``"boolean"``, ``"actor"``, ``"group"``, ``"percentage_of_actors"``
            or ``"percentage_of_time"`` (what the remove form posts).
        target: the actor or group, else None.
        text: what it says (``"actor user-1: on"``).
        label: the remove button's accessible name (``"Remove actor gate user-1"``).
    """

    kind: str
    target: str | None
    text: str
    label: str


def gates(flag: Flag) -> list[Gate]:
    """Every gate of ``flag``: boolean, actors, groups (each sorted), percentages."""
    found = []
    if flag.boolean is not None:
        state = "on" if flag.boolean else "off"
        found.append(Gate("boolean", None, f"everyone: {state}", "Remove boolean gate"))
    for kind, targets in (("actor", flag.actors), ("group", flag.groups)):
        for target, enabled in sorted(targets.items()):
            state = "on" if enabled else "denied"
            found.append(
                Gate(kind, target, f"{kind} {target}: {state}", f"Remove {kind} gate {target}")
            )
    for kind, what_ in (("percentage_of_actors", "actors"), ("percentage_of_time", "time")):
        ratio = getattr(flag, kind)
        if ratio is not None:
            label = f"Remove percentage of {what_} gate"
            found.append(Gate(kind, None, f"{percent(ratio)} of {what_}", label))
    return found


@attrs.frozen
class FlagRow:
    """One row of the flags page."""

    flag: Flag
    state: str
    last: AuditEntry | None
    steady: str | None


def flag_rows(flags: Any, query: str, now_ms: int) -> list[FlagRow]:
    """The flags page's rows: every flag whose name holds ``query`` (any case), by
    name, with its state, newest audit entry and how long it has been fully on or
    off. ``flags`` is a `FlagStore` or `FlagClient` (called in this thread)."""
    needle = query.casefold()
    rows = []
    for flag in flags.all():
        if needle not in flag.name.casefold():
            continue
        newest = flags.audit(flag.name, limit=1)
        rows.append(
            FlagRow(
                flag=flag,
                state=state_text(flag),
                last=newest[0] if newest else None,
                steady=steady_text(flag, flags.last_changed(flag.name), now_ms),
            )
        )
    return rows


def split_groups(text: str) -> list[str]:
    """The groups of the evaluate form's comma-separated field, blanks dropped."""
    return [g.strip() for g in text.split(",") if g.strip()]


def changed_metadata(flag: Flag, form: dict[str, str]) -> dict[str, str]:
    """The metadata fields of the form that differ from the flag's (an unset field
    and an empty one are the same; an empty expiry is left alone, since a date
    cannot be cleared)."""
    fields = {}
    for field in ("description", "owner", "expires"):
        value = form.get(field, "")
        if value != (getattr(flag, field) or "") and (value or field != "expires"):
            fields[field] = value
    return fields
