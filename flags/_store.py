"""FlagStore: feature flags as a schema over a replicated map."""

from __future__ import annotations

import datetime
import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Any, Protocol, cast

import attrs
import cbor2
import trio

from hlc import MAX_WALL_MS, Timestamp, system_wall_ms

from ._entries import (
    CLUSTER,
    FLAG_KINDS,
    RULE_KINDS,
    _check_schedule,
    entry_problem,
    flag_entries,
    flag_of_entries,
    rules_in_order,
)
from ._evaluation import (
    ERROR,
    CompiledFlag,
    Evaluation,
    compile_flag,
    compile_segments,
    evaluate_for,
    prerequisite_cycle,
)
from ._export import ImportPlan, check_unique, plan_import
from ._rules import DEFAULT, NO_GATE, Rules
from ._schedule import DELETED, effective_entries, schedule_timestamp, scheduled_writes
from ._schema import (
    GATE_KINDS,
    MAX_NAME_CHARS,
    MAX_TEXT_CHARS,
    META_FIELDS,
    TYPED_FIELDS,
    Flag,
    FlagFormatError,
    _check_name,
    _check_ratio,
    _check_typed,
    _short,
    check_flag,
    is_text,
    pointer_part,
    valid_name,
)
from ._targeting import check_segment
from ._variants import BOOLEAN_VARIANTS, position_between

log = logging.getLogger("chorus.flags")

FlagSubscriber = Callable[[frozenset[str]], None]
#: The most map entries (gates and metadata set or removed) one `FlagStore.import_flags`
#: writes: about 0.5 s of the node's thread on a 2020s server core. An import writes
#: only what differs, and flags not in it are not touched, so a bigger one splits
#: into several files of whole flags.
MAX_IMPORT_ENTRIES = 10_000
#: The largest gate state an audit record carries, in bytes of its encoding: a flag
#: with more gates than fit (about 2,000 actor gates) gets ``"state": None`` in its
#: records, so that one flag's audit log stays bounded (100 records of 64 KiB at
#: most) and a record always fits in one map value.
MAX_AUDIT_STATE_BYTES = 64 * 1024


class FlagMap(Protocol):
    """What a FlagStore needs of its map: `transport.ReplicatedMap` or `LocalMap`."""

    @property
    def node_id(self) -> str: ...

    def get(self, key: Any, default: Any = None) -> Any: ...
    def items(self) -> Iterable[tuple[Any, Any]]: ...
    def set(self, key: Any, value: Any) -> None: ...
    def delete(self, key: Any) -> None: ...
    def check_writable(self, keys: Iterable[Any], *, values: Iterable[Any] = ()) -> None: ...
    def update(
        self, sets: Mapping[Any, Any] | None = None, deletes: Iterable[Any] = ()
    ) -> None: ...
    def timestamp(self, key: Any) -> Timestamp | None: ...
    def subscribe(self, callback: Callable[[frozenset[Any]], None]) -> Callable[[], None]: ...


@attrs.frozen
class AuditEntry:
    """One recorded change to a flag: who, when (HLC), what, on which node.

    Attributes:
        flag: the flag's name.
        timestamp: the change's HLC timestamp, in its sortable text form
            (`hlc.Timestamp.parse` reads it).
        author: who made it (``""`` when nobody was named).
        action: the writer: ``"enable"``, ``"clear"``, ``"import"``, ``"restore"``...
        target: the actor, group or gate it was about, if one; for ``"restore"``
            the timestamp of the entry restored.
        value: the value written (or a summary, such as ``{"set": n, "cleared": m}``).
        node: the node that made it.
        state: the flag's gates right after the change, as that node saw them:
            ``{"boolean": bool | None, "actors": {id: bool}, "groups": {name: bool},
            "percentage_of_actors": float | None, "percentage_of_time": float |
            None}``. None for records written before records carried it, and for a
            state over `MAX_AUDIT_STATE_BYTES` encoded. `FlagStore.restore` writes
            it back.
    """

    flag: str
    timestamp: str
    author: str
    action: str
    target: str | None
    value: Any
    node: str
    state: dict[str, Any] | None = None


class RestoreError(ValueError):
    """`FlagStore.restore` found no state to restore: the flag has no audit entry of
    that timestamp (never, or trimmed since), or the entry records no state (written
    by an older version, or too large to keep). Nothing was written."""


def _check_author(value: object) -> str:
    if value is None:
        return ""
    if not is_text(value, MAX_NAME_CHARS):
        raise ValueError(
            f"author must be a str of at most {MAX_NAME_CHARS} chars of Unicode text, "
            f"got {_short(value)}"
        )
    return cast(str, value)


#: How much of a malformed key's repr a warning shows.
_LOG_KEY_CHARS = 200
_ABSENT: Any = object()  # map.get's default: tells a deleted key from a None value


#: The gates `FlagStore.clear` removes by kind alone (``gate=``).
_SINGLE_GATES = ("boolean", "percentage_of_actors", "percentage_of_time")


#: Why an entry is not one the store knows (`flags._entries.entry_problem`); a module
#: global so that tests can swap it.
_entry_problem = entry_problem
_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})
#: The kinds of entry that make a flag more than the boolean flag of its gates.
_TYPED_KINDS = frozenset(("type", "variant", "off_variant", "fallthrough", "rule", "prereq"))
#: The longest wait, in seconds, between two looks at the schedules while none is
#: pending (a write of one wakes the look at once).
_SCHEDULE_POLL_S = 60.0


def _key_repr(key: object) -> str:
    return _short(key, _LOG_KEY_CHARS)


