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
the cluster's). An export may also hold ``"skipped"``: the entries it left out, under
names outside the grammar that no writer takes back (import ignores the list). On
import every field but ``name`` may be left out: it then means unset (no such gate,
no such metadata). Unknown fields, unknown versions and duplicate names are
refused, never skipped: a typo must not drop a gate silently.

Pure: no map, no I/O; the caller reads the clock and the files.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ._schema import (
    META_FIELDS,
    Flag,
    FlagFormatError,
    _short,
    check_flag,
    pointer_part,
)

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
_DOCUMENT_FIELDS = frozenset({"format", "version", "exported_at", "node", "flags", "skipped"})


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


def flag_to_json(flag: Flag) -> dict[str, Any]:
    """One flag as a document holds it (`FLAG_FIELDS`; gates sorted by id)."""
    document: dict[str, Any] = {field: getattr(flag, field) for field in FLAG_FIELDS}
    document["actors"] = dict(sorted(flag.actors.items()))
    document["groups"] = dict(sorted(flag.groups.items()))
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
    unknown = sorted(str(k) for k in value.keys() - set(FLAG_FIELDS))
    if unknown:
        raise FlagFormatError(
            at + pointer_part(unknown[0]),
            f"unknown field (a flag has {', '.join(FLAG_FIELDS)})",
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
    flags: list[Flag] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        flag = flag_from_json(item, f"/flags/{index}")
        if flag.name in seen:
            raise FlagFormatError(f"/flags/{index}/name", f"{flag.name} is in the file twice")
        seen.add(flag.name)
        flags.append(flag)
    return flags


def export_document(
    flags: Iterable[Flag],
    *,
    node: str,
    exported_at: datetime.datetime,
    skipped: Sequence[str] = (),
) -> dict[str, Any]:
    """The document of ``flags`` (sorted by name), exported by ``node`` at
    ``exported_at`` (an aware datetime, written as ISO 8601). ``skipped`` names the
    entries left out (see `FlagStore.unexportable`); import ignores that list."""
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": exported_at.isoformat(),
        "node": node,
        "flags": [flag_to_json(f) for f in sorted(flags, key=lambda f: f.name)],
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
    # Imported here: flags._entries imports this module's neighbours, not this one,
    # but keeping the import local keeps the module's own imports to the schema.
    from ._entries import flag_entries

    name = wanted.name
    old, new = flag_entries(current), flag_entries(wanted)
    if current.type != "boolean" and wanted.type == "boolean":
        new[(name, "type")] = "boolean"  # no entry means boolean, but one is held
    sets: dict[tuple[str, ...], Any] = {}
    deletes: list[tuple[str, ...]] = []
    changes: list[str] = []
    for key in sorted(old.keys() | new.keys(), key=_plan_order):
        what = _entry_label(key)
        if key not in new:
            deletes.append(key)
            changes.append(f"{what}: cleared")
        elif key not in old or not _same(old[key], new[key]):
            sets[key] = new[key]
            changes.append(f"{what}: {_entry_shown(key, new[key])}")
    return ImportPlan(name=name, sets=sets, deletes=deletes, changes=changes)


#: The order of a plan's lines, by kind: gates, metadata, then the typed parts.
_KIND_ORDER = {
    kind: index
    for index, kind in enumerate(
        (
            "boolean",
            "actor",
            "group",
            "percentage_of_actors",
            "percentage_of_time",
            "meta",
            "type",
            "variant",
            "off_variant",
            "fallthrough",
            "rule",
            "prereq",
            "schedule",
        )
    )
}


def _plan_order(key: tuple[Any, ...]) -> tuple[int, str]:
    part = key[2] if len(key) > 2 else ""
    if key[1] == "meta":
        part = str(META_FIELDS.index(key[2]))
    return _KIND_ORDER.get(key[1], len(_KIND_ORDER)), part


def _entry_label(key: tuple[Any, ...]) -> str:
    kind = key[1]
    if kind == "meta":
        return str(key[2])
    if kind == "prereq":
        return f"prerequisite {key[2]}"
    return f"{kind} {key[2]}" if len(key) > 2 else kind


def _entry_shown(key: tuple[Any, ...], value: Any) -> str:
    kind = key[1]
    if kind in ("boolean", "actor", "group"):
        return _on(bool(value))
    if kind in ("percentage_of_actors", "percentage_of_time"):
        return f"{value}"
    return _short(value)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type, all the way down (True is not 1, 1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check_unique(flags: Sequence[Flag]) -> None:
    """Raise `FlagFormatError` at the second flag of a name seen before."""
    seen: set[str] = set()
    for index, flag in enumerate(flags):
        if flag.name in seen:
            raise FlagFormatError(f"/{index}/name", f"{flag.name} is given twice")
        seen.add(flag.name)
