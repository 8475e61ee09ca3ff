"""What the pages show, computed from the store: pure functions of flags, audit
entries and times, no request and no I/O. The templates only lay these out."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from hlc import Timestamp, TimestampError

from .._entries import rules_in_order
from .._evaluation import Evaluation
from .._schema import Flag
from .._store import AuditEntry
from .._text import attribute_token as attribute_token
from .._text import condition_text as condition_text
from .._text import json_text as json_text
from .._text import serve_form_text as serve_form_text
from .._text import serve_text as serve_text
from .._text import value_token as value_token

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
    (``"enable_for_actor user-1: True"``, ``"restore 0001...: {'set': 1, ...}"``);
    for the actions of typed flags and segments, the value in the pages' words
    (``"set_rule r1: country in fr, de -> blue"``, ``"set_variant blue: {...}"``)."""
    text = entry.action
    if entry.target is not None:
        text += f" {entry.target}"
    if entry.action in TYPED_ACTIONS:
        if entry.value is not None and entry.action not in _NO_VALUE:
            text += f": {typed_what(entry.action, entry.value)}"
    elif entry.value is not None:
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
    serves: str | None = None


def flag_rows(flags: Any, query: str, now_ms: int) -> list[FlagRow]:
    """The flags page's rows: every flag whose name holds ``query`` (any case), by
    name, with its state, newest audit entry and how long it has been fully on or
    off, and for a typed flag what it serves with no context (`serves_text`).
    ``flags`` is a `FlagStore` or `FlagClient` (called in this thread)."""
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
                serves=serves_text(flag, flags.evaluate(flag.name, None)) if flag.typed else None,
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


# -- typed flags ------------------------------------------------------------------------

#: The audit actions of typed flags and segments (`what` shows their values as JSON
#: or in the pages' readable forms).
TYPED_ACTIONS = (
    "set_variants",
    "set_variant",
    "delete_variant",
    "set_off_variant",
    "set_fallthrough",
    "set_rule",
    "delete_rule",
    "set_prerequisite",
    "delete_prerequisite",
    "schedule",
    "delete_schedule",
    "set_segment",
    "delete_segment",
)
#: Typed actions whose value says nothing the target does not.
_NO_VALUE = ("set_off_variant", "delete_variant", "delete_rule", "delete_prerequisite")


def rule_text(rule: Mapping[str, Any]) -> str:
    """A rule in a line: ``"country in fr, de; segment beta -> blue"``."""
    parts = [condition_text(c) for c in rule.get("conditions") or () if isinstance(c, Mapping)]
    parts += [f"segment {s}" for s in rule.get("segments") or ()]
    when_ = "; ".join(parts) if parts else "everyone"
    return f"{when_} -> {serve_text(rule.get('serve'))}"


def prerequisite_text(variants: Sequence[str]) -> str:
    """What a prerequisite requires of the other flag: ``"on"`` for ``["true"]``,
    ``"off"`` for ``["false"]``, else the variants joined by ``or``."""
    words = {"true": "on", "false": "off"}
    return " or ".join(words.get(v, v) if len(variants) == 1 else v for v in variants)


def at_text(at_ms: object) -> str:
    """A schedule's time, HLC wall ms, as UTC to the second (``"2026-11-30 09:49:36
    UTC"``); its repr when it is no time."""
    try:
        moment = datetime.datetime.fromtimestamp(int(at_ms) / 1000, datetime.UTC)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(at_ms)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def scheduled_write_text(write: object, *, delete: bool = False) -> str:
    """One write of a schedule: ``"boolean: true"``, ``"rule r2: plan in pro ->
    blue"``, ``"fallthrough: green 50% · blue 50%"``; ``"remove percentage_of_actors"``
    for a delete."""
    if not isinstance(write, list | tuple) or not write:
        return json_text(write)
    if delete:
        return "remove " + " ".join(str(part) for part in write)
    *key, value = write
    kind = key[0] if key else ""
    if kind == "rule" and isinstance(value, Mapping):
        shown = rule_text(value)
    elif kind == "fallthrough" and isinstance(value, Mapping):
        shown = serve_text(value)
    elif kind == "prereq" and isinstance(value, Mapping):
        shown = "requires " + prerequisite_text(list(value.get("variants") or ()))
    else:
        shown = json_text(value)
    return f"{' '.join(str(part) for part in key)}: {shown}"


