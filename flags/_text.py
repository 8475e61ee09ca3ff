"""Conditions and serves as one line of text, both ways: what the web UI's forms and
the ``chorus flags`` command line read, and what they show.

Pure: no request, no store. Every reader raises `flags.FlagFormatError` with the
pointer of the field given (relative to the flag, as the store's writers raise),
so that a parse error and a store error read alike.

- a serve: ``green`` (a variant) or ``green=50, blue=50`` (a split by weights);
- a condition: ``attribute op value1, value2`` (``country in fr, de``, ``version
  semver_gte 2.0.0``). A value that reads as a JSON number is a number, ``true``
  and ``false`` are bools, anything else a str; a str holding a comma or a quote,
  or one that would read as a number, is written as a JSON string (``"1.0"``). An
  attribute with blanks is written as a JSON string too;
- names (segments, variants): comma-separated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from ._schema import FlagFormatError, pointer_part

#: A JSON number, as a whole string.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: Characters that make a value need quotes in the one-line forms.
_NEEDS_QUOTES = re.compile(r'[,"]|^\s|\s$|^$')


_DECODER = json.JSONDecoder()


def number(text: str) -> int | float | None:
    """``text`` as a number when it reads as a JSON number (and converts), else None."""
    if not _JSON_NUMBER.fullmatch(text):
        return None
    try:
        value = json.loads(text)
    except ValueError:  # an int of over 4,300 digits
        return None
    return value if isinstance(value, int | float) else None


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
        amount = number(weight.rstrip("%").strip())
        if type(amount) is not int:
            raise FlagFormatError(
                at, f"the weight of {variant!r} is a whole number, not {weight!r}"
            )
        split[variant] = amount
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
            read = number(word)
            value = read if read is not None else {"true": True, "false": False}.get(word, word)
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


def json_text(value: Any, *, pretty: bool = False) -> str:
    """``value`` as JSON text (sorted keys, non-ASCII kept), indented when ``pretty``;
    whatever JSON cannot carry is shown by its repr."""
    try:
        return json.dumps(
            value,
            indent=2 if pretty else None,
            sort_keys=True,
            ensure_ascii=False,
            default=repr,
            allow_nan=True,
        )
    except (TypeError, ValueError, RecursionError):  # keys of mixed types, say
        return repr(value)


def value_token(value: Any) -> str:
    """One value of a condition as the form writes it: a str plain unless it would read
    as something else (a number, true, false, null) or holds a comma or quote, then
    as a JSON string; anything else as JSON."""
    if isinstance(value, str):
        plain = not (
            _NEEDS_QUOTES.search(value)
            or _JSON_NUMBER.fullmatch(value)
            or value in ("true", "false", "null")
        )
        return value if plain else json_text(value)
    return json_text(value)


def attribute_token(attribute: str) -> str:
    """A condition's attribute as the form writes it: plain unless it holds blanks or
    starts with a quote, then as a JSON string."""
    if not attribute or attribute.startswith('"') or any(c.isspace() for c in attribute):
        return json_text(attribute)
    return attribute


def condition_text(condition: Mapping[str, Any]) -> str:
    """A condition in the form's words: ``"country in fr, de"``, ``"version
    semver_gte 2.0.0"``."""
    values = condition.get("values")
    values = values if isinstance(values, list | tuple) else [values]
    return " ".join(
        (
            attribute_token(str(condition.get("attribute", ""))),
            str(condition.get("op", "")),
            ", ".join(value_token(v) for v in values),
        )
    )


def _weight_percent(weight: int, total: int) -> str:
    return f"{round(100 * weight / total, 2):g}%" if total else "0%"


def serve_text(serve: Mapping[str, Any] | None) -> str:
    """What a rule or the fallthrough serves: the variant, or a split with each arm's
    share of the weights (``"green 50% · blue 50%"``); ``"nothing"`` for None."""
    if not isinstance(serve, Mapping):
        return "nothing"
    if "variant" in serve:
        return str(serve["variant"])
    split = serve.get("split")
    if not isinstance(split, Mapping):
        return json_text(serve)
    weights = {str(v): w if type(w) is int and w >= 0 else 0 for v, w in split.items()}
    total = sum(weights.values())
    return " · ".join(f"{v} {_weight_percent(w, total)}" for v, w in weights.items())


def serve_form_text(serve: Mapping[str, Any] | None) -> str:
    """A serve as the forms take it: ``"green"`` or ``"green=50, blue=50"``."""
    if not isinstance(serve, Mapping):
        return ""
    if "variant" in serve:
        return str(serve["variant"])
    split = serve.get("split")
    if isinstance(split, Mapping):
        return ", ".join(f"{v}={w}" for v, w in split.items())
    return ""
