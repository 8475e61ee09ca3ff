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
from typing import Any

from .._schema import FlagFormatError
from .._text import conditions as conditions
from .._text import names as names
from .._text import number as _number
from .._text import serve as serve

#: The longest text field of these forms, in characters (the form body is bounded too).
MAX_FIELD_CHARS = 20_000


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
