"""Conditions on the evaluation context, and the write-time checks of rules.

Pure: no map, no I/O, no clock. A condition is ``{"attribute": str, "op": str,
"values": [...]}``; `compile_condition` turns one into a predicate over
``(actor, groups, attributes)`` once, so that evaluating it parses nothing.

``attribute`` names what the condition reads: ``"actor"`` is the targeting key,
``"groups"`` the caller's groups (the condition holds when any group satisfies it;
``not_in`` when none is among the values), anything else a key of the context's
``attributes``. A missing attribute (or None), or a value of the wrong type for the
operator, makes the condition false, ``not_in`` included. ``values`` are any-of: a
condition holds when it holds for one of them.

======================  ==================  =====================================
op                      attribute value     holds when
======================  ==================  =====================================
in, not_in              str, number, bool   it equals one of the values (not_in:
                                            none); 1 equals 1.0, True equals no
                                            number
lt, lte, gt, gte        number (not bool)   it compares so with one of the values
semver_lt, _lte, _eq,   a SemVer 2.0.0      SemVer precedence (section 11):
_gte, _gt               version str         pre-release included, build ignored;
                                            a malformed version never matches
starts_with,            str                 it starts with / ends with / contains
ends_with, contains                         one of the values
before, after           RFC 3339 date-time  as UTC instants; a date is its
                        or date str, or     midnight UTC; a number is Unix
                        number (Unix s)     seconds
======================  ==================  =====================================

There is no regex operator. The issue allows one only with a bounded engine, and
Python's ``re`` backtracks: one rule like ``(a+)+$`` against a long attribute would
stall the read path of every node for seconds. Prefix, suffix and substring tests
cover the common uses at C speed.

A segment, ``("", "segment", name) -> {"conditions": [...]}``, is a named list of
conditions any flag's rules can require; `check_segment` checks one.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from ._schema import (
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    FlagFormatError,
    _short,
    is_text,
    pointer_part,
    valid_name,
)
from ._variants import MAX_SPLIT_VARIANTS, MAX_WEIGHT, valid_position

#: What a compiled condition reads: ``(actor, groups, attributes)``.
Predicate: TypeAlias = Callable[[str | None, frozenset[str], Mapping[str, Any]], bool]

MAX_CONDITIONS = 50
MAX_VALUES = 100
MAX_SEGMENTS = 50
SET_OPS = ("in", "not_in")
NUMBER_OPS = ("lt", "lte", "gt", "gte")
SEMVER_OPS = ("semver_lt", "semver_lte", "semver_eq", "semver_gte", "semver_gt")
STRING_OPS = ("starts_with", "ends_with", "contains")
TIME_OPS = ("before", "after")
OPS = SET_OPS + NUMBER_OPS + SEMVER_OPS + STRING_OPS + TIME_OPS


# -- values --------------------------------------------------------------------


def _is_number(value: object) -> bool:
    t = type(value)
    return (t is int or t is float) and not (t is float and math.isnan(value))  # type: ignore[arg-type]


# SemVer 2.0.0's own regular expression (semver.org, FAQ), anchored.
_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?",
    re.ASCII,
)
SemverKey: TypeAlias = tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]


@functools.lru_cache(maxsize=4096)
def semver_key(text: str) -> SemverKey | None:
    """A key that sorts versions by SemVer 2.0.0 precedence (semver.org, section 11).

    Returns:
        ``(major, minor, patch, 1, ())`` for a release, ``(major, minor, patch, 0,
        identifiers)`` for a pre-release (numeric identifiers as ``(0, int)``, sorting
        before alphanumeric ones as ``(1, str)``; more identifiers sort later when the
        first ones are equal); None for a str that is not a version (at most
        `MAX_TEXT_CHARS` chars are read). Build metadata is ignored. Cached: the
        same attribute value parses once.
    """
    if len(text) > MAX_TEXT_CHARS:
        return None
    match = _SEMVER.fullmatch(text)
    if match is None:
        return None
    major, minor, patch, pre = int(match[1]), int(match[2]), int(match[3]), match[4]
    if pre is None:
        return (major, minor, patch, 1, ())
    parts = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (major, minor, patch, 0, parts)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


@functools.lru_cache(maxsize=4096)
def _instant_of_text(text: str) -> float | None:
    if _DATE.fullmatch(text):
        try:
            day = datetime.date.fromisoformat(text)
        except ValueError:
            return None
        return (datetime.datetime(day.year, day.month, day.day, tzinfo=_EPOCH.tzinfo) - _EPOCH) / (
            datetime.timedelta(seconds=1)
        )
    if not _DATE_TIME.fullmatch(text):
        return None
    head, dot, rest = text.partition(".")
    if dot:  # fromisoformat takes 3 or 6 digits of fraction: cut or pad to 6
        digits = len(rest) - len(rest.lstrip("0123456789"))
        rest = (rest[:digits] + "000000")[:6] + rest[digits:]
        text = head + "." + rest
    try:
        moment = datetime.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment - _EPOCH) / datetime.timedelta(seconds=1)


def instant(value: object) -> float | None:
    """``value`` as a UTC instant in seconds since the Unix epoch, or None.

    Args:
        value: an RFC 3339 date-time (``"2025-03-01T12:00:00Z"``, an offset
            required, ``t``/``z`` and a space separator accepted, fractions to the
            microsecond), an RFC 3339 full-date (``"2025-03-01"``, its midnight UTC),
            or a number of Unix seconds (not a bool, not NaN).

    Returns:
        Seconds (float), or None for anything else. Never raises. Cached for str.
    """
    t = type(value)
    if t is int or t is float:
        return float(value) if _is_number(value) and math.isfinite(value) else None  # type: ignore[arg-type]
    if isinstance(value, str) and len(value) <= 64:
        return _instant_of_text(value)
    return None


# -- compiling -----------------------------------------------------------------


def _never(actor: str | None, groups: frozenset[str], attributes: Mapping[str, Any]) -> bool:
    return False


def _set_condition(attribute: str, values: Sequence[Any], wanted: bool) -> Predicate:
    """An ``in`` (``wanted`` True) or ``not_in`` condition, the commonest: read and
    tested in one call. The str, number and bool values are kept apart (Python has
    True == 1, the conditions do not); the actor, a targeting key, is a str."""
    strs = frozenset(v for v in values if type(v) is str)
    nums = frozenset(v for v in values if _is_number(v))
    bools = frozenset(v for v in values if type(v) is bool)
    if attribute == "groups":
        if wanted:
            return lambda actor, groups, attributes: not strs.isdisjoint(groups)
        return lambda actor, groups, attributes: strs.isdisjoint(groups)
    if attribute == "actor":
        return lambda actor, groups, attributes: type(actor) is str and (actor in strs) is wanted

    def member(actor: str | None, groups: frozenset[str], attributes: Mapping[str, Any]) -> bool:
        v = attributes.get(attribute)
        t = type(v)
        if t is str:
            return (v in strs) is wanted
        if t is int or t is float:
            return (v in nums) is wanted
        return t is bool and (v in bools) is wanted  # None, or another type: False

    return member


_NUMBER_TYPES = (int, float)  # for ``type(v) in _NUMBER_TYPES``: bool is neither


def _test_of(op: str, values: Sequence[Any]) -> Callable[[Any], bool]:
    """A test of one (non-None) attribute value, for ``op`` (not in / not_in: see
    `_set_condition`) over ``values``.

    Each test is one Python function that calls no other (but the cached
    `semver_key` and `instant`): a condition costs two calls, its own and its test's.
    """
    if op in NUMBER_OPS:
        numbers = [v for v in values if _is_number(v)]
        if not numbers:
            return lambda v: False
        low, high = min(numbers), max(numbers)
        number = _NUMBER_TYPES
        return {
            "lt": lambda v: type(v) in number and v < high,
            "lte": lambda v: type(v) in number and v <= high,
            "gt": lambda v: type(v) in number and v > low,
            "gte": lambda v: type(v) in number and v >= low,
        }[op]
    if op in SEMVER_OPS:
        keys = [k for k in (semver_key(v) for v in values if type(v) is str) if k is not None]
        if not keys:
            return lambda v: False
        lowest, highest, exact = min(keys), max(keys), frozenset(keys)
        key = semver_key  # None for a malformed version, which never matches
        return {
            "semver_lt": lambda v: type(v) is str and (k := key(v)) is not None and k < highest,
            "semver_lte": lambda v: type(v) is str and (k := key(v)) is not None and k <= highest,
            "semver_eq": lambda v: type(v) is str and key(v) in exact,
            "semver_gte": lambda v: type(v) is str and (k := key(v)) is not None and k >= lowest,
            "semver_gt": lambda v: type(v) is str and (k := key(v)) is not None and k > lowest,
        }[op]
    if op in STRING_OPS:
        texts = tuple(v for v in values if type(v) is str)
        if op == "starts_with":
            return lambda v: type(v) is str and v.startswith(texts)
        if op == "ends_with":
            return lambda v: type(v) is str and v.endswith(texts)
        return lambda v: type(v) is str and any(t in v for t in texts)
    if op in TIME_OPS:
        moments = [m for m in (instant(v) for v in values) if m is not None]
        if not moments:
            return lambda v: False
        if op == "before":
            latest = max(moments)
            return lambda v: (moment := instant(v)) is not None and moment < latest
        earliest = min(moments)
        return lambda v: (moment := instant(v)) is not None and moment > earliest
    return lambda v: False


def compile_condition(condition: Mapping[str, Any]) -> Predicate:
    """The predicate of a condition that `check_condition` accepts.

    Returns:
        A function of ``(actor, groups, attributes)`` that never raises (for
        attribute values of any type) and parses nothing but cached SemVer and
        instant strings of the context. A condition of an unknown op never holds.
    """
    attribute, op, values = condition["attribute"], condition["op"], condition["values"]
    if op in SET_OPS:
        return _set_condition(attribute, values, op == "in")
    test = _test_of(op, values)
    if attribute == "groups":
        return lambda actor, groups, attributes: any(test(g) for g in groups)
    if attribute == "actor":
        return lambda actor, groups, attributes: actor is not None and test(actor)

    def holds(actor: str | None, groups: frozenset[str], attributes: Mapping[str, Any]) -> bool:
        value = attributes.get(attribute)
        return value is not None and test(value)

    return holds


def compile_conditions(conditions: Iterable[Mapping[str, Any]]) -> tuple[Predicate, ...]:
    """`compile_condition` of each, in order."""
    return tuple(compile_condition(c) for c in conditions)


NEVER: Predicate = _never


# -- write-time checks ---------------------------------------------------------


def _value_problem(op: str, value: object) -> str | None:
    if op in SET_OPS:
        if type(value) is bool or _is_number(value) or is_text(value):
            if type(value) is float and math.isinf(value):
                return "a finite number"
            return None
        return f"a str of at most {MAX_TEXT_CHARS} chars, a number or a bool"
    if op in NUMBER_OPS:
        ok = _is_number(value) and math.isfinite(value)  # type: ignore[arg-type]
        return None if ok else "a finite number (not a bool)"
    if op in SEMVER_OPS:
        ok = type(value) is str and semver_key(value) is not None
        return None if ok else "a SemVer 2.0.0 version, such as 1.2.3-rc.1"
    if op in STRING_OPS:
        return None if is_text(value) else f"a str of at most {MAX_TEXT_CHARS} chars"
    ok = instant(value) is not None
    return None if ok else "an RFC 3339 date-time or date, or a number of Unix seconds"


def _fields(value: object, at: str, what: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FlagFormatError(at, f"{what} is an object, not {_short(value)}")
    for key in value:
        if key not in allowed:
            raise FlagFormatError(
                at + pointer_part(key), f"{what} has no field {_short(key)} (fields: {allowed})"
            )
    return value


def _list(value: object, at: str, what: str, most: int) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise FlagFormatError(at, f"{what} is a list, not {_short(value)}")
    if len(value) > most:
        raise FlagFormatError(at, f"at most {most} {what}, not {len(value)}")
    return list(value)


def check_condition(condition: object, at: str = "") -> dict[str, Any]:
    """Check one condition, as a writer would.

    Args:
        condition: ``{"attribute": str, "op": str, "values": [...]}``.
        at: the JSON pointer of ``condition`` in the document checked.

    Returns:
        The condition as a plain dict, ``values`` as a list.

    Raises:
        FlagFormatError: the first bad field, with its RFC 6901 pointer.
    """
    fields = _fields(condition, at, "a condition", ("attribute", "op", "values"))
    for field in ("attribute", "op", "values"):
        if field not in fields:
            raise FlagFormatError(at + "/" + field, f"a condition needs {field!r}")
    attribute, op = fields["attribute"], fields["op"]
    if not is_text(attribute, MAX_NAME_CHARS) or not attribute:
        raise FlagFormatError(
            at + "/attribute", f"a non-empty str of at most {MAX_NAME_CHARS} chars"
        )
    if op not in OPS:
        raise FlagFormatError(at + "/op", f"one of {', '.join(OPS)}, not {_short(op)}")
    values = _list(fields["values"], at + "/values", "values", MAX_VALUES)
    if not values:
        raise FlagFormatError(at + "/values", "at least one value")
    for index, value in enumerate(values):
        problem = _value_problem(op, value)
        if problem is not None:
            raise FlagFormatError(
                f"{at}/values/{index}", f"{op} takes {problem}, not {_short(value)}"
            )
    return {"attribute": attribute, "op": op, "values": values}


def _check_conditions(value: object, at: str) -> list[dict[str, Any]]:
    conditions = _list(value, at, "conditions", MAX_CONDITIONS)
    return [check_condition(c, f"{at}/{i}") for i, c in enumerate(conditions)]


def check_serve(serve: object, at: str = "") -> dict[str, Any]:
    """Check what a rule or the fallthrough serves: ``{"variant": name}`` or
    ``{"split": {name: weight}}`` (weights integers in [0, `MAX_WEIGHT`], at least
    one positive, at most `MAX_SPLIT_VARIANTS` variants).

    Returns:
        The serve as a plain dict.

    Raises:
        FlagFormatError: the first bad field, with its RFC 6901 pointer.
    """
    fields = _fields(serve, at, "a serve", ("variant", "split"))
    if len(fields) != 1:
        raise FlagFormatError(at, 'a serve is {"variant": name} or {"split": {name: weight}}')
    if "variant" in fields:
        if not valid_name(fields["variant"]):
            raise FlagFormatError(
                at + "/variant", f"not a variant name: {_short(fields['variant'])}"
            )
        return {"variant": fields["variant"]}
    split = fields["split"]
    if not isinstance(split, Mapping) or not split:
        raise FlagFormatError(at + "/split", "a split is a non-empty object of {variant: weight}")
    if len(split) > MAX_SPLIT_VARIANTS:
        raise FlagFormatError(at + "/split", f"at most {MAX_SPLIT_VARIANTS} variants")
    for name, weight in split.items():
        where = at + "/split" + pointer_part(name)
        if not valid_name(name):
            raise FlagFormatError(where, f"not a variant name: {_short(name)}")
        if type(weight) is not int or not 0 <= weight <= MAX_WEIGHT:
            raise FlagFormatError(where, f"a weight is an int in [0, {MAX_WEIGHT}]")
    if not any(split.values()):
        raise FlagFormatError(at + "/split", "a split needs a variant of positive weight")
    return {"split": dict(split)}


def check_rule(rule: object) -> dict[str, Any]:
    """Check a rule, ``(flag, "rule", rule_id) -> rule``, as a writer would.

    Args:
        rule: ``{"position": str, "conditions": [condition, ...], "segments":
            [name, ...], "serve": serve}``; ``conditions`` (at most
            `MAX_CONDITIONS`) and ``segments`` (at most `MAX_SEGMENTS`) may be left
            out (empty); see `check_condition` and `check_serve`.

    Returns:
        The rule as a plain dict with every field.

    Raises:
        FlagFormatError: the first bad field, with its RFC 6901 pointer relative to
            the rule (``"/conditions/2/values/0"``).
    """
    fields = _fields(rule, "", "a rule", ("position", "conditions", "segments", "serve"))
    if not valid_position(fields.get("position")):
        raise FlagFormatError(
            "/position", "a position: base-62 digits, not ending in 0 (see position_between)"
        )
    conditions = _check_conditions(fields.get("conditions", []), "/conditions")
    segments = _list(fields.get("segments", []), "/segments", "segments", MAX_SEGMENTS)
    for index, name in enumerate(segments):
        if not valid_name(name):
            raise FlagFormatError(f"/segments/{index}", f"not a segment name: {_short(name)}")
    if "serve" not in fields:
        raise FlagFormatError("/serve", "a rule needs 'serve'")
    return {
        "position": fields["position"],
        "conditions": conditions,
        "segments": segments,
        "serve": check_serve(fields["serve"], "/serve"),
    }


def check_segment(segment: object) -> dict[str, Any]:
    """Check a segment, ``("", "segment", name) -> {"conditions": [...]}``.

    Raises:
        FlagFormatError: the first bad field, with its RFC 6901 pointer.
    """
    fields = _fields(segment, "", "a segment", ("conditions",))
    return {"conditions": _check_conditions(fields.get("conditions", []), "/conditions")}
