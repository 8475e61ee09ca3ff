"""The flag schema: the `Flag` value, the name grammar and the checks every way in
(Python API, HTTP, CLI, export files) shares. Pure: no map, no I/O."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
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
    return attrs.evolve(flag, default=None, **fields)
