"""The flag schema: the `Flag` value, the name grammar and the checks every way in
(Python API, HTTP, CLI, export files) shares. Pure: no map, no I/O."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs

MAX_NAME_CHARS = 200
#: The characters of flag names, actor ids and group names (besides letters and digits).
NAME_PUNCTUATION = "._-:@+"
#: The name grammar: 1 to `MAX_NAME_CHARS` ASCII letters, digits and `NAME_PUNCTUATION`,
#: but not ``.`` or ``..``. No whitespace, control characters, NUL, ``/``, ``?``, ``#``
#: or ``%``: a name goes into a URL path segment, a log line and a shell argument as
#: it is (and browsers and curl resolve the path segments ``.`` and ``..`` away).
NAME_PATTERN = re.compile(rf"(?!\.\.?\Z)[A-Za-z0-9._:@+-]{{1,{MAX_NAME_CHARS}}}")
MAX_TEXT_CHARS = 2000  # description and owner
GATE_KINDS = ("boolean", "actor", "group", "percentage_of_actors", "percentage_of_time")
META_FIELDS = ("description", "owner", "expires")
#: The fields of `Flag` that describe typed flags, in the order documents write them.
TYPED_FIELDS = (
    "type",
    "variants",
    "off_variant",
    "fallthrough",
    "rules",
    "prerequisites",
    "schedules",
)


@attrs.frozen
class Flag:
    """Everything known about one flag (made by `FlagStore.flag` and `FlagStore.all`).

    Attributes:
        name: the flag's name.
        boolean: the boolean gate: True, False, or None when unset.
        actors, groups: ``{id: enabled}`` of the actor and group gates (False = deny).
        percentage_of_actors, percentage_of_time: in [0, 1], or None when unset.
        description, owner, expires: metadata (``expires`` as an ISO date string).
        default: the default this store was given for the flag, if any (a bool, or
            a `Flag` whose gates decide); it applies only while the cluster holds no
            gate for it.
        type: the value type, one of ``"boolean"``, ``"string"``, ``"integer"``,
            ``"float"`` and ``"object"`` (OpenFeature's five).
        variants: ``{variant: value}``, each value of ``type`` (an ``"object"``
            value is a JSON object). A boolean flag with none has the implicit
            variants ``"true"`` and ``"false"``.
        off_variant: the variant served when the gates say off, or None.
        fallthrough: what is served when the gates say on and no rule matches:
            ``{"variant": v}`` or ``{"split": {v: weight}}``, or None.
        rules: ``{rule_id: rule}``, each ``{"position": str, "conditions": [...],
            "segments": [...], "serve": {...}}``; evaluated in ``(position,
            rule_id)`` order, the same on every node.
        prerequisites: ``{other_flag: [variant, ...]}``: ``other_flag``, evaluated
            for the same context, must serve one of these variants.
        schedules: ``{schedule_id: {"at_ms": int, "set": [[kind, *key, value],
            ...], "delete": [[kind, *key], ...]}}``: changes to this flag that take
            effect at ``at_ms`` (HLC wall ms).

    The fields after ``default`` describe typed flags; a flag that sets none of them
    is the boolean flag of the gates alone. How they evaluate is in
    `FlagStore.evaluate`.
    """

    name: str
    boolean: bool | None = None
    actors: Mapping[str, bool] = attrs.field(factory=dict)
    groups: Mapping[str, bool] = attrs.field(factory=dict)
    percentage_of_actors: float | None = None
    percentage_of_time: float | None = None
    description: str | None = None
    owner: str | None = None
    expires: str | None = None
    default: bool | Flag | None = None
    type: str = "boolean"
    variants: Mapping[str, Any] = attrs.field(factory=dict)
    off_variant: str | None = None
    fallthrough: Mapping[str, Any] | None = None
    rules: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    prerequisites: Mapping[str, Sequence[str]] = attrs.field(factory=dict)
    schedules: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    @property
    def has_gates(self) -> bool:
        """True when the cluster holds at least one gate for this flag."""
        return (
            self.boolean is not None
            or bool(self.actors)
            or bool(self.groups)
            or self.percentage_of_actors is not None
            or self.percentage_of_time is not None
        )

    @property
    def typed(self) -> bool:
        """True when any field of typed flags is set: a type other than boolean,
        variants, an off variant, a fallthrough, rules, prerequisites or schedules."""
        return (
            self.type != "boolean"
            or bool(self.variants)
            or self.off_variant is not None
            or self.fallthrough is not None
            or bool(self.rules)
            or bool(self.prerequisites)
            or bool(self.schedules)
        )


def valid_name(value: object) -> bool:
    """True when ``value`` is a name by the grammar of `NAME_PATTERN` (flag names,
    actor ids, group names)."""
    return type(value) is str and NAME_PATTERN.fullmatch(value) is not None


def _check_name(value: object, what: str) -> str:
    if not valid_name(value):
        raise ValueError(
            f"{what} must be 1 to {MAX_NAME_CHARS} ASCII letters, digits or any of "
            f"{NAME_PUNCTUATION!r}, got {_short(value)}"
        )
    return cast(str, value)


def _check_ratio(value: object, what: str) -> float:
    if type(value) not in (int, float):  # bool is refused: True is not 100%
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r:.60}")
    ratio = float(cast(float, value))
    if math.isnan(ratio) or not 0 <= ratio <= 1:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r:.60}")
    return ratio


def _short(value: object, chars: int = 60) -> str:
    """``repr(value)`` cut to ``chars``; total (an int over 4,300 digits, which CBOR
    can carry, makes repr raise)."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= chars else text[: chars - 3] + "..."


class FlagFormatError(ValueError):
    """A flag (or a document of flags) that does not follow the schema.

    Attributes:
        pointer: where the bad value is, as an RFC 6901 JSON pointer into the
            document or flag checked (``"/flags/2/percentage_of_actors"``); ``""``
            for the whole of it.
    """

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '/'}: {message}")
        self.pointer = pointer
        self.message = message


