"""FlagStore: feature flags as a schema over a replicated map."""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, cast

import attrs

from hlc import Timestamp

from ._rules import DEFAULT, NO_GATE, Rules

log = logging.getLogger("chorus.flags")

MAX_NAME_CHARS = 200
GATE_KINDS = ("boolean", "actor", "group", "percentage_of_actors", "percentage_of_time")
META_FIELDS = ("description", "owner", "expires")
FlagSubscriber = Callable[[frozenset[str]], None]


class FlagMap(Protocol):
    """What a FlagStore needs of its map: `transport.ReplicatedMap` or `LocalMap`."""

    @property
    def node_id(self) -> str: ...

    def get(self, key: Any, default: Any = None) -> Any: ...
    def items(self) -> Iterable[tuple[Any, Any]]: ...
    def set(self, key: Any, value: Any) -> None: ...
    def delete(self, key: Any) -> None: ...
    def timestamp(self, key: Any) -> Timestamp | None: ...
    def subscribe(self, callback: Callable[[frozenset[Any]], None]) -> Callable[[], None]: ...


@attrs.frozen
class Flag:
    """Everything known about one flag (made by `FlagStore.flag` and `FlagStore.all`).

    Attributes:
        name: the flag's name.
        boolean: the boolean gate: True, False, or None when unset.
        actors, groups: ``{id: enabled}`` of the actor and group gates (False = deny).
        percentage_of_actors, percentage_of_time: in [0, 1], or None when unset.
        description, owner, expires: metadata (``expires`` as an ISO date string).
        default: the default this store was given for the flag, if any; it applies
            only while the cluster holds no gate for it.
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
    default: bool | None = None

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


@attrs.frozen
class AuditEntry:
    """One recorded change to a flag: who, when (HLC), what, on which node."""

    flag: str
    timestamp: str  # the change's HLC timestamp, in its sortable text form
    author: str
    action: str
    target: str | None
    value: Any
    node: str


def _check_name(value: object, what: str) -> str:
    if type(value) is not str or not value or len(value) > MAX_NAME_CHARS:
        raise ValueError(
            f"{what} must be a non-empty str of at most {MAX_NAME_CHARS} chars, got {value!r:.60}"
        )
    return value


def _check_ratio(value: object, what: str) -> float:
    if type(value) not in (int, float):  # bool is refused: True is not 100%
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r:.60}")
    ratio = float(cast(float, value))
    if math.isnan(ratio) or not 0 <= ratio <= 1:
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r:.60}")
    return ratio


def _check_author(value: object) -> str:
    if value is None:
        return ""
    if type(value) is not str or len(value) > MAX_NAME_CHARS:
        raise ValueError(
            f"author must be a str of at most {MAX_NAME_CHARS} chars, got {value!r:.60}"
        )
    return value


class FlagStore:
    """Feature flags over a replicated map: gates in, ``enabled`` out.

    Each gate is its own map entry, keyed ``(flag, gate[, target])``, so concurrent
    edits of different gates on different nodes all survive. How gates decide is in
    `flags._rules` (actor > group > boolean > percentage; actor and group gates can
    enable or deny; a deny in any group wins).

    Args:
        flags: a `transport.ReplicatedMap` (or a `LocalMap` in tests), dedicated to
            this store.
        defaults: ``{flag: enabled}`` for flags the cluster holds no gate for. They
            never write to the cluster, so a node restarting with old defaults cannot
            undo a toggle made since.
        audit_retention: how many audit entries to keep per flag (oldest go first).

    Raises:
        ValueError: a default's name is invalid or its value is not a bool.

    The read path, `enabled`, looks the flag up in an immutable snapshot that is
    replaced (only for the flags a change touched) when the map changes: no lock,
    no allocation for boolean flags, no network, and it never raises.
    """

    __slots__ = (
        "_audit_retention",
        "_defaults",
        "_keys",
        "_map",
        "_snapshot",
        "_subscribers",
        "_unsubscribe",
    )

    def __init__(
        self,
        flags: FlagMap,
        defaults: Mapping[str, bool] | None = None,
        *,
        audit_retention: int = 100,
    ) -> None:
        self._map = flags
        self._defaults: dict[str, bool] = {}
        for name, value in (defaults or {}).items():
            _check_name(name, "flag name")
            if type(value) is not bool:
                raise ValueError(f"the default of {name!r} must be a bool, got {value!r:.60}")
            self._defaults[name] = value
        self._audit_retention = audit_retention
        self._keys: dict[str, set[tuple[Any, ...]]] = {}  # flag -> its keys in the map
        self._snapshot: dict[str, bool | Rules] = dict(self._defaults)
        self._subscribers: list[FlagSubscriber] = []
        self._on_change(frozenset(key for key, _ in list(flags.items())))
        self._unsubscribe = flags.subscribe(self._on_change)

    # -- the read path -------------------------------------------------------------

    def enabled(self, name: str, actor: str | None = None, groups: Iterable[str] = ()) -> bool:
        """Is flag ``name`` on for this actor and these groups?

        Args:
            name: the flag.
            actor: the actor's id (e.g. a user id), or None.
            groups: the groups the actor belongs to.

        Returns:
            The flag's state by the gate rules; an unknown flag is its default, or
            False. Never raises.
        """
        rule = self._snapshot.get(name, False)
        if rule is True or rule is False:  # two identity tests: the cheapest check
            return rule
        try:
            return rule.enabled(actor, groups)
        except Exception:  # bad arguments must not break the caller's request
            log.exception("flag %r: evaluation failed; returning False", name)
            return False

    def explain(
        self, name: str, actor: str | None = None, groups: Iterable[str] = ()
    ) -> tuple[bool, str]:
        """Like `enabled`, with the reason: ``"actor"``, ``"group"``, ``"boolean"``,
        ``"percentage_of_actors"``, ``"percentage_of_time"``, ``"default"`` (no gate
        in the cluster; the store's default applied), or ``"no_gate"`` (unknown flag,
        no default)."""
        rule = self._snapshot.get(name)
        if rule is None:
            return False, NO_GATE
        if name not in self._keys or not self._has_gates(name):
            return bool(rule), DEFAULT
        if rule.__class__ is bool:
            return bool(rule), "boolean"
        return rule.explain(actor, groups)  # type: ignore[union-attr]

    def known(self, name: str) -> bool:
        """True when the flag has gates in the cluster or a default here."""
        return name in self._snapshot

    # -- writers ---------------------------------------------------------------------

    def enable(self, name: str, *, author: str | None = None) -> None:
        """Turn the flag on for everyone (actor and group denies still apply).

        Raises:
            ValueError: invalid name or author; nothing is written.
        """
        self._gate(name, author, "enable", ("boolean",), True)

    def disable(self, name: str, *, author: str | None = None) -> None:
        """Turn the flag off for everyone: the boolean gate off, percentage gates
        removed. Actor and group enables still apply."""
        _check_name(name, "flag name")
        author_ = _check_author(author)
        self._map.set((name, "boolean"), False)
        for kind in ("percentage_of_actors", "percentage_of_time"):
            if (name, kind) in self._keys.get(name, ()):
                self._map.delete((name, kind))
        self._audit(name, (name, "boolean"), author_, "disable", None, False)

    def enable_for_actor(self, name: str, actor: str, *, author: str | None = None) -> None:
        """Turn the flag on for one actor, whatever other gates say."""
        self._gate(name, author, "enable_for_actor", ("actor", _check_name(actor, "actor")), True)

    def disable_for_actor(self, name: str, actor: str, *, author: str | None = None) -> None:
        """Deny the flag to one actor, whatever other gates say."""
        self._gate(name, author, "disable_for_actor", ("actor", _check_name(actor, "actor")), False)

    def enable_for_group(self, name: str, group: str, *, author: str | None = None) -> None:
        """Turn the flag on for members of a group (unless an actor gate decides)."""
        self._gate(name, author, "enable_for_group", ("group", _check_name(group, "group")), True)

    def disable_for_group(self, name: str, group: str, *, author: str | None = None) -> None:
        """Deny the flag to members of a group (unless an actor gate enables them)."""
        self._gate(name, author, "disable_for_group", ("group", _check_name(group, "group")), False)

    def enable_percentage_of_actors(
        self, name: str, ratio: float, *, author: str | None = None
    ) -> None:
        """Turn the flag on for a stable fraction of actors, ``ratio`` in [0, 1]."""
        value = _check_ratio(ratio, "percentage of actors")
        self._gate(name, author, "enable_percentage_of_actors", ("percentage_of_actors",), value)

    def enable_percentage_of_time(
        self, name: str, ratio: float, *, author: str | None = None
    ) -> None:
        """Turn the flag on for a random fraction of checks, ``ratio`` in [0, 1]."""
        value = _check_ratio(ratio, "percentage of time")
        self._gate(name, author, "enable_percentage_of_time", ("percentage_of_time",), value)

    def clear(
        self,
        name: str,
        *,
        actor: str | None = None,
        group: str | None = None,
        author: str | None = None,
    ) -> None:
        """Remove gates: one actor's, one group's, or (neither given) all of them.

        With no gates left, the flag falls back to its default, or off. Metadata and
        the audit log stay.
        """
        _check_name(name, "flag name")
        author_ = _check_author(author)
        keys: list[tuple[str, ...]]
        if actor is not None:
            keys = [(name, "actor", _check_name(actor, "actor"))]
        elif group is not None:
            keys = [(name, "group", _check_name(group, "group"))]
        else:
            keys = [k for k in self._keys.get(name, ()) if k[1] in GATE_KINDS]
            keys = keys or [(name, "boolean")]
        for key in keys:
            self._map.delete(key)
        self._audit(name, keys[0], author_, "clear", actor or group, None)

    def set_metadata(
        self,
        name: str,
        *,
        description: str | None = None,
        owner: str | None = None,
        expires: datetime.date | str | None = None,
        author: str | None = None,
    ) -> None:
        """Set a flag's description, owner or expiry date (each its own entry).

        Raises:
            ValueError: ``expires`` is not a date or ISO date string, or a text is
                too long; nothing is written.
        """
        _check_name(name, "flag name")
        author_ = _check_author(author)
        fields: dict[str, str] = {}
        for field, value in (("description", description), ("owner", owner)):
            if value is not None:
                if type(value) is not str or len(value) > 2000:
                    raise ValueError(f"{field} must be a str of at most 2000 chars")
                fields[field] = value
        if expires is not None:
            try:
                day = (
                    expires
                    if isinstance(expires, datetime.date)
                    else datetime.date.fromisoformat(expires)
                )
            except (TypeError, ValueError):
                raise ValueError(
                    f"expires must be a date or YYYY-MM-DD, got {expires!r:.60}"
                ) from None
            fields["expires"] = day.isoformat()
        for field, value in fields.items():
            self._map.set((name, "meta", field), value)
        if fields:
            self._audit(
                name, (name, "meta", next(iter(fields))), author_, "set_metadata", None, fields
            )

    def _gate(
        self, name: str, author: str | None, action: str, gate: tuple[str, ...], value: Any
    ) -> None:
        _check_name(name, "flag name")
        author_ = _check_author(author)
        key = (name, *gate)
        self._map.set(key, value)
        self._audit(name, key, author_, action, gate[1] if len(gate) > 1 else None, value)

    # -- the audit log ---------------------------------------------------------------

    def _audit(
        self,
        name: str,
        key: tuple[Any, ...],
        author: str,
        action: str,
        target: str | None,
        value: Any,
    ) -> None:
        ts = self._map.timestamp(key)
        stamp = str(ts) if ts is not None else ""
        record = {
            "author": author,
            "action": action,
            "target": target,
            "value": value,
            "node": str(self._map.node_id),
        }
        self._map.set((name, "audit", stamp), record)
        entries = sorted(k for k in self._keys.get(name, ()) if k[1] == "audit")
        for old in entries[: max(0, len(entries) - self._audit_retention)]:
            self._map.delete(old)

    def audit(self, name: str | None = None, *, limit: int | None = None) -> list[AuditEntry]:
        """Recorded changes, newest first: of one flag, or of all flags."""
        names = [name] if name is not None else sorted(self._keys)
        found = []
        for flag in names:
            for key in self._keys.get(flag, ()):
                if key[1] == "audit":
                    record = self._map.get(key)
                    if isinstance(record, dict):
                        found.append(
                            AuditEntry(
                                flag=flag,
                                timestamp=key[2],
                                author=str(record.get("author", "")),
                                action=str(record.get("action", "")),
                                target=record.get("target"),
                                value=record.get("value"),
                                node=str(record.get("node", "")),
                            )
                        )
        found.sort(key=lambda e: e.timestamp, reverse=True)
        return found[:limit] if limit is not None else found

    # -- describing ------------------------------------------------------------------

    def flag(self, name: str) -> Flag:
        """Describe one flag: every gate, its metadata and its default."""
        fields: dict[str, Any] = {"actors": {}, "groups": {}}
        for key in self._keys.get(name, ()):
            value = self._map.get(key)
            kind = key[1]
            if kind == "boolean" and type(value) is bool:
                fields["boolean"] = value
            elif kind in ("actor", "group") and type(value) is bool:
                fields[kind + "s"][key[2]] = value
            elif kind in ("percentage_of_actors", "percentage_of_time") and type(value) in (
                int,
                float,
            ):
                fields[kind] = float(value)
            elif kind == "meta" and key[2] in META_FIELDS and type(value) is str:
                fields[key[2]] = value
        return Flag(name=name, default=self._defaults.get(name), **fields)

    def all(self) -> list[Flag]:
        """Every flag the cluster or the defaults know, sorted by name."""
        return [self.flag(name) for name in sorted(set(self._keys) | set(self._defaults))]

    # -- change tracking -------------------------------------------------------------

    def subscribe(self, callback: FlagSubscriber) -> Callable[[], None]:
        """Call ``callback(flag_names)`` once per change to gates or metadata, local or
        remote. Runs where the map's changes are applied (the node's trio thread).

        Returns:
            A function that unsubscribes.
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _has_gates(self, name: str) -> bool:
        return any(k[1] in GATE_KINDS for k in self._keys.get(name, ()))

    def _on_change(self, keys: frozenset[Any]) -> None:
        rules_changed: set[str] = set()
        described: set[str] = set()
        for key in keys:
            if type(key) is not tuple or len(key) < 2 or type(key[0]) is not str:
                continue  # not ours: leave it alone
            name, kind = key[0], key[1]
            index = self._keys.setdefault(name, set())
            if self._map.get(key) is None:
                index.discard(key)
            else:
                index.add(key)
            if not index:
                del self._keys[name]
            if kind in GATE_KINDS:
                rules_changed.add(name)
            if kind in GATE_KINDS or kind == "meta":
                described.add(name)
        if rules_changed:
            snapshot = dict(self._snapshot)
            for name in rules_changed:
                compiled = self._compile(name)
                if compiled is None:
                    snapshot.pop(name, None)
                else:
                    snapshot[name] = compiled
            self._snapshot = snapshot  # one reference swap: readers see old or new
        if described:
            changed = frozenset(described)
            for callback in list(self._subscribers):
                try:
                    callback(changed)
                except Exception:
                    log.exception("flags: subscriber %r raised", callback)

    def _compile(self, name: str) -> bool | Rules | None:
        flag = self.flag(name)
        if not flag.has_gates:
            return self._defaults.get(name)
        return Rules(
            name=name,
            boolean=flag.boolean,
            actors=dict(flag.actors),
            groups=dict(flag.groups),
            percentage_of_actors=flag.percentage_of_actors,
            percentage_of_time=flag.percentage_of_time,
        ).simplify()

    def close(self) -> None:
        """Stop following the map (the store keeps its last snapshot)."""
        self._unsubscribe()
