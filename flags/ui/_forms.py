"""The typed-flag forms' fields, read into what the store's writers take.

Pure: no request, no store. Every reader raises `flags.FlagFormatError` with the
pointer of the field (as the store's writers would: relative to the flag), so that
the page shows a parse error and a store error alike, next to the form.

The one-line forms, as `flags.ui._views` writes them back:

- a serve: ``green`` (a variant) or ``green=50, blue=50`` (a split by weights);
- a condition: ``attribute op value1, value2``, one a line (``country in fr, de``,
  ``version semver_gte 2.0.0``). A value that reads as a JSON number is a number,
  ``true`` and ``false`` are bools, anything else a str; a str holding a comma or
  a quote, or one that would read as a number, is written as a JSON string
  (``"1.0"``). An attribute with blanks is written as a JSON string too;
- names (segments, variants): comma-separated;
- evaluation attributes: ``key=value``, one a line; a value that reads as a JSON
  number is a number, anything else a str.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .._schema import FlagFormatError, pointer_part

#: The longest text field of these forms, in characters (the form body is bounded too).
MAX_FIELD_CHARS = 20_000
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_DECODER = json.JSONDecoder()


def _number(text: str) -> int | float | None:
    """``text`` as a number when it reads as a JSON number (and converts), else None."""
    if not _JSON_NUMBER.fullmatch(text):
        return None
    try:
        value = json.loads(text)
    except ValueError:  # an int of over 4,300 digits
        return None
    return value if isinstance(value, int | float) else None


def json_value(text: str, pointer: str) -> Any:
    """A JSON value typed in a field.

    Raises:
        FlagFormatError: at ``pointer``, when it is not JSON.
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        hint = ' (a string is written in double quotes: "green")' if text.strip() else ""
        raise FlagFormatError(pointer, f"not JSON: {str(exc)[:120]}{hint}") from None


def names(text: str) -> list[str]:
    """Comma-separated names, blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def serve(text: str, pointer: str) -> dict[str, Any] | None:
    """``green`` or ``green=50, blue=50`` as a serve; None for an empty field.

    Raises:
        FlagFormatError: a weight that is no whole number, at ``pointer/split/<v>``.
    """
    text = text.strip()
    if not text:
        return None
    if "=" not in text:
        return {"variant": text}
    split: dict[str, Any] = {}
    for part in names(text):
        variant, _, weight = (p.strip() for p in part.partition("="))
        at = f"{pointer}/split{pointer_part(variant)}"
        number = _number(weight.rstrip("%").strip())
        if type(number) is not int:
            raise FlagFormatError(
                at, f"the weight of {variant!r} is a whole number, not {weight!r}"
            )
        split[variant] = number
    return {"split": split}


def _token(line: str, at: int) -> tuple[str, int, bool]:
    """The word or JSON string of ``line`` from ``at`` (blanks skipped): ``(text,
    where it ends, whether it was quoted)``."""
    while at < len(line) and line[at].isspace():
        at += 1
    if line.startswith('"', at):
        value, end = _DECODER.raw_decode(line, at)
        return str(value), end, True
    end = at
    while end < len(line) and not line[end].isspace():
        end += 1
    return line[at:end], end, False


def _values(text: str) -> list[Any]:
    """The comma-separated values of a condition line."""
    found: list[Any] = []
    at = 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if text.startswith('"', at):
            value, at = _DECODER.raw_decode(text, at)
            if not isinstance(value, str):
                raise ValueError("a quoted value must be a JSON string")
            while at < len(text) and text[at].isspace():
                at += 1
            if at < len(text) and text[at] != ",":
                raise ValueError(f"a comma is missing after {json.dumps(value)[:40]}")
        else:
            end = text.find(",", at)
            end = len(text) if end == -1 else end
            word = text[at:end].strip()
            if not word:
                raise ValueError("an empty value (two commas, or a comma at the end)")
            number = _number(word)
            value = number if number is not None else {"true": True, "false": False}.get(word, word)
            at = end
        found.append(value)
        if at >= len(text):
            return found
        at += 1  # the comma


def conditions(text: str, pointer: str) -> list[dict[str, Any]]:
    """Conditions, one a line as ``attribute op value1, value2``; blank lines skipped.

    Raises:
        FlagFormatError: a line that does not read so, at ``pointer/<index>``.
    """
    found = []
    lines = [line for line in text.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        at = f"{pointer}/{index}"
        try:
            attribute, end, _ = _token(line, 0)
            op, end, quoted = _token(line, end)
            rest = line[end:].strip()
            if not attribute or not op or quoted:
                raise ValueError("write it as: attribute op value1, value2")
            if not rest:
                raise ValueError("no value after the operator")
            values = _values(rest)
        except ValueError as exc:  # json.JSONDecodeError too
            raise FlagFormatError(at, f"line {index + 1} ({line.strip()[:80]!r}): {exc}") from None
        found.append({"attribute": attribute, "op": op, "values": values})
    return found


def attributes(text: str) -> tuple[dict[str, Any], str | None]:
    """The evaluate form's ``key=value`` lines: ``({key: value}, None)``, or what the
    first bad line is as the second item. A value that reads as a JSON number is a
    number."""
    found: dict[str, Any] = {}
    for index, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not key:
            return found, f"Attributes line {index + 1} is not key=value: {line.strip()[:80]!r}"
        number = _number(value)
        found[key] = number if number is not None else value
    return found, None
