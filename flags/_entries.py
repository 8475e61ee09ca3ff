"""A flag as map entries, and back: the one place that knows every entry's shape.

Pure: no map, no I/O. `FlagStore` indexes, describes and writes flags with these;
`flags._export` plans imports with them.

Every part of a flag is its own entry of the replicated map, so that concurrent
edits of different parts on different nodes all survive (the gates of
`flags._rules`, the typed parts of `flags._evaluation`):

==========================================  =========================================
key                                         value
==========================================  =========================================
``(flag, "boolean")``                       bool
``(flag, "actor" | "group", id)``           bool (False denies)
``(flag, "percentage_of_actors" |           a number in [0, 1]
"percentage_of_time")``
``(flag, "meta", field)``                   str (``field``: description, owner,
                                            expires; expires an ISO date)
``(flag, "type")``                          one of `flags._variants.TYPES`
``(flag, "variant", v)``                    the variant's value
``(flag, "off_variant")``                   a variant name
``(flag, "fallthrough")``                   ``{"variant": v}`` or ``{"split": {...}}``
``(flag, "rule", rule_id)``                 a rule (`flags._targeting.check_rule`)
``(flag, "prereq", other)``                 ``{"variants": [v, ...]}``
``(flag, "schedule", schedule_id)``         a schedule (`flags._schedule`)
``(flag, "audit", timestamp)``              an audit record (a dict)
``("", "segment", name)``                   ``{"conditions": [...]}``
==========================================  =========================================
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ._schedule import DELETED, scheduled_writes
from ._schema import (
    GATE_KINDS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    META_FIELDS,
    Flag,
    FlagFormatError,
    _short,
    valid_name,
)
from ._targeting import check_rule, check_segment, check_serve
from ._variants import TYPES

Key = tuple[Any, ...]
#: The kinds of entry that decide how a flag evaluates (the gates and the typed parts).
RULE_KINDS = (*GATE_KINDS, "type", "variant", "off_variant", "fallthrough", "rule", "prereq")
#: The kinds `FlagStore.flag` describes (all but the audit log).
FLAG_KINDS = (*RULE_KINDS, "meta", "schedule")
#: The flag name of the cluster-wide entries (segments): no flag has it.
CLUSTER = ""


def _is_name(value: object) -> bool:
    # The shape an entry's name parts had before the grammar: non-empty, bounded.
    return type(value) is str and 0 < len(value) <= MAX_NAME_CHARS


def _is_ratio(value: object) -> bool:
    # int or float, not bool (True is not 100%); compared before any float(): an
    # int of 400 digits must not overflow, and NaN fails both comparisons.
    return type(value) in (int, float) and 0 <= value <= 1  # type: ignore[operator]


def _checked(check: Any, value: object) -> str | None:
    try:
        check(value)
    except FlagFormatError as exc:
        return str(exc)
    except (TypeError, ValueError, RecursionError) as exc:  # a shape the check did not expect
        return f"{type(exc).__name__}: {_short(exc)}"
    return None


def entry_problem(key: object, value: object) -> str | None:
    """Why ``(key, value)`` is not an entry of the table in the module notes, or None
    when it is. Names and ids are non-empty str of at most `MAX_NAME_CHARS` chars
    (older versions wrote names outside today's grammar; they are still read).
    Pure and total: it never raises."""
    if type(key) is not tuple or len(key) < 2:
        return "not a (flag, kind, ...) tuple"
    name, kind = key[0], key[1]
    if name == CLUSTER and kind == "segment":
        if len(key) != 3 or not valid_name(key[2]):
            return "segment keys are ('', 'segment', name)"
        return _checked(check_segment, value)
    if name == CLUSTER and kind == "audit":  # the audit log of segment changes
        if len(key) != 3 or type(key[2]) is not str:
            return "audit keys are (flag, 'audit', timestamp), timestamp a str"
        return None if type(value) is dict else f"audit record {_short(value)} is not a dict"
    if not _is_name(name):
        return f"the flag name is not a non-empty str of at most {MAX_NAME_CHARS} chars"
    if kind in ("boolean", "percentage_of_actors", "percentage_of_time", "type"):
        if len(key) != 2:
            return f"{kind} keys have 2 parts, not {len(key)}"
        if kind == "boolean":
            return None if type(value) is bool else f"boolean gate {_short(value)} is not a bool"
        if kind == "type":
            return None if value in TYPES else f"type {_short(value)} is not one of {TYPES}"
        return (
            None if _is_ratio(value) else f"{kind} value {_short(value)} is not a number in [0, 1]"
        )
    if kind in ("off_variant", "fallthrough"):
        if len(key) != 2:
            return f"{kind} keys have 2 parts, not {len(key)}"
        if kind == "off_variant":
            return None if valid_name(value) else f"off_variant {_short(value)} is not a name"
        return _checked(check_serve, value)
    if len(key) != 3:
        return f"{_short(kind)} keys have 3 parts, not {len(key)}"
    part = key[2]
    if kind == "actor" or kind == "group":
        if not _is_name(part):
            return f"{kind} keys are (flag, {kind!r}, id), id a non-empty str"
        return None if type(value) is bool else f"{kind} gate value {_short(value)} is not a bool"
    if kind == "meta":
        if part not in META_FIELDS:
            return f"meta keys are (flag, 'meta', field), field one of {META_FIELDS}"
        if type(value) is not str or len(value) > MAX_TEXT_CHARS:
            return f"metadata value {_short(value)} is not a str of at most {MAX_TEXT_CHARS} chars"
        if part == "expires":
            try:
                datetime.date.fromisoformat(value)
            except ValueError:
                return f"expires {_short(value)} is not an ISO date"
        return None
    if kind == "audit":
        if type(part) is not str:
            return "audit keys are (flag, 'audit', timestamp), timestamp a str"
        return None if type(value) is dict else f"audit record {_short(value)} is not a dict"
    if kind in ("variant", "rule", "prereq", "schedule"):
        if not valid_name(part):
            return f"{kind} keys are (flag, {kind!r}, name), name by the name grammar"
        if kind == "variant":
            return None  # any value: whether it is of the flag's type is decided on compiling
        if kind == "rule":
            return _checked(check_rule, value)
        if kind == "prereq":
            wanted = value.get("variants") if isinstance(value, Mapping) else None
            if (
                not isinstance(value, Mapping)
                or set(value) != {"variants"}
                or not isinstance(wanted, list)
                or not wanted
                or not all(valid_name(v) for v in wanted)
            ):
                return f"prerequisite {_short(value)} is not {{'variants': [name, ...]}}"
            return None
        return _checked(lambda s: _check_schedule(name, s), value)
    return f"unknown kind {_short(kind)}"


def _check_schedule(name: str, schedule: object) -> None:
    # scheduled_writes checks the keys; the values must be entries too.
    for key, value in scheduled_writes(name, schedule):
        if value is not DELETED:
            problem = entry_problem(key, value)
            if problem is not None:
                raise FlagFormatError("/set", f"{key[1:]}: {problem}")


def flag_entries(flag: Flag) -> dict[Key, Any]:
    """The map entries of ``flag`` (checked, `flags.check_flag`): its gates,
    metadata and typed parts; not its default nor its audit log.

    A ``"boolean"`` type is no entry (absent means boolean)."""
    name = flag.name
    entries: dict[Key, Any] = {}
    if flag.boolean is not None:
        entries[(name, "boolean")] = flag.boolean
    for actor, enabled in flag.actors.items():
        entries[(name, "actor", actor)] = enabled
    for group, enabled in flag.groups.items():
        entries[(name, "group", group)] = enabled
    for field in ("percentage_of_actors", "percentage_of_time"):
        if getattr(flag, field) is not None:
            entries[(name, field)] = getattr(flag, field)
    for field in META_FIELDS:
        if getattr(flag, field) is not None:
            entries[(name, "meta", field)] = getattr(flag, field)
    if flag.type != "boolean":
        entries[(name, "type")] = flag.type
    for variant, value in flag.variants.items():
        entries[(name, "variant", variant)] = value
    if flag.off_variant is not None:
        entries[(name, "off_variant")] = flag.off_variant
    if flag.fallthrough is not None:
        entries[(name, "fallthrough")] = dict(flag.fallthrough)
    for rule_id, rule in flag.rules.items():
        entries[(name, "rule", rule_id)] = dict(rule)
    for other, variants in flag.prerequisites.items():
        entries[(name, "prereq", other)] = {"variants": list(variants)}
    for sched_id, schedule in flag.schedules.items():
        entries[(name, "schedule", sched_id)] = dict(schedule)
    return entries


def flag_of_entries(
    name: str, entries: Mapping[Key, Any], default: bool | Flag | None = None
) -> Flag:
    """The `Flag` that ``entries`` (``{key: value}`` of valid entries, as
    `entry_problem` passes them) describe; entries of other flags and audit records
    are skipped. Never raises."""
    fields: dict[str, Any] = {
        "actors": {},
        "groups": {},
        "variants": {},
        "rules": {},
        "prerequisites": {},
        "schedules": {},
    }
    for key, value in entries.items():
        if key[0] != name:
            continue
        kind = key[1]
        if kind == "boolean" or kind == "type" or kind == "off_variant":
            fields[kind] = value
        elif kind == "percentage_of_actors" or kind == "percentage_of_time":
            fields[kind] = float(value)
        elif kind == "fallthrough":
            fields[kind] = value
        elif kind == "actor" or kind == "group":
            fields[kind + "s"][key[2]] = value
        elif kind == "meta":
            fields[key[2]] = value
        elif kind == "variant":
            fields["variants"][key[2]] = value
        elif kind == "rule":
            fields["rules"][key[2]] = value
        elif kind == "prereq":
            fields["prerequisites"][key[2]] = list(value["variants"])
        elif kind == "schedule":
            fields["schedules"][key[2]] = value
    for field in ("actors", "groups", "variants", "rules", "prerequisites", "schedules"):
        fields[field] = dict(sorted(fields[field].items()))
    return Flag(name=name, default=default, **fields)


def rules_in_order(flag: Flag) -> list[tuple[str, Mapping[str, Any]]]:
    """``flag``'s rules as ``[(rule_id, rule)]`` in evaluation order: by ``(position,
    rule_id)``, the same on every node."""
    return sorted(flag.rules.items(), key=lambda item: (str(item[1].get("position")), item[0]))
