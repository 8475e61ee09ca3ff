"""Export and import: every flag's gates and metadata as one JSON document.

A cluster keeps its flags in memory only; when every node stops at once, they are
gone. ``chorus flags export`` writes them to a file, ``chorus flags import`` writes a
file back into a running cluster, and ``chorus serve --defaults`` reads one as the
defaults a node answers with while the cluster holds no gate for a flag. The document:

.. code-block:: json

    {"format": "chorus-flags", "version": 1,
     "exported_at": "2026-11-30T08:00:00+00:00", "node": "a",
     "flags": [{"name": "new-checkout", "boolean": null,
                "actors": {"user-1": true}, "groups": {"beta": true},
                "percentage_of_actors": 0.25, "percentage_of_time": null,
                "description": "the new checkout", "owner": "team-payments",
                "expires": "2027-01-31"}]}

A flag's fields are those of `flags.Flag` but ``default`` (a node's own setting, never
the cluster's). The fields of typed flags (`TYPED_FIELDS`: ``type``, ``variants``,
``off_variant``, ``fallthrough``, ``rules`` as ``{rule_id: rule}`` with each rule's
``position``, ``prerequisites``, ``schedules``) are written only for a flag that has
them, and each only when set, so an export of boolean flags is what it was before
typed flags, and older versions still read it. A document holds ``"segments":
{name: [condition, ...]}`` when the cluster has any (an older version refuses such a
document, as it refuses any field it does not know). An export may also hold
``"skipped"``: the entries it left out, under names outside the grammar that no
writer takes back (import ignores the list). On import every field but ``name`` may
be left out: it then means unset (no such gate, no such metadata, no such typed
part). Unknown fields, unknown versions and duplicate names are refused, never
skipped: a typo must not drop a gate silently.

Pure: no map, no I/O; the caller reads the clock and the files.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._entries import flag_entries
from ._schema import (
    META_FIELDS,
    TYPED_FIELDS,
    Flag,
    FlagFormatError,
    _short,
    check_flag,
    pointer_part,
    valid_name,
)
from ._targeting import check_segment

#: The value of a document's ``"format"``.
EXPORT_FORMAT = "chorus-flags"
#: The document version this code writes and reads.
EXPORT_VERSION = 1
#: A flag's fields in a document, in the order they are written.
FLAG_FIELDS = (
    "name",
    "boolean",
    "actors",
    "groups",
    "percentage_of_actors",
    "percentage_of_time",
    *META_FIELDS,
)
_DOCUMENT_FIELDS = frozenset(
    {"format", "version", "exported_at", "node", "flags", "segments", "skipped"}
)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} is in one object twice")
        found[key] = value
    return found


def loads(text: str | bytes) -> Any:
    """Parse JSON as an export or an HTTP body is read: like `json.loads`, but a key
    given twice in one object is refused (``json.loads`` keeps the last silently).

    Raises:
        ValueError: not JSON, a key twice, or a number over Python's digit limit;
            the message says which. Also for nesting deeper than Python's
            recursion limit (a `RecursionError` becomes a ValueError).
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("nested too deeply") from None


#: A rule's fields in the order documents show them.
RULE_FIELDS = ("position", "conditions", "segments", "serve")
_CONDITION_FIELDS = ("attribute", "op", "values")