def is_text(value: object, chars: int = MAX_TEXT_CHARS) -> bool:
    """True for a str of at most ``chars`` characters that encodes as UTF-8: JSON can
    carry a lone surrogate (``"\\ud800"``), which no text encoding, log line or CBOR
    string can."""
    if type(value) is not str or len(value) > chars:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def pointer_part(token: object) -> str:
    """One reference token of a JSON pointer: ``"/"`` + the token, ``~`` written
    ``~0`` and ``/`` written ``~1`` (RFC 6901, section 3)."""
    return "/" + str(token).replace("~", "~0").replace("/", "~1")


def _gates_of(value: object, kind: str, at: str) -> dict[str, bool]:
    if not isinstance(value, Mapping):
        raise FlagFormatError(at, f"{kind} gates must be an object of {{id: bool}}")
    gates = {}
    for target, enabled in value.items():
        where = at + pointer_part(target)
        if not valid_name(target):
            raise FlagFormatError(where, f"not a {kind} name: {_short(target)}")
        if type(enabled) is not bool:
            raise FlagFormatError(where, f"a gate is true or false, not {_short(enabled)}")
        gates[target] = enabled
    return gates


def check_flag(flag: Flag) -> Flag:
    """Check every field of ``flag`` against the schema, as a writer would.

    Returns:
        The flag with its fields in canonical form (percentages as float, gates as
        plain dicts, ``expires`` as ``YYYY-MM-DD``), ``default`` dropped.

    Raises:
        FlagFormatError: the first bad field, its pointer relative to the flag
            (``"/actors/u 1"`` has the pointer ``/actors/u 1``).
    """
    if not valid_name(flag.name):
        raise FlagFormatError(
            "/name",
            f"a flag name is 1 to {MAX_NAME_CHARS} ASCII letters, digits or any of "
            f"{NAME_PUNCTUATION!r}, not {_short(flag.name)}",
        )
    if flag.boolean is not None and type(flag.boolean) is not bool:
        raise FlagFormatError("/boolean", f"true, false or null, not {_short(flag.boolean)}")
    fields: dict[str, Any] = {
        "actors": _gates_of(flag.actors, "actor", "/actors"),
        "groups": _gates_of(flag.groups, "group", "/groups"),
    }
    for field in ("percentage_of_actors", "percentage_of_time"):
        ratio = getattr(flag, field)
        if ratio is not None:
            try:
                fields[field] = _check_ratio(ratio, field)
            except ValueError as exc:
                raise FlagFormatError("/" + field, str(exc)) from None
    for field in ("description", "owner"):
        text = getattr(flag, field)
        if text is not None and not is_text(text):
            raise FlagFormatError(
                "/" + field,
                f"a str of at most {MAX_TEXT_CHARS} chars of Unicode text, not {_short(text)}",
            )
    if flag.expires is not None:
        try:
            fields["expires"] = datetime.date.fromisoformat(flag.expires).isoformat()
        except (TypeError, ValueError):
            raise FlagFormatError(
                "/expires", f"a date as YYYY-MM-DD, not {_short(flag.expires)}"
            ) from None
    fields.update(_check_typed(flag))
    return attrs.evolve(flag, default=None, **fields)


