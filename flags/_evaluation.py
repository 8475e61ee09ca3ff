"""Evaluating a flag: typed variants, rules, segments and prerequisites over the gates.

Pure: no map, no I/O, no clock, no lock. `compile_flag` turns a flag's map entries
into an immutable `CompiledFlag` once per change; `evaluate` reads it per check and
parses nothing.

**Map entries of one flag** ``name``, each its own entry, so that concurrent edits of
different parts on partitioned nodes all survive the heal (the gates' are in
`flags._store`):

- ``(name, "type")``: one of `flags._variants.TYPES`; absent: ``"boolean"``.
- ``(name, "variant", v)``: the value of variant ``v`` (a name by the name grammar),
  of the flag's type (``"object"``: a JSON object). A boolean flag that defines no
  variant has ``"true"`` (True) and ``"false"`` (False).
- ``(name, "off_variant")``: ``v``, served when the gates say off.
- ``(name, "fallthrough")``: ``{"variant": v}`` or ``{"split": {v: weight}}``, served
  when the gates say on and no rule matches.
- ``(name, "rule", rule_id)``: ``{"position": str, "conditions": [...], "segments":
  [seg, ...], "serve": {"variant": v} | {"split": {...}}}`` (`flags._targeting.
  check_rule`). Rules go in ``(position, rule_id)`` order, the same on every node.
  Two nodes editing different rules both keep their edit; two nodes editing the
  same rule: the later HLC write of the whole rule wins (LWW), the other is lost.
- ``(name, "prereq", other)``: ``{"variants": [v, ...]}``: flag ``other``, evaluated
  with the same context, must give one of these variants.
- ``("", "segment", seg)``: ``{"conditions": [...]}``, a named segment any flag's
  rules can require (flag names are never empty).
- ``(name, "schedule", sched_id)``: a change that takes effect at a time
  (`flags._schedule`); applied before compiling.

**Precedence** (`evaluate`); the first row that decides, decides:

==  ===========================================  ==============================  ===============
#   when                                         value (variant)                 reason, detail
==  ===========================================  ==============================  ===============
1   a prerequisite, in name order, is unknown,   ``default``                     ERROR,
    in a cycle, or errs                                                          "prerequisite
                                                                                 <name>: ..."
1   a prerequisite gives another variant         the off variant, else           DISABLED,
                                                 ``default``                     "prerequisite
                                                                                 <name>"
2   the gates say off (`flags._rules`: actor,    the off variant; a boolean      DISABLED,
    then groups with deny winning, boolean,      flag without variants: False    the gate
    percentage of actors, percentage of time)    ("false"); else ``default``
3   the first rule, in (position, id) order,     its variant                     TARGETING_MATCH,
    whose conditions and segments all hold                                       the rule id
                                                 its split's variant             SPLIT, rule id
4   the fallthrough                              its variant                     DEFAULT, the gate
                                                 its split's variant             SPLIT, the gate
4   no fallthrough, boolean flag                 True ("true" if implicit)       TARGETING_MATCH
                                                                                 if the actor or
                                                                                 a group gate
                                                                                 decided, else
                                                                                 DEFAULT; the gate
4   no fallthrough, typed flag                   ``default``                     DEFAULT, the gate
==  ===========================================  ==============================  ===============

Serving a variant that does not exist (deleted concurrently) or whose value is not
of the flag's type gives ``default`` with reason ERROR, and so does a malformed rule
when evaluation reaches it. A boolean flag with no rules, variants or prerequisites
evaluates exactly as `flags._rules.Rules` does. A flag is on only when its gates
say so: switch a typed flag on with the boolean gate (LaunchDarkly's targeting
toggle), or for some actors and groups only.

**Speed** (issue 17: 3 rules of 3 conditions and a split within 2 us; measured by
benchmarks/bench_targeting.py, 2-core x86 VM, CPython 3.11). Each compiled split
remembers its winner per actor (``_Split.chosen``, at most `SPLIT_CACHE_SIZE`
entries, no lock): an actor seen since the flag's last change costs about 1.1 us
there (was 3.0), the split answered by a dict lookup; an actor not seen costs the
rules plus `flags._variants.choose`, about 3.3 us for 2 variants (the cache's lookup
and store add about 0.15 us to the 3.2 a miss cost before it), and the contract's
SHA-256 and per-variant mixing alone take about 1.7 us of that in CPython (see
`flags._variants`). The cache lives and dies with the compiled flag, so a change of
weights or variants starts from empty; its answers are `choose`'s, never different.
The conditions (`flags._targeting`, about 0.6 us of the 1.1) were left as they are:
fusing an attribute's read with its test would save one call, about 0.05 us, per
condition other than ``in``/``not_in``. `evaluate` never raises and takes no lock.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from ._rules import ACTOR, BOOLEAN, GROUP, NO_GATE, PERCENTAGE_OF_ACTORS, PERCENTAGE_OF_TIME
from ._schema import FlagFormatError, _short, valid_name
from ._targeting import NEVER, Predicate, check_rule, check_segment, check_serve, compile_conditions
from ._variants import (
    BOOLEAN_VARIANTS,
    FALLTHROUGH,
    TYPES,
    choose,
    coerce_value,
    split_arm,
    split_salt,
)

TARGETING_MATCH: Final = "TARGETING_MATCH"
SPLIT: Final = "SPLIT"
DEFAULT: Final = "DEFAULT"
DISABLED: Final = "DISABLED"
ERROR: Final = "ERROR"
#: The longest chain of prerequisites evaluated; a longer one is an ERROR.
MAX_PREREQUISITE_DEPTH = 32
_ON_GATES = (ACTOR, GROUP, BOOLEAN, PERCENTAGE_OF_ACTORS, PERCENTAGE_OF_TIME)
_OFF_GATES = (*_ON_GATES, NO_GATE)
_sha256 = hashlib.sha256
_random = random.random  # percentage of time, as flags._rules: no seeded generator needed


def _groups(value: Iterable[str]) -> frozenset[str]:
    return value if isinstance(value, frozenset) else frozenset(value)


@attrs.frozen
class Context:
    """What a flag is evaluated for.

    Attributes:
        actor: the targeting key (a user id, say), or None.
        groups: the caller's groups (any iterable of str; kept as a frozenset).
        attributes: ``{name: value}`` the conditions read (str, numbers, bools;
            others never match).
    """

    actor: str | None = None
    groups: frozenset[str] = attrs.field(default=frozenset(), converter=_groups)
    attributes: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Evaluation:
    """The answer of `evaluate`.

    Attributes:
        value: the value served (shared: treat an object value as immutable).
        variant: the variant's name, or None when ``default`` was served.
        reason: ``"TARGETING_MATCH"``, ``"SPLIT"``, ``"DEFAULT"``, ``"DISABLED"`` or
            ``"ERROR"``, as OpenFeature names them.
        detail: the deciding gate, the rule id, ``"prerequisite <name>"``, or what
            went wrong.
    """

    value: Any
    variant: str | None
    reason: str
    detail: str | None = None


#: What a serve or off state resolves to: a fixed answer, the error to report with
#: the caller's default, or None for the caller's default with the row's reason.
_Result = Evaluation | str | None


#: The most actors a split remembers its choice for (see `_Split`).
SPLIT_CACHE_SIZE = 4096


@attrs.frozen
class _Split:
    """A compiled ``{"split": ...}``: ``results[i]`` is the answer when ``arms[i]``
    wins (`flags._variants.choose`, over ``salt`` and ``arms``).

    Attributes:
        chosen: ``{actor: index}``, the winners already computed: the same actor
            always gets the same index (the contract is a pure function of the actor,
            the salt and the arms, all fixed for this object), so a hit answers
            exactly as `choose` would, without its SHA-256 and mixing (about 1.6 us
            for 2 variants; a hit costs a dict lookup, about 40 ns). A plain dict,
            no lock: a lookup and a store are each atomic under the GIL, and two
            threads that miss on one actor both compute and store the same index.
            Bounded: cleared when it would grow past `SPLIT_CACHE_SIZE` entries, so
            it holds at most that many plus one per thread storing at the same
            moment; 4,096 entries are about 100 KiB of table (``sys.getsizeof``,
            CPython 3.11) plus the actor strings it keeps alive (about 60 bytes each
            for short ids): about 350 KiB per split at most, for as long as this
            compiled flag is the current one. Only exact str actors
            are remembered (a str subclass could redefine equality).
    """

    salt: bytes
    arms: tuple[tuple[int, float], ...]
    results: tuple[Evaluation | str, ...]
    chosen: dict[str, int] = attrs.field(factory=dict, eq=False, repr=False)

    def pick(self, actor: str | None) -> Evaluation | str:
        """``results[choose(actor, salt, arms)]``, from `chosen` when it holds
        ``actor``. Never takes a lock."""
        if type(actor) is not str:  # None (a random pick), or a str subclass
            return self.results[choose(actor, self.salt, self.arms)]
        chosen = self.chosen
        index = chosen.get(actor)
        if index is None:
            index = choose(actor, self.salt, self.arms)
            if len(chosen) >= SPLIT_CACHE_SIZE:
                chosen.clear()  # cheaper than tracking recency; refills within a few
            chosen[actor] = index
        return self.results[index]


#: What a rule or the fallthrough serves, compiled: a fixed answer or error, or a split.
_Served = Evaluation | str | _Split


@attrs.frozen
class _Rule:
    id: str
    position: str
    predicates: tuple[Predicate, ...]
    serve: _Served


@attrs.frozen
class _Outcome:
    """One way a flag's gates can decide, built once at compile time.

    Attributes:
        on: whether the gates say on.
        why: the deciding gate (`flags._rules`' names).
        reason: the reason when ``result`` is None: DEFAULT when on, DISABLED when off.
        result: when off, the off variant's answer; when on, the fallthrough's.
    """

    on: bool
    why: str
    reason: str
    result: _Result | _Split


@attrs.frozen
class _Gates:
    """A flag's gates, compiled for `evaluate`: `decide` takes the steps of
    `flags._rules.Rules.enabled` (the same SHA-256 score, compared as an integer) and
    answers with a prebuilt `_Outcome`, so that nothing is allocated.

    Attributes:
        actors, groups: ``{actor or group: enabled}``.
        boolean: the boolean gate, or None.
        salt: the flag name's UTF-8, hashed after the actor.
        threshold: the percentage of actors times 65,536 (a bound on the 16-bit
            score, exact), or None.
        percentage_of_time: in [0, 1], or None.
        by_actor, by_group, by_percentage_of_actors, by_percentage_of_time: the
            ``(off, on)`` outcomes of that gate, indexed by its verdict (a bool).
        boolean_on: the outcome when the boolean gate is set to on.
        otherwise: the outcome when no gate decides (off, by the boolean gate when
            it is set to off, else by no gate).
    """

    actors: Mapping[str, bool]
    groups: Mapping[str, bool]
    boolean: bool | None
    salt: bytes
    threshold: float | None
    percentage_of_time: float | None
    by_actor: tuple[_Outcome, _Outcome]
    by_group: tuple[_Outcome, _Outcome]
    by_percentage_of_actors: tuple[_Outcome, _Outcome]
    by_percentage_of_time: tuple[_Outcome, _Outcome]
    boolean_on: _Outcome
    otherwise: _Outcome

    @property
    def constant(self) -> bool:
        """True when only the boolean gate is set: the outcome is fixed."""
        return (
            not self.actors
            and not self.groups
            and self.threshold is None
            and self.percentage_of_time is None
        )

    def decide(self, actor: str | None, groups: frozenset[str]) -> _Outcome:
        """The outcome for ``actor`` in ``groups``, by the precedence of
        `flags._rules` (actor, groups with deny winning, boolean, percentages)."""
        if actor is not None and self.actors:
            verdict = self.actors.get(actor)
            if verdict is not None:
                return self.by_actor[verdict]
        gates = self.groups
        if gates:
            enabled = False
            for group in groups:
                verdict = gates.get(group)
                if verdict is not None:
                    if not verdict:
                        return self.by_group[False]  # a deny in any group denies
                    enabled = True
            if enabled:
                return self.by_group[True]
        if self.boolean:
            return self.boolean_on
        threshold = self.threshold
        if actor is not None and threshold is not None:
            digest = _sha256(actor.encode() + self.salt).digest()  # encode(): UTF-8
            return self.by_percentage_of_actors[(digest[0] << 8 | digest[1]) < threshold]
        if self.percentage_of_time is not None:
            return self.by_percentage_of_time[_random() < self.percentage_of_time]
        return self.otherwise


@attrs.frozen
class CompiledFlag:
    """One flag, compiled for `evaluate` (internal, immutable).

    Attributes:
        name: the flag's name.
        type: its value type, one of `flags._variants.TYPES`.
        variants: ``{variant: value}`` of the variants of the right type.
        constant: the answer when it does not depend on the context (no prerequisite,
            no rule, gates that only a boolean gate sets), else None.
    """

    name: str
    type: str
    variants: Mapping[str, Any]
    gates: _Gates
    prereqs: tuple[tuple[str, frozenset[str] | None], ...]
    prereq_off: Mapping[str, _Result]
    rules: tuple[_Rule, ...]
    constant: Evaluation | None


def _variant_result(
    flag: str,
    kind: str,
    values: Mapping[str, Any],
    problems: Mapping[str, str],
    variant: str,
    reason: str,
    detail: str,
) -> Evaluation | str:
    if variant in values:
        return Evaluation(values[variant], variant, reason, detail)
    if variant in problems:
        return f"variant {variant}: {problems[variant]}"
    return f"variant {variant}: no such variant of {kind} flag {flag}"


def _compile_serve(
    flag: str,
    kind: str,
    values: Mapping[str, Any],
    problems: Mapping[str, str],
    serve: Mapping[str, Any],
    salt: str,
    fixed_reason: str,
    detail: str,
) -> _Served:
    if "variant" in serve:
        return _variant_result(flag, kind, values, problems, serve["variant"], fixed_reason, detail)
    arms = sorted((v, w) for v, w in serve["split"].items() if w > 0)
    return _Split(
        split_salt(flag, salt),
        tuple(split_arm(v, w) for v, w in arms),
        tuple(_variant_result(flag, kind, values, problems, v, SPLIT, detail) for v, _ in arms),
    )


def compile_segments(raw: Mapping[str, Any]) -> dict[str, tuple[Predicate, ...]]:
    """Compile the segments, ``{name: {"conditions": [...]}}`` from the
    ``("", "segment", name)`` entries. Malformed ones are left out: a rule that
    requires one never matches, as for an unknown segment. Never raises."""
    compiled = {}
    for name, segment in raw.items():
        try:
            compiled[name] = compile_conditions(check_segment(segment)["conditions"])
        except (FlagFormatError, TypeError):
            continue
    return compiled


def compile_flag(
    name: str,
    entries: Mapping[tuple[Any, ...], Any],
    segments: Mapping[str, tuple[Predicate, ...]] | None = None,
) -> CompiledFlag:
    """Compile a flag from its live map entries.

    Args:
        name: the flag's name.
        entries: ``{key: value}`` of the flag's entries, keys ``(name, kind, ...)``
            as in the module notes and `flags._store` (schedules already applied by
            `flags._schedule.effective_entries`). Entries of other flags, of unknown
            kinds, or malformed are ignored or compiled to an ERROR answer where
            they are reached; never raises for bad entry values.
        segments: `compile_segments` of the cluster's segments.

    Returns:
        The `CompiledFlag`.
    """
    segments = segments or {}
    kind = entries.get((name, "type"), "boolean")
    if kind not in TYPES:
        kind = "boolean"  # an unknown type: every variant is then an ERROR to serve
        bad_type = f"unknown type {_short(entries.get((name, 'type')))}"
    else:
        bad_type = ""
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    actors: dict[str, bool] = {}
    groups: dict[str, bool] = {}
    gates: dict[str, Any] = {}
    rules: list[_Rule] = []
    prereqs: list[tuple[str, frozenset[str] | None]] = []
    raw_rules: list[tuple[str, Any]] = []
    for key, value in entries.items():
        if type(key) is not tuple or len(key) < 2 or key[0] != name:
            continue
        part = key[1]
        if len(key) == 3 and part == "variant" and valid_name(key[2]):
            ok, served = coerce_value(kind, value)
            if ok and not bad_type:
                values[key[2]] = served
            else:
                problems[key[2]] = bad_type or f"{_short(value)} is not a {kind}"
        elif len(key) == 3 and (part == "actor" or part == "group") and type(value) is bool:
            (actors if part == "actor" else groups)[key[2]] = value
        elif len(key) == 2 and part == "boolean" and type(value) is bool:
            gates["boolean"] = value
        elif len(key) == 2 and part in ("percentage_of_actors", "percentage_of_time"):
            if type(value) in (int, float) and 0 <= value <= 1:
                gates[part] = float(value)
        elif len(key) == 3 and part == "rule" and type(key[2]) is str:
            raw_rules.append((key[2], value))
        elif len(key) == 3 and part == "prereq" and type(key[2]) is str:
            allowed = value.get("variants") if isinstance(value, Mapping) else None
            ok = isinstance(allowed, list) and all(type(v) is str for v in allowed)
            prereqs.append((key[2], frozenset(allowed) if ok else None))  # type: ignore[arg-type]
    if kind == "boolean" and not values and not problems and not bad_type:
        values = dict(BOOLEAN_VARIANTS)
    implicit = values == BOOLEAN_VARIANTS and kind == "boolean"

    off_variant = entries.get((name, "off_variant"))
    if off_variant is None and implicit:
        off_variant = "false"

    def off_result(detail: str) -> _Result:
        if off_variant is None:
            return None
        if type(off_variant) is not str:
            return f"off_variant {_short(off_variant)} is not a variant name"
        return _variant_result(name, kind, values, problems, off_variant, DISABLED, detail)

    off = {gate: off_result(gate) for gate in _OFF_GATES}
    prereqs.sort(key=lambda p: p[0])
    prereq_off = {other: off_result(f"prerequisite {other}") for other, _ in prereqs}

    for rule_id, raw in raw_rules:
        try:
            rule = check_rule(raw)
        except FlagFormatError as exc:
            position = raw.get("position") if isinstance(raw, Mapping) else None
            rules.append(
                _Rule(
                    rule_id,
                    position if type(position) is str else "",
                    (),
                    f"rule {rule_id}: malformed: {exc}",
                )
            )
            continue
        predicates = compile_conditions(rule["conditions"])
        for segment in rule["segments"]:
            predicates += segments.get(segment, (NEVER,))
        serve = _compile_serve(
            name, kind, values, problems, rule["serve"], rule_id, TARGETING_MATCH, rule_id
        )
        rules.append(_Rule(rule_id, rule["position"], predicates, serve))
    rules.sort(key=lambda r: (r.position, r.id))

    fallthrough: dict[str, _Result | _Split] = {}
    raw_fallthrough = entries.get((name, "fallthrough"))
    for gate in _ON_GATES:
        if raw_fallthrough is not None:
            try:
                checked = check_serve(raw_fallthrough)
            except FlagFormatError as exc:
                fallthrough[gate] = f"fallthrough: malformed: {exc}"
                continue
            fallthrough[gate] = _compile_serve(
                name, kind, values, problems, checked, FALLTHROUGH, DEFAULT, gate
            )
        elif kind == "boolean":
            reason = TARGETING_MATCH if gate in (ACTOR, GROUP) else DEFAULT
            fallthrough[gate] = Evaluation(True, "true" if implicit else None, reason, gate)
        else:
            fallthrough[gate] = None

    ons = {gate: _Outcome(True, gate, DEFAULT, fallthrough[gate]) for gate in _ON_GATES}
    offs = {gate: _Outcome(False, gate, DISABLED, off[gate]) for gate in _OFF_GATES}
    ratio = gates.get("percentage_of_actors")
    compiled_gates = _Gates(
        actors=actors,
        groups=groups,
        boolean=gates.get("boolean"),
        salt=name.encode("utf-8"),
        threshold=None if ratio is None else ratio * 65536,
        percentage_of_time=gates.get("percentage_of_time"),
        by_actor=(offs[ACTOR], ons[ACTOR]),
        by_group=(offs[GROUP], ons[GROUP]),
        by_percentage_of_actors=(offs[PERCENTAGE_OF_ACTORS], ons[PERCENTAGE_OF_ACTORS]),
        by_percentage_of_time=(offs[PERCENTAGE_OF_TIME], ons[PERCENTAGE_OF_TIME]),
        boolean_on=ons[BOOLEAN],
        otherwise=offs[BOOLEAN if "boolean" in gates else NO_GATE],
    )
    constant = None
    if not prereqs and not rules and compiled_gates.constant:
        result = compiled_gates.decide(None, frozenset()).result
        if isinstance(result, Evaluation):
            constant = result
    return CompiledFlag(
        name=name,
        type=kind,
        variants=values,
        gates=compiled_gates,
        prereqs=tuple(prereqs),
        prereq_off=prereq_off,
        rules=tuple(rules),
        constant=constant,
    )


_NO_FLAGS: Mapping[str, CompiledFlag] = {}


def evaluate(
    flag: CompiledFlag,
    context: Context,
    default: Any,
    flags: Mapping[str, CompiledFlag] = _NO_FLAGS,
) -> Evaluation:
    """Evaluate ``flag`` for ``context``, by the precedence table of the module notes.

    Args:
        flag: the compiled flag.
        context: the actor, groups and attributes.
        default: the caller's default value, served on errors and where the table
            says so.
        flags: ``{name: CompiledFlag}``, the snapshot prerequisites are looked up in.

    Returns:
        The `Evaluation`. Never raises (a failure is reason ERROR, detail the
        exception) and takes no lock.
    """
    try:
        return _evaluate(
            flag, context.actor, context.groups, context.attributes, default, flags, (), None
        )
    except Exception as exc:  # a bug, or an attributes Mapping that raised
        return Evaluation(default, None, ERROR, f"{type(exc).__name__}: {_short(exc)}")


def evaluate_for(
    flag: CompiledFlag,
    actor: str | None,
    groups: Iterable[str],
    attributes: Mapping[str, Any],
    default: Any,
    flags: Mapping[str, CompiledFlag] = _NO_FLAGS,
) -> Evaluation:
    """`evaluate` for the parts of a `Context`, without making one (about 0.3 us
    less per call): ``groups`` any iterable of str. Never raises."""
    try:
        if type(groups) is not frozenset:
            groups = frozenset(groups) if groups else _NO_GROUPS
        return _evaluate(flag, actor, groups, attributes, default, flags, (), None)
    except Exception as exc:  # a bug, groups not iterable, or a Mapping that raised
        return Evaluation(default, None, ERROR, f"{type(exc).__name__}: {_short(exc)}")


_NO_GROUPS: frozenset[str] = frozenset()


def _evaluate(
    flag: CompiledFlag,
    actor: str | None,
    groups: frozenset[str],
    attributes: Mapping[str, Any],
    default: Any,
    flags: Mapping[str, CompiledFlag],
    chain: tuple[str, ...],
    seen: dict[tuple[str, int], Evaluation] | None,
) -> Evaluation:
    # `evaluate`, for a flag reached through the prerequisites of those in ``chain``;
    # ``seen``: the answers of prerequisites already evaluated (see `_prerequisites`),
    # None until the first flag with prerequisites makes it.
    constant = flag.constant
    if constant is not None:
        return constant
    if flag.prereqs:
        unmet = _prerequisites(
            flag,
            actor,
            groups,
            attributes,
            default,
            flags,
            (*chain, flag.name),
            {} if seen is None else seen,
        )
        if unmet is not None:
            return unmet
    outcome = flag.gates.decide(actor, groups)
    if outcome.on and flag.rules:
        for rule in flag.rules:
            for holds in rule.predicates:
                if not holds(actor, groups, attributes):
                    break
            else:
                serve = rule.serve
                if type(serve) is _Split:
                    serve = serve.pick(actor)
                if type(serve) is Evaluation:  # the usual case, prebuilt
                    return serve
                return _resolve(serve, default, TARGETING_MATCH, rule.id, actor)
    result = outcome.result
    if type(result) is Evaluation:  # the usual case, prebuilt
        return result
    return _resolve(result, default, outcome.reason, outcome.why, actor)  # a split, say


def _prerequisites(
    flag: CompiledFlag,
    actor: str | None,
    groups: frozenset[str],
    attributes: Mapping[str, Any],
    default: Any,
    flags: Mapping[str, CompiledFlag],
    chain: tuple[str, ...],
    seen: dict[tuple[str, int], Evaluation],
) -> Evaluation | None:
    # Row 1 of the table: the answer when a prerequisite is unmet or errs, else None.
    # ``chain`` ends with ``flag``'s name. A prerequisite reached by several paths
    # (a diamond: a requires b and c, both require d) is evaluated once per depth,
    # not once per path, which is exponential in the depth: ``seen`` keeps each
    # answer that is not an ERROR by ``(flag, depth)`` for the rest of this
    # evaluation. An ERROR is not kept, and needs not be: it ends the evaluation.
    # Without a cycle the answer at a depth does not depend on the path; with one,
    # which paths the evaluation takes is still the same on every node.
    for other, allowed in flag.prereqs:
        if allowed is None:
            return Evaluation(default, None, ERROR, f"prerequisite {other}: malformed entry")
        if other in chain:
            cycle = " -> ".join((*chain[chain.index(other) :], other))
            return Evaluation(default, None, ERROR, f"prerequisite {other}: cycle {cycle}")
        if len(chain) >= MAX_PREREQUISITE_DEPTH:
            return Evaluation(default, None, ERROR, f"prerequisite {other}: chain too deep")
        target = flags.get(other)
        if target is None:
            return Evaluation(default, None, ERROR, f"prerequisite {other}: unknown flag")
        depth = len(chain)
        got = seen.get((other, depth))
        if got is None:
            got = _evaluate(target, actor, groups, attributes, None, flags, chain, seen)
            if got.reason != ERROR:
                seen[(other, depth)] = got
        if got.reason == ERROR:
            return Evaluation(default, None, ERROR, f"prerequisite {other}: {got.detail}")
        if got.variant not in allowed:
            return _resolve(
                flag.prereq_off[other], default, DISABLED, f"prerequisite {other}", actor
            )
    return None


def _resolve(
    result: _Result | _Split, default: Any, reason: str, detail: str, actor: str | None
) -> Evaluation:
    # The answer of a compiled serve or off state (see `_Result`).
    if isinstance(result, _Split):
        result = result.pick(actor)
    if isinstance(result, Evaluation):
        return result
    if result is None:
        return Evaluation(default, None, reason, detail)
    return Evaluation(default, None, ERROR, result)


def prerequisite_cycle(
    prereqs: Mapping[str, Iterable[str]], adding: tuple[str, str]
) -> list[str] | None:
    """The cycle that the prerequisite edge ``adding`` would close, for a writer's error.

    Args:
        prereqs: ``{flag: the flags it requires}``, as the cluster holds them.
        adding: ``(flag, other)``: ``flag`` is to require ``other``.

    Returns:
        The shortest cycle through the new edge, as ``[flag, other, ..., flag]``
        (``[flag, flag]`` when a flag would require itself), or None when the edge
        closes none. Breadth first over names in sorted order: the same answer on
        every node.
    """
    start, target = adding
    if start == target:
        return [start, start]
    parent: dict[str, str | None] = {target: None}
    frontier = [target]
    while frontier:
        following = []
        for name in frontier:
            for nxt in sorted(prereqs.get(name, ())):
                if nxt in parent:
                    continue
                parent[nxt] = name
                if nxt == start:
                    path = [start]
                    step: str | None = name
                    while step is not None:
                        path.append(step)
                        step = parent[step]
                    return [start, *reversed(path[1:]), start]
                following.append(nxt)
        frontier = following
    return None