class FlagStore:
    """Feature flags over a replicated map: gates in, ``enabled`` out.

    Each gate is its own map entry, keyed ``(flag, gate[, target])``, so concurrent
    edits of different gates on different nodes all survive. How gates decide is in
    `flags._rules` (actor > group > boolean > percentage; actor and group gates can
    enable or deny; a deny in any group wins).

    Args:
        flags: a `transport.ReplicatedMap` (or a `LocalMap` in tests), dedicated to
            this store.
        defaults: ``{flag: default}`` for flags the cluster holds no gate for, each
            a bool or a `Flag` whose gates decide (its metadata is not used; a
            `Flag` with no gate is off), as ``chorus serve --defaults`` reads them
            from an export. They
            never write to the cluster, so a node restarting with old defaults cannot
            undo a toggle made since.
        audit_retention: how many audit entries to keep per flag (oldest go first).
        count_evaluations: count the checks of each flag (see `evaluations`), for
            metrics. Off by default: counting adds a dict lookup and an increment to
            every check (about 40 ns on CPython 3.11, against 70 ns for the check);
            off, the check is exactly as without it. Counting takes no lock (the
            increment is one C call on an ``itertools.count``, atomic under the GIL)
            and allocates nothing but the int that increment returns and frees at
            once; a flag's counter is made when the flag first appears, on the write
            path. Checks of unknown flags share one counter, so any number of names
            costs no memory.

    Raises:
        ValueError: a default's name is invalid or its value is not a bool.
        TypeError: ``flags`` is not such a map: a `transport.SyncMap` of a
            `transport.BackgroundNode`, say (use ``flags.connect`` there).

    The read path, `enabled`, looks the flag up in an immutable snapshot that is
    replaced (only for the flags a change touched) when the map changes: no lock,
    no allocation for boolean flags, no network, and it never raises.

    Names: flag names, actor ids and group names follow one grammar, 1 to 200 ASCII
    letters, digits and ``. _ - : @ +`` (`NAME_PATTERN`; no whitespace, control
    characters, NUL, ``/``, ``?``, ``#`` or ``%``), so that every name the Python API
    takes can go into a URL path, a log line and a shell argument unchanged (the HTTP
    admin and the CLI take the same names). Writers and ``defaults`` refuse other
    names with ValueError. Entries already in the map under other names (written by
    an older version, which took any non-empty str of at most 200 chars) are still
    read as before, and `clear` and `delete` still remove them; no writer adds to them.

    Entries the store does not know are ignored, never trusted and never fatal: a
    key of another shape (wrong length, wrong types, an unknown kind) or a value of
    the wrong type or range (a percentage of ``"abc"`` or 250, a gate that is not a
    bool), whether written through the raw map or by another version. The flag reads
    as if the entry were absent; its valid entries, and every other flag, still count.
    Each one is logged (logger ``chorus.flags``, WARNING) when it arrives.

    Attributes:
        ignored_entries: how many times an entry was ignored: +1 each time a
            malformed entry is found in the map at start, or arrives or changes
            later (a deletion counts nothing). Only ever grows; a value above zero
            means some writer puts entries in this map that the store does not read.
    """

    __slots__ = (
        "_audit_retention",
        "_closed",
        "_compiled",
        "_defaults",
        "_due",
        "_evaluations",
        "_keys",
        "_map",
        "_scheduled_keys",
        "_segments",
        "_snapshot",
        "_subscribers",
        "_to_prune",
        "_unknown_evaluations",
        "_unsubscribe",
        "_wake",
        "_wall_ms",
        "ignored_entries",
    )

    def __init__(
        self,
        flags: FlagMap,
        defaults: Mapping[str, bool | Flag] | None = None,
        *,
        audit_retention: int = 100,
        count_evaluations: bool = False,
        wall_ms: Callable[[], int] | None = None,
    ) -> None:
        if not callable(getattr(flags, "timestamp", None)):
            raise TypeError(
                f"FlagStore needs a ReplicatedMap, used in its node's thread (or a "
                f"LocalMap), not {type(flags).__name__}: from other threads, such as a "
                f"BackgroundNode's callers, use flags.connect()"
            )
        self._map = flags
        self._defaults: dict[str, bool | Flag] = {}
        for name, value in (defaults or {}).items():
            _check_name(name, "flag name")
            if isinstance(value, Flag):
                if value.name != name:
                    raise ValueError(f"the default of {name!r} is a Flag named {value.name!r}")
                value = check_flag(value)
            elif type(value) is not bool:
                raise ValueError(
                    f"the default of {name!r} must be a bool or a Flag, got {value!r:.60}"
                )
            self._defaults[name] = value
        self._audit_retention = audit_retention
        self._keys: dict[str, set[tuple[Any, ...]]] = {}  # flag -> its keys in the map
        # flag -> what `enabled` reads: True, False, a Rules, or a _Typed (typed flags)
        self._snapshot: dict[str, bool | Rules | _Typed] = {}
        self._compiled: dict[str, CompiledFlag] = {}  # flag -> what `evaluate` reads
        self._segments: dict[str, Any] = {}  # segment -> its compiled conditions
        # flag -> the ids of its schedules that were due when it was last compiled
        self._due: dict[str, frozenset[str]] = {}
        # flag -> the keys its schedules (due or pending) write: their tombstones are
        # kept (see `_keeps_tombstone`)
        self._scheduled_keys: dict[str, frozenset[tuple[Any, ...]]] = {}
        self._wall_ms = cast(
            Callable[[], int], wall_ms or getattr(flags, "wall_ms", system_wall_ms)
        )
        self._wake: trio.Event | None = None  # set to look at the schedules again
        self._to_prune: set[str] = set()  # flags whose schedules may hold losing writes
        self._closed = False
        self._subscribers: list[FlagSubscriber] = []
        self.ignored_entries = 0
        # flag -> an itertools.count, made when the flag first appears (on the write
        # path, never on the read path); None: evaluations are not counted.
        self._evaluations: dict[str, itertools.count[int]] | None = None
        self._unknown_evaluations = itertools.count()
        if count_evaluations:
            self._evaluations = {name: itertools.count() for name in self._defaults}
            self.__class__ = _CountingFlagStore  # the same store; its checks count
        for name in self._defaults:
            self._recompile(name, self._snapshot, self._compiled)
        self._on_change(frozenset(key for key, _ in list(flags.items())))
        self._unsubscribe = flags.subscribe(self._on_change)
        keep_tombstones = getattr(flags, "keep_tombstones", None)
        if keep_tombstones is not None:
            keep_tombstones(self._keeps_tombstone)
        start_soon = getattr(flags, "start_soon", None)
        if start_soon is not None:  # a ReplicatedMap: its node runs the schedules' timer
            try:
                start_soon(self._follow_schedules)
            except RuntimeError:  # its node has stopped: nothing to time
                log.warning("flags: the map's node is not running; schedules wait for calls")

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
        no default). Safe from any thread, like `enabled`."""
        rule = self._snapshot.get(name)
        if rule is None:
            return False, NO_GATE
        if name not in self._keys or not self._has_gates(name):
            if rule.__class__ is bool:
                return bool(rule), DEFAULT
            return rule.enabled(actor, groups), DEFAULT  # type: ignore[union-attr]
        if rule.__class__ is bool:
            return bool(rule), "boolean"
        return rule.explain(actor, groups)  # type: ignore[union-attr]

    def evaluations(self) -> tuple[dict[str, int], int] | None:
        """How many times each flag was checked (`enabled`, `explain` and
        `evaluate`) since this store was made, and how many named a flag it had
        never known; None unless made with ``count_evaluations=True``. Read it in
        any thread."""
        if self._evaluations is None:
            return None
        # An itertools.count shows its next value only in its repr: "count(42)".
        counts = {name: int(repr(c)[6:-1]) for name, c in list(self._evaluations.items())}
        return counts, int(repr(self._unknown_evaluations)[6:-1])

    def metadata(self, name: str) -> dict[str, str]:
        """The flag's description, owner and expiry date, those that are set, as
        ``{field: text}``: three lookups in the map, safe from any thread (what an
        OpenFeature resolution reports as ``flag_metadata``)."""
        found = {}
        for field in META_FIELDS:
            value = self._map.get((name, "meta", field))
            if type(value) is str:  # anything else is an entry the store ignores
                found[field] = value
        return found

    def known(self, name: str) -> bool:
        """True when the flag has gates in the cluster or a default here."""
        return name in self._snapshot

    def evaluate(
        self,
        name: str,
        default: Any,
        *,
        actor: str | None = None,
        groups: Iterable[str] = (),
        attributes: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """Evaluate a flag of any type for a context: the value served, its variant
        and why.

        The precedence, first row that decides: prerequisites (unmet: the off
        variant, DISABLED); the gates (off: the off variant, DISABLED); the rules in
        order (TARGETING_MATCH, or SPLIT for a split); the fallthrough (DEFAULT or
        SPLIT). The full table is in the README ("Typed flags"). A split serves
        each actor the same variant on every node, and raising a variant's weight
        only moves actors into it (weighted rendezvous hashing over SHA-256).

        Args:
            name: the flag.
            default: served when the flag is unknown, on an error, and where no
                variant applies (a typed flag switched off with no off variant).
            actor: the targeting key (a user id, say), or None.
            groups: the actor's groups.
            attributes: ``{name: value}`` that rule conditions read (str, numbers,
                bools; RFC 3339 strings for dates).

        Returns:
            An `Evaluation`: ``value``, ``variant`` (None when ``default`` was
            served), ``reason`` (``"TARGETING_MATCH"``, ``"SPLIT"``, ``"DEFAULT"``,
            ``"DISABLED"`` or ``"ERROR"``) and ``detail`` (the deciding gate, the
            rule id, ``"prerequisite <flag>"``, or what went wrong; ``"unknown
            flag"`` for a flag this store does not know). Never raises, takes no
            lock, and reads an immutable snapshot: safe from any thread.
        """
        flag = self._compiled.get(name)
        if flag is None:
            return Evaluation(default, None, ERROR, "unknown flag")
        return evaluate_for(
            flag,
            actor,
            groups,
            attributes if attributes is not None else _NO_ATTRIBUTES,
            default,
            self._compiled,
        )

    def is_typed(self, name: str) -> bool:
        """True when the flag has typed parts (a type other than boolean, variants,
        an off variant, a fallthrough, rules or prerequisites), so that `evaluate`
        decides it rather than the gates alone (`enabled` and `explain` too). False
        for a boolean flag of gates only, and for an unknown flag. Safe from any
        thread."""
        return type(self._snapshot.get(name)) is _Typed

    def flag_type(self, name: str) -> str | None:
        """The flag's value type (``"boolean"``, ``"string"``, ``"integer"``,
        ``"float"`` or ``"object"``), or None for a flag this store does not know.
        Safe from any thread."""
        flag = self._compiled.get(name)
        return None if flag is None else flag.type

    def segments(self) -> dict[str, list[dict[str, Any]]]:
        """The cluster's segments: ``{name: [condition, ...]}``, sorted by name."""
        found = {}
        for key in sorted(tuple(self._keys.get(CLUSTER, ())), key=repr):
            value = self._map.get(key, _ABSENT)
            if key[1] == "segment" and value is not _ABSENT and _entry_problem(key, value) is None:
                # {} is a valid segment: its conditions default to none (check_segment)
                found[key[2]] = list(value.get("conditions", []))
        return dict(sorted(found.items()))

    # -- writers ---------------------------------------------------------------------

    def enable(self, name: str, *, author: str | None = None) -> None:
        """Turn the flag on for everyone (actor and group denies still apply).

        Raises:
            ValueError: invalid name or author; nothing is written.
        """
        self._gate(name, author, "enable", ("boolean",), True)

    def disable(self, name: str, *, author: str | None = None) -> None:
        """Turn the flag off for everyone: the boolean gate off, percentage gates
        removed. Actor and group enables still apply.

        Raises:
            ValueError: invalid name or author; nothing is written.
            transport.WriteRefused: the map refuses one of the writes (its node is
                not ready, or holds an entry of one of the keys back from the
                future); it is checked before any is made, so nothing is written.
        """
        _check_name(name, "flag name")
        author_ = _check_author(author)
        live = self._entries(name) if valid_name(name) else {}
        gone = [
            (name, kind)
            for kind in ("percentage_of_actors", "percentage_of_time")
            if (name, kind) in live
        ]
        self._change(name, author_, "disable", None, False, {(name, "boolean"): False}, gone)

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
        gate: str | None = None,
        author: str | None = None,
    ) -> None:
        """Remove gates: one actor's, one group's, one of the other gates (``gate``:
        ``"boolean"``, ``"percentage_of_actors"`` or ``"percentage_of_time"``), or
        (none given) all of them.

        With no gates left, the flag falls back to its default, or off. Metadata and
        the audit log stay.

        Raises:
            ValueError: as `disable`, or ``gate`` is not one of those three; nothing
                is written.
            transport.WriteRefused: as `disable`; nothing is written.
        """
        self._check_existing(name)
        author_ = _check_author(author)
        keys: list[tuple[str, ...]]
        kind, target = ("actor", actor) if actor is not None else ("group", group)
        if gate is not None:
            if gate not in _SINGLE_GATES or actor is not None or group is not None:
                raise ValueError(f"gate must be one of {_SINGLE_GATES}, alone, got {_short(gate)}")
            self._change(name, author_, "clear", gate, None, {}, [(name, gate)])
            return
        if target is not None:
            held = self._keys.get(name, set())
            # A gate the map holds may predate the grammar: it can still be removed.
            if not (type(target) is str and (name, kind, target) in held):
                _check_name(target, kind)
            keys = [(name, kind, target)]
        else:
            keys = [k for k in self._entries(name) if k[1] in GATE_KINDS]
            keys = keys or [(name, "boolean")]
        self._change(name, author_, "clear", actor or group, None, {}, keys)

    def delete(self, name: str, *, author: str | None = None) -> bool:
        """Remove the flag from the cluster: every gate and its metadata. The audit log
        stays, with the deletion recorded; a default given to a store still applies.

        Returns:
            False when the cluster held no gate or metadata for the flag (nothing is
            written, not even an audit record); True once it is removed.

        Raises:
            ValueError, transport.WriteRefused: as `disable`; nothing is written.
        """
        self._check_existing(name)
        author_ = _check_author(author)
        keys = [k for k in tuple(self._keys.get(name, ())) if k[1] != "audit"]
        if not keys:
            return False
        self._change(name, author_, "delete", None, None, {}, sorted(keys, key=repr))
        return True

    def _check_existing(self, name: object) -> None:
        """A writer that removes takes the name of a flag the map holds even when it
        is outside the grammar (written by an older version), so it can be removed."""
        if not (type(name) is str and name in self._keys):
            _check_name(name, "flag name")

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
            ValueError: ``expires`` is not a date or ISO date string, or a text (or
                the change's audit record) is too long for the map; nothing is
                written.
            transport.WriteRefused: as `disable`; nothing is written.
        """
        _check_name(name, "flag name")
        author_ = _check_author(author)
        fields: dict[str, str] = {}
        for field, value in (("description", description), ("owner", owner)):
            if value is not None:
                if not is_text(value):
                    raise ValueError(
                        f"{field} must be a str of at most {MAX_TEXT_CHARS} chars of "
                        f"Unicode text, got {_short(value)}"
                    )
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
        if fields:
            entries = {(name, "meta", field): value for field, value in fields.items()}
            self._change(name, author_, "set_metadata", None, fields, entries)

    def _gate(
        self, name: str, author: str | None, action: str, gate: tuple[str, ...], value: Any
    ) -> None:
        _check_name(name, "flag name")
        author_ = _check_author(author)
        target = gate[1] if len(gate) > 1 else None
        self._change(name, author_, action, target, value, {(name, *gate): value})

    # -- typed flags: variants, rules, prerequisites, segments, schedules ----------

    def set_variants(
        self,
        name: str,
        variants: Mapping[str, Any],
        *,
        type: str | None = None,
        author: str | None = None,
    ) -> None:
        """Make the flag's variants exactly ``variants`` (``{variant: value}``), and
        set its value type when ``type`` is given (``"boolean"``, ``"string"``,
        ``"integer"``, ``"float"`` or ``"object"``). Variants not given are
        removed; each variant is its own entry, so one added concurrently on another
        node survives.

        Raises:
            flags.FlagFormatError: a bad type, variant name or value (not of the
                type), with the pointer of the field (``/variants/blue``); nothing
                is written.
            ValueError, transport.WriteRefused: as `disable`; nothing is written.
        """
        if not isinstance(variants, Mapping):
            raise FlagFormatError("/variants", "an object of {variant: value}")
        current = self.flag(name) if valid_name(name) else None
        sets: dict[tuple[Any, ...], Any] = {(name, "variant", v): x for v, x in variants.items()}
        if type is not None:
            sets[(name, "type")] = type
        gone = [
            (name, "variant", v) for v in (current.variants if current else {}) if v not in variants
        ]
        self._typed(name, author, "set_variants", None, {"variants": len(variants)}, sets, gone)

    def set_variant(
        self, name: str, variant: str, value: Any, *, author: str | None = None
    ) -> None:
        """Add or change one variant of the flag: ``value`` must be of the flag's
        type. Raises as `set_variants`."""
        self._typed(
            name, author, "set_variant", variant, value, {(name, "variant", variant): value}
        )

    def delete_variant(self, name: str, variant: str, *, author: str | None = None) -> bool:
        """Remove one variant.

        Rules, the fallthrough or the off variant that serve it then answer with
        the caller's default and reason ERROR, until they are changed.

        Returns:
            False when the flag has no such variant (nothing is written).

        Raises:
            ValueError, transport.WriteRefused: as `disable`; nothing is written.
        """
        return self._typed_delete(name, author, "delete_variant", variant, "variant")

    def set_off_variant(self, name: str, variant: str | None, *, author: str | None = None) -> None:
        """Set the variant served when the gates say off (None removes it: the
        caller's default is then served). Raises as `set_variants`."""
        key = (name, "off_variant")
        sets, deletes = ({key: variant}, []) if variant is not None else ({}, [key])
        self._typed(name, author, "set_off_variant", variant, variant, sets, deletes)

    def set_fallthrough(
        self, name: str, serve: Mapping[str, Any] | None, *, author: str | None = None
    ) -> None:
        """Set what the flag serves when its gates say on and no rule matches:
        ``{"variant": v}`` or ``{"split": {v: weight, ...}}`` (weights are ints in
        [0, 1,000,000]); None removes it. Raises as `set_variants`."""
        key = (name, "fallthrough")
        sets, deletes = ({key: serve}, []) if serve is not None else ({}, [key])
        self._typed(name, author, "set_fallthrough", None, serve, sets, deletes)

    def set_rule(
        self,
        name: str,
        rule_id: str,
        *,
        serve: Mapping[str, Any],
        conditions: Iterable[Mapping[str, Any]] = (),
        segments: Iterable[str] = (),
        before: str | None = None,
        after: str | None = None,
        author: str | None = None,
    ) -> None:
        """Add or replace one rule of the flag.

        A rule matches when all its ``conditions`` and all the conditions of each
        of its ``segments`` hold, and then serves ``serve`` (as `set_fallthrough`
        takes it). Each condition is ``{"attribute": str, "op": str, "values":
        [...]}``; the operators are in the README ("Typed flags").

        Where the rule goes: just before rule ``before``, or just after rule
        ``after``; given neither, a new rule goes last and an existing one keeps its
        place. Each rule is its own entry: two nodes editing different rules both
        keep their edit, and two editing the same rule keep the later write of it.

        Raises:
            flags.FlagFormatError: a bad field, with its pointer
                (``/rules/<rule_id>/conditions/0/op``), or ``before``/``after``
                naming no rule; nothing is written.
            ValueError, transport.WriteRefused: as `disable`; nothing is written.
        """
        current = self.flag(name) if valid_name(name) else None
        ordered = rules_in_order(current) if current else []
        positions = [str(rule["position"]) for rid, rule in ordered if rid != rule_id]
        at = f"/rules{pointer_part(rule_id)}"
        if before is not None and after is not None:
            raise FlagFormatError(at + "/position", "give before or after, not both")
        neighbour = before if before is not None else after
        if neighbour is not None:
            ids = [rid for rid, _ in ordered if rid != rule_id]
            if neighbour not in ids:
                raise FlagFormatError(at + "/position", f"no rule {_short(neighbour)} to go by")
            index = ids.index(neighbour) + (1 if after is not None else 0)
            position = position_between(
                positions[index - 1] if index > 0 else None,
                positions[index] if index < len(positions) else None,
            )
        elif current is not None and rule_id in current.rules:
            position = current.rules[rule_id]["position"]
        else:
            position = position_between(positions[-1] if positions else None, None)
        rule = {
            "position": position,
            "conditions": _listed(conditions, at + "/conditions", "conditions"),
            "segments": _listed(segments, at + "/segments", "segment names"),
            "serve": serve,
        }
        self._typed(name, author, "set_rule", rule_id, rule, {(name, "rule", rule_id): rule})

    def delete_rule(self, name: str, rule_id: str, *, author: str | None = None) -> bool:
        """Remove one rule; False when the flag has no such rule (nothing is
        written). Raises as `disable`."""
        return self._typed_delete(name, author, "delete_rule", rule_id, "rule")

    def set_prerequisite(
        self, name: str, other: str, variants: Iterable[str], *, author: str | None = None
    ) -> None:
        """Make flag ``name`` require that flag ``other``, evaluated for the same
        context, serves one of ``variants`` (``["true"]`` for a boolean flag that
        must be on); while it does not, ``name`` serves its off variant.

        Raises:
            flags.FlagFormatError: ``other`` is not a flag this store knows, names
                none of its variants, or requiring it would close a cycle (the
                message shows it: ``a -> b -> a``); the pointer is
                ``/prerequisites/<other>``. Nothing is written.
            ValueError, transport.WriteRefused: as `disable`; nothing is written.
        """
        at = "/prerequisites" + pointer_part(other)
        wanted = [variants] if isinstance(variants, str) else _listed(variants, at, "variants")
        if valid_name(name) and valid_name(other) and other != name:
            target = self._compiled.get(other)
            if target is None:
                raise FlagFormatError(at, f"no flag {other} to require")
            unknown = [v for v in wanted if v not in target.variants]
            if unknown:
                raise FlagFormatError(
                    at,
                    f"flag {other} has no variant {unknown[0]!r} "
                    f"(it has {', '.join(sorted(target.variants))})",
                )
            cycle = prerequisite_cycle(self._prerequisites(), (name, other))
            if cycle is not None:
                raise FlagFormatError(at, f"a prerequisite cycle: {' -> '.join(cycle)}")
        value = {"variants": wanted}
        self._typed(
            name, author, "set_prerequisite", other, wanted, {(name, "prereq", other): value}
        )

    def delete_prerequisite(self, name: str, other: str, *, author: str | None = None) -> bool:
        """Remove the flag's prerequisite on ``other``; False when it has none
        (nothing is written). Raises as `disable`."""
        return self._typed_delete(name, author, "delete_prerequisite", other, "prereq")

    def _typed_delete(
        self, name: str, author: str | None, action: str, target: str, kind: str
    ) -> bool:
        _check_name(name, "flag name")
        key = (name, kind, target)
        if key not in self._entries(name):
            return False
        self._typed(name, author, action, target, None, {}, [key])
        return True

    def set_segment(
        self, segment: str, conditions: Iterable[Mapping[str, Any]], *, author: str | None = None
    ) -> None:
        """Define a named segment: conditions (as `set_rule` takes them) that any
        flag's rules can require by name. Recorded in the audit log under the flag
        name ``""``.

        Raises:
            flags.FlagFormatError: a bad condition, with its pointer
                (``/conditions/0/values``); nothing is written.
            ValueError: a bad segment name or author; nothing is written.
            transport.WriteRefused: as `disable`; nothing is written.
        """
        _check_name(segment, "segment name")
        author_ = _check_author(author)
        value = check_segment({"conditions": _listed(conditions, "/conditions", "conditions")})
        self._change(
            CLUSTER, author_, "set_segment", segment, value, {(CLUSTER, "segment", segment): value}
        )

    def delete_segment(self, segment: str, *, author: str | None = None) -> bool:
        """Remove a segment; rules that require it then never match.

        Returns:
            False when there was no such segment (nothing is written).

        Raises:
            ValueError, transport.WriteRefused: as `set_segment`.
        """
        _check_name(segment, "segment name")
        author_ = _check_author(author)
        key = (CLUSTER, "segment", segment)
        if key not in self._keys.get(CLUSTER, ()):
            return False
        self._change(CLUSTER, author_, "delete_segment", segment, None, {}, [key])
        return True

    def schedule(
        self,
        name: str,
        schedule_id: str,
        at: int | datetime.datetime,
        *,
        set: Iterable[Sequence[Any]] = (),
        delete: Iterable[Sequence[Any]] = (),
        author: str | None = None,
    ) -> None:
        """Schedule a change of the flag at a time, with no coordinator.

        Each write counts as if made at ``at``: every node applies it when its
        clock reaches ``at`` (or it hears of a write stamped later), and a node
        that starts later applies it as it catches up. A change made by hand
        after ``at`` wins over it; one made before loses. Removing a pending
        schedule cancels it; removing one that has applied keeps its effect.

        Args:
            name: the flag.
            schedule_id: names the schedule (by the name grammar).
            at: when, as HLC wall ms (ms since the Unix epoch) or an aware datetime.
            set: writes ``[kind, *key, value]``: ``["boolean", True]``,
                ``["actor", "u1", False]``, ``["fallthrough", {"variant": "b"}]``,
                ``["rule", "r1", {...}]``... (the entries in the README's table).
            delete: removals ``[kind, *key]``: ``["percentage_of_actors"]``.
            author: recorded in the audit log.

        Raises:
            flags.FlagFormatError: a bad time or write, with its pointer
                (``/schedules/<id>/set/0``); nothing is written.
            ValueError, transport.WriteRefused: as `disable`; nothing is written.
        """
        if isinstance(at, datetime.datetime):
            if at.tzinfo is None:
                raise ValueError("at must be an aware datetime (with a time zone)")
            at_ms: object = round(at.timestamp() * 1000)
        else:
            at_ms = at
        where = f"/schedules{pointer_part(schedule_id)}"
        writes = [
            _listed(w, f"{where}/set/{i}", "a write")
            for i, w in enumerate(_listed(set, where + "/set", "writes"))
        ]
        removals = [
            _listed(w, f"{where}/delete/{i}", "a removal")
            for i, w in enumerate(_listed(delete, where + "/delete", "removals"))
        ]
        value = {"at_ms": at_ms, "set": writes, "delete": removals}
        try:
            _check_schedule(name, value)  # the fields first, then the time
        except FlagFormatError as exc:
            raise FlagFormatError(where + exc.pointer, exc.message) from None
        if valid_name(name) and cast(int, at_ms) <= self._wall_ms():
            # A write dated before now could lose to a tombstone this node has not
            # heard of yet, and win again once the cluster collects it.
            raise FlagFormatError(
                where + "/at_ms", f"{at_ms} ms is not in the future: change the flag now instead"
            )
        if valid_name(name) and valid_name(schedule_id):
            graph = self._prerequisites()
            for index, write in enumerate(writes):
                if len(write) == 3 and write[0] == "prereq" and valid_name(write[1]):
                    cycle = prerequisite_cycle(graph, (name, write[1]))
                    if cycle is not None:
                        raise FlagFormatError(
                            f"/schedules{pointer_part(schedule_id)}/set/{index}",
                            f"a prerequisite cycle: {' -> '.join(cycle)}",
                        )
        self._typed(
            name, author, "schedule", schedule_id, value, {(name, "schedule", schedule_id): value}
        )

    def delete_schedule(self, name: str, schedule_id: str, *, author: str | None = None) -> bool:
        """Remove a schedule: a pending one is cancelled; one that has applied keeps
        its effect (what it set is written as ordinary entries, in the same change).

        Returns:
            False when the flag has no such schedule (nothing is written).

        Raises:
            ValueError, transport.WriteRefused: as `disable`; nothing is written.
        """
        _check_name(name, "flag name")
        author_ = _check_author(author)
        key = (name, "schedule", schedule_id)
        if key not in self._keys.get(name, ()):
            return False
        # Applied means due by the clock now (the delete is stamped after it), not
        # by the list of the last compile, which the timer may not have updated yet.
        self.apply_schedules()
        sets: dict[tuple[Any, ...], Any] = {}
        deletes: list[tuple[Any, ...]] = [key]
        if schedule_id in self._due.get(name, ()):
            with_it = self._entries(name)
            without = self._entries(name, leave_out=schedule_id)
            for written, _ in scheduled_writes(name, self._map.get(key)):
                now, before = with_it.get(written, _ABSENT), without.get(written, _ABSENT)
                if now is _ABSENT and before is not _ABSENT:
                    deletes.append(written)
                elif now is not _ABSENT and (before is _ABSENT or not _same(before, now)):
                    sets[written] = now
        self._change(name, author_, "delete_schedule", schedule_id, None, sets, deletes)
        return True

    def _typed(
        self,
        name: str,
        author: str | None,
        action: str,
        target: str | None,
        value: Any,
        sets: dict[tuple[Any, ...], Any],
        deletes: list[tuple[Any, ...]] | None = None,
    ) -> None:
        """Check a change to a flag's typed parts against the whole flag as it would
        be, then make it with the values in canonical form."""
        _check_name(name, "flag name")
        if target is not None:
            _check_name(target, action.split("_", 1)[-1].replace("_", " ") + " name")
        author_ = _check_author(author)
        deletes = deletes or []
        entries = {k: v for k, v in self._entries(name).items() if k not in deletes}
        candidate = flag_of_entries(name, {**entries, **sets})
        canonical = flag_entries(attrs.evolve(candidate, **_check_typed(candidate)))
        sets = {key: canonical.get(key, entry) for key, entry in sets.items()}
        _check_served(candidate, sets)
        self._change(name, author_, action, target, value, sets, deletes)

    def _prerequisites(self) -> dict[str, set[str]]:
        """``{flag: the flags it requires}``, as the map holds them now or any of its
        schedules (due or pending) will make them: an edge a schedule adds closes a
        cycle as well as one written now."""
        found: dict[str, set[str]] = {}
        for name, keys in list(self._keys.items()):
            for key in tuple(keys):
                if key[1] == "prereq":
                    found.setdefault(name, set()).add(key[2])
                elif key[1] == "schedule":
                    schedule = self._map.get(key)
                    writes = schedule.get("set") if isinstance(schedule, dict) else None
                    for write in writes if isinstance(writes, list) else ():
                        if isinstance(write, list) and len(write) == 3 and write[0] == "prereq":
                            found.setdefault(name, set()).add(str(write[1]))
        return found

    # -- export and import ----------------------------------------------------------

    def export(self) -> list[Flag]:
        """Every flag the cluster holds gates or metadata for, sorted by name, without
        defaults (a node's own setting): what ``chorus flags export`` writes.

        Entries under names outside the grammar (written by an older version, see
        the class notes) are left out, since no writer, `import_flags` included,
        takes them back: `unexportable` lists them."""
        flags = []
        for name, keys in sorted(self._keys.items()):
            if valid_name(name) and any(k[1] != "audit" for k in tuple(keys)):
                flag = self.flag(name)
                flags.append(
                    attrs.evolve(
                        flag,
                        default=None,
                        actors={a: on for a, on in flag.actors.items() if valid_name(a)},
                        groups={g: on for g, on in flag.groups.items() if valid_name(g)},
                    )
                )
        return flags

    def unexportable(self) -> list[str]:
        """The entries `export` leaves out, one line each (``"actor 'has space' of
        flag 'checkout'"``, ``"flag 'old name'"``): rename them with the writers,
        then export again."""
        found = []
        for name, keys in sorted(self._keys.items()):
            if name == CLUSTER or not any(k[1] != "audit" for k in tuple(keys)):
                continue
            if not valid_name(name):
                found.append(f"flag {name!r}")
                continue
            flag = self.flag(name)
            for kind, gates in (("actor", flag.actors), ("group", flag.groups)):
                found += [f"{kind} {t!r} of flag {name!r}" for t in gates if not valid_name(t)]
        return found

    def import_flags(
        self, flags: Iterable[Flag], *, author: str | None = None, dry_run: bool = False
    ) -> list[ImportPlan]:
        """Make each flag in the cluster equal the one given: its gates and metadata
        set, every other gate and metadata field of it removed. Flags not given are
        not touched. Only what differs is written, so a second import of the same
        flags writes nothing (not even an audit record).

        Each flag that changes is one change, with one audit record (action
        ``"import"``, value ``{"set": n, "cleared": m}``). Every key and value of
        every flag is checked before the first write, so the import applies whole or
        not at all.

        Args:
            flags: the flags, as `flags._export.parse_export` reads them from a file.
            author: recorded in each audit record.
            dry_run: plan only; write nothing.

        Returns:
            One plan per flag given, in order, each saying what changed (or would):
            ``plan.changes`` is empty for a flag that already matched.

        Raises:
            flags.FlagFormatError: a flag breaks the schema, or a name is given
                twice (its pointer is ``/<index>/<field>``); nothing is written.
            ValueError: a bad author, or more than `MAX_IMPORT_ENTRIES` entries to
                write (a dry run still plans them); nothing is written.
            transport.WriteRefused: as `disable`; nothing is written.
        """
        wanted = list(flags)
        for index, flag in enumerate(wanted):
            try:
                wanted[index] = check_flag(flag)
            except FlagFormatError as exc:
                raise FlagFormatError(f"/{index}{exc.pointer}", exc.message) from None
        check_unique(wanted)
        self._check_imported_prerequisites(wanted)
        author_ = _check_author(author)
        plans = [plan_import(self.flag(flag.name), flag) for flag in wanted]
        if dry_run:
            return plans
        entries = sum(len(plan.sets) + len(plan.deletes) for plan in plans)
        if entries > MAX_IMPORT_ENTRIES:
            raise ValueError(
                f"this import would write {entries} entries, over {MAX_IMPORT_ENTRIES} at "
                f"once (the node does nothing else while it writes): split the file by flags"
            )
        changes = [
            _Change(
                plan.name,
                "import",
                None,
                {"set": len(plan.sets), "cleared": len(plan.deletes)},
                plan.sets,
                plan.deletes,
            )
            for plan in plans
            if plan.changes
        ]
        if changes:
            self._apply(changes, author_)
        return plans

    def _check_imported_prerequisites(self, wanted: list[Flag]) -> None:
        """Refuse an import whose prerequisites (with those its schedules add) would
        close a cycle with each other or with the cluster's: `FlagFormatError` at
        ``/<index>/prerequisites/<other>`` (or ``/<index>/schedules/<id>``)."""
        graph = self._prerequisites()
        edges: list[tuple[str, str, str]] = []  # (flag, other, pointer)
        for index, flag in enumerate(wanted):
            graph.pop(flag.name, None)  # the import replaces the flag's edges
            for other in flag.prerequisites:
                edges.append((flag.name, other, f"/{index}/prerequisites{pointer_part(other)}"))
            for sched_id, schedule in flag.schedules.items():
                for write in schedule.get("set", []):
                    if len(write) == 3 and write[0] == "prereq":
                        where = f"/{index}/schedules{pointer_part(sched_id)}"
                        edges.append((flag.name, str(write[1]), where))
        for name, other, where in edges:
            cycle = prerequisite_cycle(graph, (name, other))
            if cycle is not None:
                raise FlagFormatError(where, f"a prerequisite cycle: {' -> '.join(cycle)}")
            graph.setdefault(name, set()).add(other)

    # -- the audit log ---------------------------------------------------------------

    def _change(
        self,
        name: str,
        author: str,
        action: str,
        target: str | None,
        value: Any,
        sets: Mapping[tuple[Any, ...], Any],
        deletes: Iterable[tuple[Any, ...]] = (),
    ) -> None:
        """Write ``sets``, delete ``deletes``, and record the change in the audit log:
        all of it, or nothing (see `_apply`)."""
        self._apply([_Change(name, action, target, value, dict(sets), list(deletes))], author)

    def _apply(self, changes: list[_Change], author: str) -> None:
        """Apply ``changes`` (of one flag each) as one map update, then record each in
        the audit log as a second one. The map checks every key and value first
        (readiness, entries held back from the future, types, sizes) and writes
        nothing if one is refused; both updates follow with no ``await`` in between.
        One update is one delta and one notification, however many keys it holds."""
        node = str(self._map.node_id)
        for change in changes:
            self._unschedule(change)
        states: dict[str, dict[str, Any]] = {}
        for c in changes:  # each flag's gates after its changes, before any is written
            states[c.name] = _state_after(states.get(c.name) or self._state(c.name), c)
        records = [
            {
                "author": author,
                "action": c.action,
                "target": c.target,
                "value": c.value,
                "node": node,
                # A segment change (flag "") has no flag state to record.
                "state": _bounded(states[c.name]) if c.name != CLUSTER else None,
            }
            for c in changes
        ]
        sets = {key: entry for c in changes for key, entry in c.sets.items()}
        deletes = [key for c in changes for key in c.deletes]
        try:
            self._map.check_writable([*sets, *deletes], values=[*sets.values(), *records])
        except ValueError:
            # A record too large for the map with its state may fit without it; if
            # something else is wrong, the second check raises it.
            if not any(r["state"] is not None for r in records):
                raise
            for record in records:
                record["state"] = None
            self._map.check_writable([*sets, *deletes], values=[*sets.values(), *records])
        self._map.update(sets, deletes)
        audit: dict[tuple[Any, ...], Any] = {}
        trims: list[tuple[Any, ...]] = []
        for change, record in zip(changes, records, strict=True):
            first = next(iter(change.sets), None) or change.deletes[0]
            ts = self._map.timestamp(first)  # the change's own timestamp names its record
            audit[(change.name, "audit", str(ts) if ts is not None else "")] = record
            held = sorted(k for k in self._keys.get(change.name, ()) if k[1] == "audit")
            for old in held[: max(0, len(held) + 1 - self._audit_retention)]:
                try:
                    self._map.check_writable([old])
                except Exception:  # e.g. an entry of the key held back: trimmed next time
                    log.warning(
                        "flag %r: audit entry %s not trimmed yet", change.name, _key_repr(old)
                    )
                else:
                    trims.append(old)
        self._map.update(audit, trims)

    def _unschedule(self, change: _Change) -> None:
        """Add to ``change`` the rewrite of each due schedule that writes a key the
        change writes too, without that key (or its removal, when nothing is left).

        A schedule's write counts as made at its time, so a write made after it wins,
        and this leaves what the flag evaluates as it is. It is needed all the same,
        for two reasons:

        - a delete wins only while its tombstone lasts; once the cluster collects
          it, the schedule's write would win again;
        - the map tells subscribers only of changed values, so a value written
          again unchanged (or a tombstone over a tombstone), which now wins over
          the schedule, would reach the other nodes unnoticed. The schedule's
          rewrite is a change every node hears of, and they recompute the flag.
        """
        held = tuple(self._keys.get(change.name, ()))
        if not any(k[1] == "schedule" for k in held):
            return
        # Due by the clock now, not by the list of the last compile: a clock that
        # passed a schedule's time before the timer looked stamps the write after it.
        due = self._schedules_due(change.name, held, self._wall_ms())[0]
        if not due:
            return
        written = {key for key in (*change.sets, *change.deletes) if key[1] != "schedule"}
        if not written:
            return
        name = change.name
        for sched_id in sorted(due):
            key = (name, "schedule", sched_id)
            schedule = self._map.get(key)
            if key in change.deletes or key in change.sets or not isinstance(schedule, dict):
                continue
            sets = [w for w in schedule.get("set", []) if (name, *w[:-1]) not in written]
            deletes = [w for w in schedule.get("delete", []) if (name, *w) not in written]
            if len(sets) + len(deletes) == len(schedule.get("set", [])) + len(
                schedule.get("delete", [])
            ):
                continue
            if sets or deletes:
                change.sets[key] = {**schedule, "set": sets, "delete": deletes}
            else:
                change.deletes.append(key)

    def audit(self, name: str | None = None, *, limit: int | None = None) -> list[AuditEntry]:
        """Recorded changes, newest first: of one flag, or of all flags; at most
        ``limit`` of them (the newest) when given."""
        names = [name] if name is not None else sorted(self._keys)
        keys = [k for flag in names for k in tuple(self._keys.get(flag, ())) if k[1] == "audit"]
        if limit is not None:  # only the newest are read: the flags page asks for one
            keys = heapq.nlargest(limit, keys, key=lambda k: k[2])
        found = []
        for key in keys:
            record = self._map.get(key)
            if isinstance(record, dict):
                state = record.get("state")
                found.append(
                    AuditEntry(
                        flag=key[0],
                        timestamp=key[2],
                        author=str(record.get("author", "")),
                        action=str(record.get("action", "")),
                        target=record.get("target"),
                        value=record.get("value"),
                        node=str(record.get("node", "")),
                        state=state if isinstance(state, dict) else None,
                    )
                )
        found.sort(key=lambda e: e.timestamp, reverse=True)
        return found

    def restore(self, name: str, timestamp: str, *, author: str | None = None) -> bool:
        """Write back the gates the flag had right after an earlier change: the state
        recorded by its audit entry of HLC timestamp ``timestamp`` (the text form of
        `AuditEntry.timestamp`). Metadata is not touched.

        Only the gates that differ are written, as one change recorded in the audit
        log (action ``"restore"``, target ``timestamp``, value ``{"set": n,
        "cleared": m}``), so restoring the same entry again writes nothing.

        Returns:
            True when gates changed; False when they already matched (nothing is
            written, not even an audit record).

        Raises:
            RestoreError: the flag has no audit entry of that timestamp, or the entry
                records no state; nothing is written.
            flags.FlagFormatError: the recorded state breaks the schema (written by
                another version); nothing is written.
            ValueError: an invalid name or author; nothing is written.
            transport.WriteRefused: as `disable`; nothing is written.
        """
        _check_name(name, "flag name")
        author_ = _check_author(author)
        key = (name, "audit", timestamp)
        record = self._map.get(key) if key in self._keys.get(name, ()) else None
        if not isinstance(record, dict):
            raise RestoreError(f"flag {name!r} has no audit entry {_short(timestamp)}")
        state = record.get("state")
        if not isinstance(state, dict):
            raise RestoreError(
                f"the audit entry {timestamp} of flag {name!r} records no state to restore "
                f"(written by an older version, or over {MAX_AUDIT_STATE_BYTES} bytes)"
            )
        current = self.flag(name)
        wanted = check_flag(
            _flag_of_state(
                name,
                state,
                description=current.description,
                owner=current.owner,
                expires=current.expires,
            )
        )
        plan = plan_import(current, wanted)
        if not plan.changes:
            return False
        value = {"set": len(plan.sets), "cleared": len(plan.deletes)}
        self._change(name, author_, "restore", timestamp, value, plan.sets, plan.deletes)
        return True

    def last_changed(self, name: str) -> Timestamp | None:
        """The newest HLC timestamp among the flag's gates (its wall time says since
        when the flag is as it is, e.g. fully on); None for a flag with no gate.
        A gate removed since leaves no entry, so its removal does not count."""
        stamps = [
            self._map.timestamp(k) for k in tuple(self._keys.get(name, ())) if k[1] in RULE_KINDS
        ]
        return max((ts for ts in stamps if ts is not None), default=None)

    def _state(self, name: str) -> dict[str, Any]:
        """The flag's gates and typed parts now, in the form an audit record keeps
        them."""
        return _state_of(self.flag(name))

    # -- describing ------------------------------------------------------------------

    def flag(self, name: str) -> Flag:
        """Describe one flag: every gate, its metadata, its typed parts and its
        default, with the schedules due by now applied (what it evaluates by).

        Only entries of a known shape count (see the class notes); never raises.
        """
        return flag_of_entries(name, self._entries(name), self._defaults.get(name))

    def _real_entries(self, name: str) -> dict[tuple[Any, ...], Any]:
        """The flag's entries in the map (not its audit log), valid ones only."""
        found = {}
        for key in tuple(self._keys.get(name, ())):
            if key[1] == "audit":
                continue
            value = self._map.get(key, _ABSENT)
            # The index holds known shapes only, but the value may have changed since
            # (its notification still on its way): check it again; the change path
            # counts and logs it.
            if value is not _ABSENT and _entry_problem(key, value) is None:
                found[key] = value
        return found

    def _entries(self, name: str, *, leave_out: str | None = None) -> dict[tuple[Any, ...], Any]:
        """The flag's live entries: those of the map, with its schedules that were
        due when it was last compiled applied (`flags._schedule.effective_entries`),
        but schedule ``leave_out``."""
        real = self._real_entries(name)
        due = self._due.get(name)
        if not due:
            return real
        schedules = [
            (key, value)
            for key, value in real.items()
            if key[1] == "schedule" and key[2] in due and key[2] != leave_out
        ]
        written: set[tuple[Any, ...]] = set()
        for _, schedule in schedules:
            try:
                written.update(k for k, _ in scheduled_writes(name, schedule))
            except FlagFormatError:
                continue
        stamped = {}
        for key in written:
            stamp = self._map.timestamp(key)
            if stamp is not None:  # a tombstone newer than the schedule keeps it deleted
                stamped[key] = (stamp, real.get(key, DELETED))
        view = effective_entries(stamped, schedules, MAX_WALL_MS)
        live = {key: value for key, value in real.items() if key not in written}
        for key, value in view.items():
            if _entry_problem(key, value) is None:
                live[key] = value
        return live

    def apply_schedules(self, now_ms: int | None = None) -> int | None:
        """Apply the schedules due by ``now_ms`` (default: the map's clock, see
        `transport.ReplicatedMap.wall_ms`) to what the flags evaluate by.

        Over a `transport.ReplicatedMap` a task of its node calls this at each
        schedule's time; over a `LocalMap` (tests) call it yourself.

        Returns:
            The time of the next schedule not yet due, in ms, or None when none is
            pending.
        """
        now = self._wall_ms() if now_ms is None else now_ms
        changed: set[str] = set()
        pending: int | None = None
        for name, keys in list(self._keys.items()):
            due, upcoming = self._schedules_due(name, keys, now)
            if upcoming is not None and (pending is None or upcoming < pending):
                pending = upcoming
            if due != self._due.get(name, frozenset()):
                changed.add(name)
        if changed:
            self._rebuild(changed, set(changed), now)
        return pending

    def _schedules_due(
        self, name: str, keys: Iterable[tuple[Any, ...]], now_ms: int
    ) -> tuple[frozenset[str], int | None]:
        """The ids of the flag's schedules due by ``now_ms``, and the time of its
        next pending one (None: none)."""
        due = set()
        pending = None
        for key in tuple(keys):
            if key[1] != "schedule":
                continue
            value = self._map.get(key)
            at = value.get("at_ms") if isinstance(value, dict) else None
            if type(at) is not int:
                continue
            if at <= now_ms:
                due.add(key[2])
            elif pending is None or at < pending:
                pending = at
        return frozenset(due), pending

    def _schedule_writes(
        self, name: str, keys: Iterable[tuple[Any, ...]]
    ) -> frozenset[tuple[Any, ...]]:
        """The keys the flag's schedules (due or pending) write."""
        written: set[tuple[Any, ...]] = set()
        for key in keys:
            if key[1] == "schedule":
                try:
                    written.update(k for k, _ in scheduled_writes(name, self._map.get(key)))
                except FlagFormatError:
                    continue
        return frozenset(written)

    def _keeps_tombstone(self, key: Any) -> bool:
        """Whether the map must keep ``key``'s tombstone when it collects the others:
        when a schedule writes the key. A schedule's write counts as made at its
        time, so a delete made after that time wins over it only while the delete's
        tombstone is there to compare with; once collected, the key would read as
        never written and the schedule's write would come back. Asked by the map's
        node at each collection, in its thread."""
        if type(key) is not tuple or not key:
            return False
        written = self._scheduled_keys.get(key[0])
        return written is not None and key in written

    async def _follow_schedules(self) -> None:
        """Apply each schedule at its time, for as long as the store follows its map
        (a task of the map's node: see `apply_schedules`).

        While a schedule is pending it reads the clock once a second: the clock
        (`transport.ReplicatedMap.wall_ms`) takes in the timestamps the node hears,
        so a node whose own clock is behind applies a schedule within a second of
        hearing from a node past its time. A write of a schedule wakes it at once.
        """
        while not self._closed:
            pending = self.apply_schedules()
            self.prune_schedules()
            while not self._closed:
                self._wake = wake = trio.Event()
                soon = pending is not None or bool(self._to_prune)  # a prune to retry
                with trio.move_on_after(1.0 if soon else _SCHEDULE_POLL_S):
                    await wake.wait()
                if wake.is_set() or self._to_prune:
                    break
                if pending is not None and self._wall_ms() >= pending:
                    break

    def prune_schedules(self) -> int:
        """Take out of each schedule the writes that lose to a newer entry of their
        key, and remove schedules left with none: a write of the map, not audited.

        A schedule's write counts as made at its time, so a real entry stamped later
        (a delete above all) wins over it and the write changes nothing; but a
        delete wins only while its tombstone lasts. Every node that sees both
        prunes alike (the same rewrite, whichever is kept), so once the rewrite has
        spread no node needs the tombstone, even one that collected it (a node
        following another map, say, or an older version). Over a
        `transport.ReplicatedMap` the schedules' task calls this after each change;
        a refused write (the node not ready) is tried again a second later.

        Returns:
            How many schedules were rewritten or removed.
        """
        done = 0
        for name in sorted(self._to_prune):
            sets: dict[tuple[Any, ...], Any] = {}
            deletes: list[tuple[Any, ...]] = []
            for key in sorted(k for k in tuple(self._keys.get(name, ())) if k[1] == "schedule"):
                schedule = self._map.get(key)
                try:
                    writes = scheduled_writes(name, schedule)
                except FlagFormatError:
                    continue
                stamp = schedule_timestamp(key[2], schedule["at_ms"])
                losing = set()
                for written, _ in writes:
                    real = self._map.timestamp(written)
                    if real is not None and real > stamp:
                        losing.add(written)
                if not losing:
                    continue
                kept_sets = [w for w in schedule.get("set", []) if (name, *w[:-1]) not in losing]
                kept_deletes = [w for w in schedule.get("delete", []) if (name, *w) not in losing]
                if kept_sets or kept_deletes:
                    sets[key] = {**schedule, "set": kept_sets, "delete": kept_deletes}
                else:
                    deletes.append(key)
            if sets or deletes:
                try:
                    self._map.update(sets, deletes)
                except Exception as exc:  # not ready, say: the next look tries again
                    log.info("flag %r: schedules not pruned yet: %s", name, exc)
                    continue
                done += len(sets) + len(deletes)
            self._to_prune.discard(name)
        return done

    def all(self) -> list[Flag]:
        """Every flag the cluster or the defaults know (see `names`), sorted by name."""
        return [self.flag(name) for name in sorted(self.names())]

    def names(self) -> set[str]:
        """The flags the cluster holds gates or metadata for, or this store a default
        for. A flag that only has audit entries left (deleted) is not one of them."""
        held = {
            name
            for name, keys in list(self._keys.items())
            if name != CLUSTER and any(k[1] != "audit" for k in tuple(keys))
        }
        return held | set(self._defaults)

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
        # tuple() copies the set in one C call, under the GIL: safe from any thread
        # while the node's thread changes the set.
        return any(k[1] in RULE_KINDS for k in tuple(self._keys.get(name, ())))

    def _on_change(self, keys: frozenset[Any]) -> None:
        """Index the changed keys, then rebuild the snapshot of every flag they touch.

        Nothing here raises: a malformed entry is ignored (logged, counted), and a
        failure on one key or one flag does not stop the others.
        """
        rules_changed: set[str] = set()
        described: set[str] = set()
        segments_changed: set[str] = set()
        for key in keys:
            try:
                self._index(key, rules_changed, described)
            except Exception:  # a bug, not bad data: _entry_problem is total
                self.ignored_entries += 1
                log.exception("flags: indexing map key %s failed; ignored", _key_repr(key))
            if type(key) is tuple and len(key) == 3 and key[0] == CLUSTER and key[1] == "segment":
                segments_changed.add(key[2])
        if segments_changed:
            self._segments = compile_segments(
                {name: {"conditions": conditions} for name, conditions in self.segments().items()}
            )
            # Every flag that has a rule naming a changed segment: a rule entry, a
            # schedule's rule (a due one adds it), or a default Flag's rule (no
            # entry at all). Looking costs far less than compiling every flag.
            users = {
                name
                for name, held in list(self._keys.items())
                if name != CLUSTER
                and any(
                    _names_segment(k[1], self._map.get(k), segments_changed)
                    for k in tuple(held)
                    if k[1] == "rule" or k[1] == "schedule"
                )
            }
            users.update(
                name
                for name, default in self._defaults.items()
                if isinstance(default, Flag)
                and any(_rule_names(rule, segments_changed) for rule in default.rules.values())
            )
            rules_changed |= users
            # Their answers may change: subscribers (OpenFeature's configuration-
            # changed event, the change feed) hear of them as of any change.
            described |= {name for name in users if name != CLUSTER}
        if rules_changed or described:
            self._rebuild(rules_changed, described)

    def _rebuild(
        self, rules_changed: set[str], described: set[str], now_ms: int | None = None
    ) -> None:
        """Recompile the flags in ``rules_changed`` (their due schedules taken at
        ``now_ms``, by default the map's clock), then tell subscribers of
        ``described``."""
        if rules_changed:
            scheduled = False
            for name in rules_changed:
                held = tuple(self._keys.get(name, ()))
                if any(k[1] == "schedule" for k in held):
                    if now_ms is None:
                        now_ms = self._wall_ms()
                    self._due[name] = self._schedules_due(name, held, now_ms)[0]
                    self._scheduled_keys[name] = self._schedule_writes(name, held)
                    self._to_prune.add(name)
                    scheduled = True
                else:
                    self._due.pop(name, None)
                    self._scheduled_keys.pop(name, None)
            snapshot, compiled = dict(self._snapshot), dict(self._compiled)
            for name in rules_changed:
                self._recompile(name, snapshot, compiled)
            if self._evaluations is not None:
                for name in rules_changed:
                    self._evaluations.setdefault(name, itertools.count())
            # Two reference swaps: readers see old or new of each.
            self._compiled = compiled
            self._snapshot = snapshot
            if scheduled and self._wake is not None:
                self._wake.set()  # a new schedule may be due sooner than the timer
        if described:
            changed = frozenset(described)
            for callback in list(self._subscribers):
                try:
                    callback(changed)
                except Exception:
                    log.exception("flags: subscriber %r raised", callback)

    def _index(self, key: Any, rules_changed: set[str], described: set[str]) -> None:
        """Add a changed key to the flag index, or drop it (deleted or now malformed),
        and note which flags need their rules rebuilt or their subscribers told."""
        value = self._map.get(key, _ABSENT)
        problem = None if value is _ABSENT else _entry_problem(key, value)
        if problem is not None:
            self.ignored_entries += 1
            log.warning("flags: ignoring map entry %s: %s", _key_repr(key), problem)
        if value is not _ABSENT and problem is None:
            self._keys.setdefault(key[0], set()).add(key)
        else:
            # Deleted, or malformed now: a key the index held (so of a known shape,
            # valid until now) leaves it, and its flag reads as if it were absent.
            index = self._keys.get(key[0]) if type(key) is tuple and key else None
            if index is None or key not in index:
                return  # never indexed: no flag depends on it
            index.discard(key)
            if not index:
                del self._keys[key[0]]
        name, kind = key[0], key[1]
        if name == CLUSTER:
            return
        if kind in RULE_KINDS or kind == "schedule":
            rules_changed.add(name)
        if kind in FLAG_KINDS:
            described.add(name)

    def _recompile(
        self,
        name: str,
        snapshot: dict[str, bool | Rules | _Typed],
        compiled: dict[str, CompiledFlag],
    ) -> None:
        """Put the flag's rules, as they are now, in ``snapshot`` and ``compiled``
        (or take it out of both: no entry that decides and no default)."""
        try:
            rules, flag = self._compile(name)
        except Exception:  # a bug: keep the flag's last good rules
            log.exception("flag %r: rebuilding its rules failed; kept the old", name)
            return
        if flag is None:
            snapshot.pop(name, None)
            compiled.pop(name, None)
        else:
            snapshot[name] = rules
            compiled[name] = flag

    def _compile(self, name: str) -> tuple[bool | Rules | _Typed, CompiledFlag | None]:
        entries = self._entries(name)
        if not any(key[1] in RULE_KINDS for key in entries):
            default = self._defaults.get(name)
            if default is None:
                return False, None
            if type(default) is bool:
                gate = {(name, "boolean"): default}
                return default, compile_flag(name, gate, self._segments)
            entries = flag_entries(default)
        compiled = compile_flag(name, entries, self._segments)
        if any(key[1] in _TYPED_KINDS for key in entries):
            return _Typed(compiled, self), compiled
        return _rules_of(flag_of_entries(name, entries)), compiled

    def close(self) -> None:
        """Stop following the map and applying schedules (the store keeps its last
        snapshot)."""
        self._unsubscribe()
        self._closed = True  # the schedules' task ends at its next wake (a minute at most)


@attrs.frozen
class _Change:
    """One change to one flag, as `FlagStore._apply` writes it and audits it."""

    name: str
    action: str
    target: str | None
    value: Any
    sets: dict[tuple[Any, ...], Any]
    deletes: list[tuple[Any, ...]]


def _state_of(flag: Flag) -> dict[str, Any]:
    """The gates and typed parts of ``flag``, as an audit record keeps them: the
    five gates always, the typed parts only when the flag has any (see
    `AuditEntry.state`)."""
    state: dict[str, Any] = {
        "boolean": flag.boolean,
        "actors": dict(flag.actors),
        "groups": dict(flag.groups),
        "percentage_of_actors": flag.percentage_of_actors,
        "percentage_of_time": flag.percentage_of_time,
    }
    if flag.typed:
        for field in TYPED_FIELDS:
            value = getattr(flag, field)
            state[field] = dict(value) if isinstance(value, Mapping) else value
    return state


def _flag_of_state(name: str, state: Mapping[str, Any], **metadata: Any) -> Flag:
    """The `Flag` a recorded state describes, unchecked (`check_flag` refuses a
    malformed one: None is no gate, and any other value of the wrong shape is kept
    for it to refuse)."""
    return Flag(
        name=name,
        boolean=state.get("boolean"),
        actors=_or_empty(state.get("actors")),
        groups=_or_empty(state.get("groups")),
        percentage_of_actors=state.get("percentage_of_actors"),
        percentage_of_time=state.get("percentage_of_time"),
        type=state.get("type", "boolean"),
        variants=_or_empty(state.get("variants")),
        off_variant=state.get("off_variant"),
        fallthrough=state.get("fallthrough"),
        rules=_or_empty(state.get("rules")),
        prerequisites=_or_empty(state.get("prerequisites")),
        schedules=_or_empty(state.get("schedules")),
        **metadata,
    )


def _state_after(state: dict[str, Any], change: _Change) -> dict[str, Any]:
    """``state`` (as `_state_of` makes it) once ``change`` is applied."""
    entries = flag_entries(_flag_of_state(change.name, state))
    for key in change.deletes:
        entries.pop(key, None)
    entries.update(change.sets)
    return _state_of(flag_of_entries(change.name, entries))


def _listed(items: Any, at: str, what: str) -> list[Any]:
    """``items`` as a list, or `FlagFormatError` at ``at`` when it is not a list-like
    iterable (a str or a mapping is not one)."""
    if isinstance(items, str | bytes | Mapping):
        raise FlagFormatError(at, f"a list of {what}, not {_short(items)}")
    try:
        return list(items)
    except TypeError:
        raise FlagFormatError(at, f"a list of {what}, not {_short(items)}") from None


def _served(serve: Any) -> list[str]:
    """The variants a serve (``{"variant": v}`` or ``{"split": {...}}``) names."""
    if not isinstance(serve, Mapping):
        return []
    if "variant" in serve:
        return [serve["variant"]]
    split = serve.get("split")
    return [v for v, w in split.items() if w] if isinstance(split, Mapping) else []


def _check_served(flag: Flag, sets: Mapping[tuple[Any, ...], Any]) -> None:
    """Refuse a change that serves a variant ``flag`` (as it would be after it) does
    not have: `FlagFormatError` with the pointer of the field. Only what the change
    writes is judged: removing a variant something serves is allowed (a step of
    changing a flag's type, say; those answers are ERROR until changed), and a flag
    left so by concurrent edits elsewhere can still be repaired one part at a
    time."""
    variants = set(flag.variants) or (set(BOOLEAN_VARIANTS) if flag.type == "boolean" else set())
    for key, value in sets.items():
        kind = key[1]
        if kind == "off_variant":
            named = [("/off_variant", value)]
        elif kind == "fallthrough":
            named = [("/fallthrough", v) for v in _served(value)]
        elif kind == "rule":
            at = "/rules" + pointer_part(key[2]) + "/serve"
            named = [(at, v) for v in _served(value.get("serve"))]
        else:
            continue
        for at, variant in named:
            if variant not in variants:
                raise FlagFormatError(
                    at,
                    f"flag {flag.name} has no variant {variant!r} "
                    f"(it has {', '.join(sorted(variants)) or 'none'})",
                )


def _rule_names(rule: Any, segments: AbstractSet[str]) -> bool:
    """Whether ``rule`` (of any shape) names one of ``segments``."""
    named = rule.get("segments") if isinstance(rule, Mapping) else None
    return isinstance(named, list) and any(
        type(segment) is str and segment in segments for segment in named
    )


def _names_segment(kind: str, value: Any, segments: AbstractSet[str]) -> bool:
    """Whether an entry of ``kind`` (a rule, or a schedule whose writes may set
    rules) names one of ``segments``: its flag's rules use them."""
    if kind == "rule":
        return _rule_names(value, segments)
    writes = value.get("set") if isinstance(value, Mapping) else None
    return isinstance(writes, list) and any(
        isinstance(write, list)
        and len(write) == 3
        and write[0] == "rule"
        and _rule_names(write[2], segments)
        for write in writes
    )


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (True is not 1, 1 is not 1.0)."""
    return type(a) is type(b) and a == b


def _or_empty(gates: Any) -> Any:
    """A recorded state's actor or group gates: ``{}`` for None, else as recorded (so
    that `check_flag` refuses a value of another shape, ``0`` or ``""`` too)."""
    return {} if gates is None else gates


def _bounded(state: dict[str, Any]) -> dict[str, Any] | None:
    """``state``, or None when its encoding is over `MAX_AUDIT_STATE_BYTES`."""
    try:
        size = len(cbor2.dumps(state, canonical=True))
    except (cbor2.CBOREncodeError, TypeError, ValueError):  # a shape the map refuses
        return None
    return state if size <= MAX_AUDIT_STATE_BYTES else None


def _rules_of(flag: Flag) -> bool | Rules:
    return Rules(
        name=flag.name,
        boolean=flag.boolean,
        actors=dict(flag.actors),
        groups=dict(flag.groups),
        percentage_of_actors=flag.percentage_of_actors,
        percentage_of_time=flag.percentage_of_time,
    ).simplify()


class _Typed:
    """What `FlagStore.enabled` reads for a flag with typed parts (variants, rules,
    prerequisites...): `evaluate` with no attributes. A boolean flag is on when it
    serves True; a flag of another type is never "enabled"."""

    __slots__ = ("_flag", "_store")

    def __init__(self, flag: CompiledFlag, store: FlagStore) -> None:
        self._flag = flag
        self._store = store

    def enabled(self, actor: str | None, groups: Iterable[str]) -> bool:
        got = evaluate_for(self._flag, actor, groups, _NO_ATTRIBUTES, False, self._store._compiled)
        return got.value is True

    def explain(self, actor: str | None, groups: Iterable[str]) -> tuple[bool, str]:
        got = evaluate_for(self._flag, actor, groups, _NO_ATTRIBUTES, False, self._store._compiled)
        return got.value is True, got.detail or got.reason.lower()


class _CountingFlagStore(FlagStore):
    """A `FlagStore` made with ``count_evaluations=True``: its checks count. A class of
    its own, so that the default `FlagStore.enabled` carries no test for counting."""

    __slots__ = ()

    def enabled(self, name: str, actor: str | None = None, groups: Iterable[str] = ()) -> bool:
        # FlagStore.enabled, after one increment (not a call to it: 40 ns more).
        next(self._evaluations.get(name, self._unknown_evaluations))  # type: ignore[union-attr]
        rule = self._snapshot.get(name, False)
        if rule is True or rule is False:
            return rule
        try:
            return rule.enabled(actor, groups)
        except Exception:
            log.exception("flag %r: evaluation failed; returning False", name)
            return False

    def explain(
        self, name: str, actor: str | None = None, groups: Iterable[str] = ()
    ) -> tuple[bool, str]:
        next(self._evaluations.get(name, self._unknown_evaluations))  # type: ignore[union-attr]
        return super().explain(name, actor, groups)

    def evaluate(
        self,
        name: str,
        default: Any,
        *,
        actor: str | None = None,
        groups: Iterable[str] = (),
        attributes: Mapping[str, Any] | None = None,
    ) -> Evaluation:
        next(self._evaluations.get(name, self._unknown_evaluations))  # type: ignore[union-attr]
        return super().evaluate(name, default, actor=actor, groups=groups, attributes=attributes)