def _check_typed(flag: Flag) -> dict[str, Any]:
    """Check the fields of typed flags (see `Flag`); return them in canonical form."""
    # Imported here: these modules import this one.
    from ._entries import _check_schedule
    from ._schedule import MAX_SCHEDULES
    from ._targeting import check_rule, check_serve
    from ._variants import TYPES, coerce_value

    kind = flag.type
    if kind not in TYPES:
        raise FlagFormatError("/type", f"one of {', '.join(TYPES)}, not {_short(kind)}")
    if not isinstance(flag.variants, Mapping):
        raise FlagFormatError("/variants", "an object of {variant: value}")
    variants = {}
    for variant, value in flag.variants.items():
        at = "/variants" + pointer_part(variant)
        if not valid_name(variant):
            raise FlagFormatError(at, f"not a variant name: {_short(variant)}")
        ok, served = coerce_value(kind, value)
        if not ok:
            article = "an" if kind[0] in "aeiou" else "a"
            raise FlagFormatError(
                at, f"{article} {kind} flag's variant is {article} {kind}, not {_short(value)}"
            )
        variants[variant] = served
    if flag.off_variant is not None and not valid_name(flag.off_variant):
        raise FlagFormatError("/off_variant", f"not a variant name: {_short(flag.off_variant)}")
    fallthrough = None
    if flag.fallthrough is not None:
        fallthrough = check_serve(flag.fallthrough, "/fallthrough")
    if not isinstance(flag.rules, Mapping):
        raise FlagFormatError("/rules", "an object of {rule_id: rule}")
    rules = {}
    for rule_id, rule in flag.rules.items():
        at = "/rules" + pointer_part(rule_id)
        if not valid_name(rule_id):
            raise FlagFormatError(at, f"not a rule id: {_short(rule_id)}")
        try:
            rules[rule_id] = check_rule(rule)
        except FlagFormatError as exc:
            raise FlagFormatError(at + exc.pointer, exc.message) from None
    if not isinstance(flag.prerequisites, Mapping):
        raise FlagFormatError("/prerequisites", "an object of {flag: [variant, ...]}")
    prerequisites = {}
    for other, wanted in flag.prerequisites.items():
        at = "/prerequisites" + pointer_part(other)
        if not valid_name(other):
            raise FlagFormatError(at, f"not a flag name: {_short(other)}")
        if other == flag.name:
            raise FlagFormatError(at, f"flag {other} cannot require itself")
        if not isinstance(wanted, list | tuple) or not wanted:
            raise FlagFormatError(at, "a non-empty list of variant names")
        for index, variant in enumerate(wanted):
            if not valid_name(variant):
                raise FlagFormatError(f"{at}/{index}", f"not a variant name: {_short(variant)}")
        prerequisites[other] = sorted(set(wanted))
    if not isinstance(flag.schedules, Mapping):
        raise FlagFormatError("/schedules", "an object of {schedule_id: schedule}")
    if len(flag.schedules) > MAX_SCHEDULES:
        raise FlagFormatError("/schedules", f"at most {MAX_SCHEDULES} schedules per flag")
    schedules = {}
    for sched_id, schedule in flag.schedules.items():
        at = "/schedules" + pointer_part(sched_id)
        if not valid_name(sched_id):
            raise FlagFormatError(at, f"not a schedule id: {_short(sched_id)}")
        try:
            _check_schedule(flag.name, schedule)
        except FlagFormatError as exc:
            raise FlagFormatError(at + exc.pointer, exc.message) from None
        schedules[sched_id] = {
            "at_ms": schedule["at_ms"],
            "set": [list(w) for w in schedule.get("set", [])],
            "delete": [list(w) for w in schedule.get("delete", [])],
        }
    return {
        "variants": variants,
        "fallthrough": fallthrough,
        "rules": rules,
        "prerequisites": prerequisites,
        "schedules": schedules,
    }