def in_order(value: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """``value`` with ``fields`` first, in that order (the map keeps no order of its
    own), and its ``"conditions"``, if any, each as ``attribute``, ``op``, ``values``."""
    ordered = {field: value[field] for field in fields if field in value}
    ordered.update((k, v) for k, v in value.items() if k not in ordered)
    if isinstance(ordered.get("conditions"), list):
        ordered["conditions"] = conditions_in_order(ordered["conditions"])
    return ordered


def conditions_in_order(conditions: Sequence[Any]) -> list[Any]:
    """Each condition (a dict) as ``attribute``, ``op``, ``values``."""
    return [in_order(c, _CONDITION_FIELDS) if isinstance(c, Mapping) else c for c in conditions]


def flag_to_json(flag: Flag) -> dict[str, Any]:
    """One flag as a document holds it (`FLAG_FIELDS`; gates sorted by id)."""
    document: dict[str, Any] = {field: getattr(flag, field) for field in FLAG_FIELDS}
    document["actors"] = dict(sorted(flag.actors.items()))
    document["groups"] = dict(sorted(flag.groups.items()))
    if not flag.typed:
        return document
    document["type"] = flag.type
    for field in TYPED_FIELDS[1:]:
        value = getattr(flag, field)
        if value:  # set: not None, not empty
            document[field] = dict(sorted(value.items())) if isinstance(value, Mapping) else value
    if "rules" in document:
        document["rules"] = {k: in_order(v, RULE_FIELDS) for k, v in document["rules"].items()}
    return document


def flag_from_json(value: object, at: str = "") -> Flag:
    """Read one flag of a document, checked as every writer checks it.

    Args:
        value: the parsed JSON of one flag.
        at: the flag's JSON pointer in its document, to prefix errors with.

    Returns:
        The flag, in the canonical form of `check_flag`.

    Raises:
        FlagFormatError: not an object, an unknown field, no ``name``, or a bad
            value; ``pointer`` says where.
    """
    if not isinstance(value, dict):
        raise FlagFormatError(at, f"a flag is an object, not {_short(value)}")
    unknown = sorted(str(k) for k in value.keys() - {*FLAG_FIELDS, *TYPED_FIELDS})
    if unknown:
        raise FlagFormatError(
            at + pointer_part(unknown[0]),
            f"unknown field (a flag has {', '.join((*FLAG_FIELDS, *TYPED_FIELDS))})",
        )
    if "name" not in value:
        raise FlagFormatError(at + "/name", "missing: every flag has a name")
    fields = {k: v for k, v in value.items() if v is not None}
    try:
        return check_flag(Flag(**fields))
    except FlagFormatError as exc:
        raise FlagFormatError(at + exc.pointer, exc.message) from None


def parse_export(document: object) -> list[Flag]:
    """Read a whole document (as `export_document` writes it).

    Returns:
        Its flags, in the document's order.

    Raises:
        FlagFormatError: not a document of this format, a version other than
            `EXPORT_VERSION`, an unknown top-level field, a bad flag, or a name
            twice; ``pointer`` says where. Nothing is returned for a document
            with any error.
    """
    if not isinstance(document, dict):
        raise FlagFormatError("", f"an export is a JSON object, not {_short(document)}")
    if document.get("format") != EXPORT_FORMAT:
        raise FlagFormatError(
            "/format", f"not a chorus export: format is {_short(document.get('format'))}"
        )
    version = document.get("version")
    if type(version) is not int or version != EXPORT_VERSION:
        raise FlagFormatError(
            "/version",
            f"version {_short(version)}: this chorus reads version {EXPORT_VERSION} only",
        )
    unknown = sorted(str(k) for k in document.keys() - _DOCUMENT_FIELDS)
    if unknown:
        raise FlagFormatError(pointer_part(unknown[0]), "unknown field")
    items = document.get("flags")
    if not isinstance(items, list):
        raise FlagFormatError("/flags", f"a list of flags, not {_short(items)}")
    parse_segments(document)
    flags: list[Flag] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        flag = flag_from_json(item, f"/flags/{index}")
        if flag.name in seen:
            raise FlagFormatError(f"/flags/{index}/name", f"{flag.name} is in the file twice")
        seen.add(flag.name)
        flags.append(flag)
    return flags


def parse_segments(document: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The ``"segments"`` of a document: ``{name: [condition, ...]}``, each checked as
    `FlagStore.set_segment` checks it; ``{}`` when the document has none.

    Raises:
        FlagFormatError: not an object, a bad segment name, or a bad condition;
            ``pointer`` says where (``/segments/beta/0/op``).
    """
    segments = document.get("segments", {})
    if not isinstance(segments, dict):
        raise FlagFormatError(
            "/segments", f"an object of {{name: [condition, ...]}}, not {_short(segments)}"
        )
    checked = {}
    for name, conditions in segments.items():
        at = "/segments" + pointer_part(name)
        if not valid_name(name):
            raise FlagFormatError(at, f"not a segment name: {_short(name)}")
        if not isinstance(conditions, list):
            raise FlagFormatError(at, f"a list of conditions, not {_short(conditions)}")
        try:
            checked[name] = check_segment({"conditions": conditions})["conditions"]
        except FlagFormatError as exc:  # its pointer is /conditions/...
            raise FlagFormatError(
                at + exc.pointer.removeprefix("/conditions"), exc.message
            ) from None
    return checked


def export_document(
    flags: Iterable[Flag],
    *,
    node: str,
    exported_at: datetime.datetime,
    skipped: Sequence[str] = (),
    segments: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """The document of ``flags`` (sorted by name), exported by ``node`` at
    ``exported_at`` (an aware datetime, written as ISO 8601). ``skipped`` names the
    entries left out (see `FlagStore.unexportable`); import ignores that list.
    ``segments`` (``{name: [condition, ...]}``, as `FlagStore.segments` gives them)
    are written, sorted by name, when there are any."""
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": exported_at.isoformat(),
        "node": node,
        "flags": [flag_to_json(f) for f in sorted(flags, key=lambda f: f.name)],
    }
    if segments:
        document["segments"] = {
            name: conditions_in_order(segments[name]) for name in sorted(segments)
        }
    if skipped:
        document["skipped"] = list(skipped)
    return document


@attrs.frozen
class ImportPlan:
    """What importing one flag changes: the map entries to set and to delete, and
    one line per change for people (empty when the cluster already matches)."""

    name: str
    sets: dict[tuple[str, ...], Any]
    deletes: list[tuple[str, ...]]
    changes: list[str]


def _on(enabled: bool) -> str:
    return "on" if enabled else "deny"


def plan_import(current: Flag, wanted: Flag) -> ImportPlan:
    """The changes that make ``current`` (the cluster's flag) equal ``wanted``: every
    gate, metadata field and typed part of ``wanted`` set, every other one removed.
    Only what differs is in the plan, so importing the same flag twice changes
    nothing the second time.

    Args:
        current: the flag as the store describes it now.
        wanted: the flag as imported, checked (`check_flag`).
    """
    name = wanted.name
    sets: dict[tuple[str, ...], Any] = {}
    deletes: list[tuple[str, ...]] = []
    changes: list[str] = []

    def one(key: tuple[str, ...], what: str, old: Any, new: Any, shown: str) -> None:
        if new is None:
            if old is not None:
                deletes.append(key)
                changes.append(f"{what}: cleared")
        elif old != new or type(old) is not type(new):
            sets[key] = new
            changes.append(f"{what}: {shown}")

    one((name, "boolean"), "boolean", current.boolean, wanted.boolean, _on(bool(wanted.boolean)))
    for kind, now, then in (
        ("actor", current.actors, wanted.actors),
        ("group", current.groups, wanted.groups),
    ):
        for target in sorted(now.keys() | then.keys()):
            new = then.get(target)
            one((name, kind, target), f"{kind} {target}", now.get(target), new, _on(bool(new)))
    for field in ("percentage_of_actors", "percentage_of_time"):
        new = getattr(wanted, field)
        one((name, field), field, getattr(current, field), new, f"{new}")
    for field in META_FIELDS:
        new = getattr(wanted, field)
        one((name, "meta", field), field, getattr(current, field), new, _short(new))
    if not (current.typed or wanted.typed):  # no typed part to diff: skip the work
        return ImportPlan(name=name, sets=sets, deletes=deletes, changes=changes)
    # The typed parts, entry by entry, as the store keeps them (flags._entries).
    held = {k: v for k, v in flag_entries(current).items() if k[1] in _TYPED_KINDS}
    given = {k: v for k, v in flag_entries(wanted).items() if k[1] in _TYPED_KINDS}
    for entry in sorted(held.keys() | given.keys(), key=lambda k: (_TYPED_KINDS.index(k[1]), k)):
        value = given.get(entry)
        what = " ".join((_TYPED_NAMES[entry[1]], *entry[2:]))
        one(entry, what, held.get(entry), value, _shown(entry[1], value))
    return ImportPlan(name=name, sets=sets, deletes=deletes, changes=changes)


#: The kinds of entry of typed flags, in the order a plan lists them, and their names
#: in a plan's lines.
_TYPED_KINDS = ("type", "variant", "off_variant", "fallthrough", "rule", "prereq", "schedule")
_TYPED_NAMES = {
    "type": "type",
    "variant": "variant",
    "off_variant": "off_variant",
    "fallthrough": "fallthrough",
    "rule": "rule",
    "prereq": "prerequisite",
    "schedule": "schedule",
}


def _serve_text(serve: Mapping[str, Any]) -> str:
    if "variant" in serve:
        return str(serve["variant"])
    split = serve.get("split", {})
    return "split " + ", ".join(f"{v} {w}" for v, w in sorted(split.items()))


def _shown(kind: str, value: Any) -> str:
    """How a plan's line shows a typed entry's new value (None: removed)."""
    if value is None:
        return ""
    if kind == "fallthrough":
        return _serve_text(value)
    if kind == "rule":
        conditions = len(value.get("conditions", []))
        segments = len(value.get("segments", []))
        return f"{conditions} conditions, {segments} segments, serves {_serve_text(value['serve'])}"
    if kind == "prereq":
        return ", ".join(value["variants"])
    if kind == "schedule":
        writes = len(value.get("set", [])) + len(value.get("delete", []))
        try:
            at = datetime.datetime.fromtimestamp(value["at_ms"] / 1000, datetime.UTC)
        except (ValueError, OverflowError, OSError):  # past the year 9999
            return f"at {value['at_ms']} ms, {writes} writes"
        return f"at {at.isoformat().replace('+00:00', 'Z')}, {writes} writes"
    if kind == "variant":
        return _short(value)
    return str(value)


def segment_plan(
    current: Mapping[str, Sequence[Mapping[str, Any]]],
    wanted: Mapping[str, list[dict[str, Any]]],
) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """The segments an import writes: of ``wanted`` (`parse_segments`), those whose
    conditions differ from ``current``'s (`FlagStore.segments`), as ``{name:
    (conditions, line)}``, the line for people (``"segment beta: 2 conditions"``).
    Segments not in ``wanted`` are not touched; the same import again plans none."""
    plan = {}
    for name, conditions in wanted.items():
        if [dict(c) for c in current.get(name, [])] != conditions or name not in current:
            plan[name] = (conditions, f"segment {name}: {len(conditions)} conditions")
    return plan


def check_unique(flags: Sequence[Flag]) -> None:
    """Raise `FlagFormatError` at the second flag of a name seen before."""
    seen: set[str] = set()
    for index, flag in enumerate(flags):
        if flag.name in seen:
            raise FlagFormatError(f"/{index}/name", f"{flag.name} is given twice")
        seen.add(flag.name)