def typed_what(action: str, value: Any) -> str:
    """The value part of a typed action's audit line."""
    if action == "set_rule" and isinstance(value, Mapping):
        return rule_text(value)
    if action == "set_fallthrough":
        return serve_text(value)
    if action == "set_segment" and isinstance(value, Mapping):
        conditions = value.get("conditions") or ()
        return "; ".join(condition_text(c) for c in conditions if isinstance(c, Mapping))
    if action == "schedule" and isinstance(value, Mapping):
        writes = [scheduled_write_text(w) for w in value.get("set") or ()]
        writes += [scheduled_write_text(w, delete=True) for w in value.get("delete") or ()]
        return f"at {at_text(value.get('at_ms'))}: {'; '.join(writes) or 'nothing'}"
    if action == "set_prerequisite" and isinstance(value, list | tuple):
        return "requires " + prerequisite_text([str(v) for v in value])
    return json_text(value)


@attrs.frozen
class VariantView:
    """One variant: its name, its value as JSON, and whether that spans lines."""

    name: str
    value: str
    block: bool


@attrs.frozen
class RuleView:
    """One rule, in evaluation order.

    Attributes:
        conditions: each in the form's words (`condition_text`).
        segments: the segments it requires, by name.
        serve: what it serves (`serve_text`).
        form: its fields as the rule form takes them (to edit it).
    """

    id: str
    conditions: list[str]
    segments: list[str]
    serve: str
    form: dict[str, str]


@attrs.frozen
class ScheduleView:
    """One schedule: when (UTC), whether its time has come, and what it writes."""

    id: str
    at: str
    applied: bool
    writes: list[str]


@attrs.frozen
class TypedView:
    """The typed parts of a flag as the flag page lays them out.

    Attributes:
        segments: ``{name: its conditions in words, or None when undefined}`` of the
            segments the rules require.
    """

    type: str
    variants: list[VariantView]
    off_variant: str | None
    fallthrough: str
    fallthrough_form: str
    rules: list[RuleView]
    prerequisites: list[tuple[str, str]]
    schedules: list[ScheduleView]
    segments: dict[str, list[str] | None]


def rule_form(rule: Mapping[str, Any]) -> dict[str, str]:
    """A rule's fields as the rule form takes them."""
    conditions = rule.get("conditions") or ()
    return {
        "conditions": "\n".join(condition_text(c) for c in conditions if isinstance(c, Mapping)),
        "segments": ", ".join(str(s) for s in rule.get("segments") or ()),
        "serve": serve_form_text(rule.get("serve")),
    }


def typed_view(
    flag: Flag, segments: Mapping[str, Sequence[Mapping[str, Any]]], now_ms: int
) -> TypedView:
    """The typed parts of ``flag``; ``segments`` as `FlagStore.segments` gives them."""
    variants = []
    for variant, value in flag.variants.items():
        block = isinstance(value, Mapping | list) and bool(value)
        variants.append(VariantView(variant, json_text(value, pretty=block), block))
    rules = []
    used: dict[str, list[str] | None] = {}
    for rule_id, rule in rules_in_order(flag):
        conditions = [condition_text(c) for c in rule.get("conditions") or ()]
        names = [str(s) for s in rule.get("segments") or ()]
        for name in names:
            found = segments.get(name)
            used[name] = None if found is None else [condition_text(c) for c in found]
        rules.append(
            RuleView(rule_id, conditions, names, serve_text(rule.get("serve")), rule_form(rule))
        )
    schedules = []
    for sched_id, schedule in sorted(
        flag.schedules.items(), key=lambda item: (str(item[1].get("at_ms")), item[0])
    ):
        at_ms = schedule.get("at_ms")
        writes = [scheduled_write_text(w) for w in schedule.get("set") or ()]
        writes += [scheduled_write_text(w, delete=True) for w in schedule.get("delete") or ()]
        applied = type(at_ms) is int and at_ms <= now_ms
        schedules.append(ScheduleView(sched_id, at_text(at_ms), applied, writes))
    return TypedView(
        type=flag.type,
        variants=variants,
        off_variant=flag.off_variant,
        fallthrough=serve_text(flag.fallthrough),
        fallthrough_form=serve_form_text(flag.fallthrough),
        rules=rules,
        prerequisites=[(o, prerequisite_text(list(v))) for o, v in flag.prerequisites.items()],
        schedules=schedules,
        segments=dict(sorted(used.items())),
    )


def serves_text(flag: Flag, evaluation: Evaluation) -> str | None:
    """What a typed flag serves with no context, for the flags page: the variant's
    name, the split it draws from (``"split green 50% · blue 50%"``: with no actor
    the draw is random), or ``"no variant"`` and why; None for a flag with no typed
    part."""
    if not flag.typed:
        return None
    if evaluation.reason == "SPLIT":
        rule = flag.rules.get(evaluation.detail or "")
        serve = rule.get("serve") if rule is not None else flag.fallthrough
        return "split " + serve_text(serve)
    if evaluation.variant is None:
        detail = f": {evaluation.detail}" if evaluation.detail else ""
        return f"no variant ({evaluation.reason.lower()}{detail})"
    return evaluation.variant
