"""One line per event, ``key=value`` (logfmt) or JSON, for people and log shippers alike.

chorus logs through the standard library (``logging.getLogger("chorus.node")``);
`configure` puts structlog's `~structlog.stdlib.ProcessorFormatter` on the root
handler, so every record, hypercorn's included, goes through the same processors:

* `_fields` builds the event: ``ts`` (UTC, milliseconds), ``level``, ``logger``,
  ``msg``, and ``error`` when the record carries an exception.
* `_truncate` cuts every value to `MAX_VALUE_CHARS` characters and says how many it
  cut: ``msg="xxxx...[9000 chars cut]"``. ``error`` holds the whole traceback and
  keeps its *end* (the innermost frames and the exception line):
  ``error="[2345 chars cut]...ValueError: bad"``.
* ``keyvalue``: `_logfmt_values` escapes each value and quotes it where needed, then
  structlog's `~structlog.processors.KeyValueRenderer` joins them. structlog's own
  `~structlog.processors.LogfmtRenderer` is not enough on its own: it escapes
  ``\\n`` but leaves carriage returns, other control characters and Unicode line
  separators raw, and escapes backslashes only inside quotes, so two different
  values can render alike (tests/flags/test_logging.py checks this).
* ``json``: structlog's `~structlog.processors.JSONRenderer` (``json.dumps``, ASCII
  only), one object per line.

Escaping: backslash and double quote are backslash-escaped; newline, carriage return
and tab become ``\\n``, ``\\r``, ``\\t``; every other control or format character,
line or paragraph separator and lone surrogate becomes ``\\xNN``, ``\\uNNNN`` or
``\\UNNNNNNNN``. So no value can end the line or forge a field such as
``level=ERROR``.
"""

from __future__ import annotations

import datetime
import logging
import re
import traceback
import unicodedata
from typing import Any

import structlog

FORMATS = ("keyvalue", "json")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_VALUE_CHARS = 1000
KEYS = ("ts", "level", "logger", "msg", "error")

_ALWAYS_QUOTED = frozenset({"msg", "error"})
_SHORT = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_SPECIAL = re.compile(r'[\\"]|[^\x20-\x7e]')
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_BARE = re.compile(r"[A-Za-z0-9_.:/@+-]+")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char  # printable non-ASCII text stays readable
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(value: str) -> str:
    """*value* with no character that could end a line or break its quoting."""
    return _SPECIAL.sub(_escape_char, value)


def truncate(value: str, limit: int = MAX_VALUE_CHARS, *, keep_end: bool = False) -> str:
    """*value* cut to *limit* characters, plus a marker saying how many were cut."""
    if len(value) <= limit:
        return value
    cut = len(value) - limit
    if keep_end:
        return f"[{cut} chars cut]..." + value[-limit:]
    return value[:limit] + f"...[{cut} chars cut]"


def _fields(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    record: logging.LogRecord = event["_record"]
    ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    fields: dict[str, Any] = {
        "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname,
        "logger": record.name,
        "msg": str(event.get("event", "")),
    }
    exc_info = event.get("exc_info")
    if exc_info:
        fields["error"] = "".join(traceback.format_exception(*exc_info)).rstrip("\n")
    return fields


def _truncate(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    return {key: truncate(str(value), keep_end=key == "error") for key, value in event.items()}


def _logfmt_values(
    _: Any, __: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    rendered = {}
    for key, value in event.items():
        text = escape(str(value))
        if key in _ALWAYS_QUOTED or not _BARE.fullmatch(text):
            text = f'"{text}"'
        rendered[key] = text
    return rendered


def formatter(log_format: str = "keyvalue") -> logging.Formatter:
    """The `logging.Formatter` for *log_format*: ``keyvalue`` or ``json``."""
    renderer: list[structlog.typing.Processor]
    if log_format == "keyvalue":
        renderer = [
            _logfmt_values,
            structlog.processors.KeyValueRenderer(
                key_order=list(KEYS), drop_missing=True, repr_native_str=False
            ),
        ]
    elif log_format == "json":
        renderer = [structlog.processors.JSONRenderer()]
    else:
        raise ValueError(f"unknown log format {log_format!r}: one of {', '.join(FORMATS)}")
    return structlog.stdlib.ProcessorFormatter(processors=[_fields, _truncate, *renderer])


def configure(level: str = "INFO", log_format: str = "keyvalue") -> None:
    """Send chorus' logs to stderr, one line per event; *level* in any case."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
