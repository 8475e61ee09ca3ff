"""The typed-flag evaluation core (issue 17), per evaluation, in one process.

- a boolean flag with an actor gate and a percentage of actors: today's
  ``Rules.enabled`` beside ``evaluate`` of the same flag compiled by ``compile_flag``;
- a string flag with 3 rules of 3 conditions each (the context matches the third)
  serving a split of 2 variants (issue 17's target: <= 2 us): one actor again and
  again (the split's per-actor cache answers), and a new actor each time (20,000
  actors in turn, more than the cache holds: every split is computed); and that
  split alone (``flags._variants.choose``: one SHA-256, then per variant the mixing);
- a flag behind a chain of 2 prerequisites;
- the 3 x 3 rules' string flag in a `FlagStore`, for one actor: ``FlagStore.evaluate``,
  our OpenFeature provider (``ChorusProvider.resolve_string_details``) called
  directly, and the provider through the OpenFeature SDK client
  (``get_string_value``), each with its ratio to ``evaluate``: what the store, the
  provider and the SDK add;
- the same 3 rules and split in two peers, when installed: Unleash's Python client
  (``UnleashClient.get_variant``, bootstrapped offline as in bench_flags.py) and
  OpenFeature's ``InMemoryProvider`` with a ``context_evaluator`` written in plain
  Python, through the SDK client (``get_string_value``).

Medians of repeats in ns per evaluation, and each peer's ratio to ``evaluate`` (one
actor, and a new actor each time); JSON in benchmarks/results/targeting.json (or
``--json``, as run_all.py passes). Run:
``PYTHONPATH=. python benchmarks/bench_targeting.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import itertools
import logging
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks._report import report
from benchmarks.bench_flags import per_call_ns
from flags._evaluation import Context, compile_flag, compile_segments, evaluate
from flags._rules import Rules
from flags._variants import choose, split_arm, split_salt

RESULTS = Path(__file__).parent / "results" / "targeting.json"


def rule(position: str, conditions: list[dict[str, Any]], serve: dict[str, Any]) -> dict[str, Any]:
    return {"position": position, "conditions": conditions, "segments": [], "serve": serve}


def three_by_three() -> dict[tuple[Any, ...], Any]:
    def cond(attribute: str, op: str, *values: Any) -> dict[str, Any]:
        return {"attribute": attribute, "op": op, "values": list(values)}

    entries: dict[tuple[Any, ...], Any] = {
        ("f", "type"): "string",
        ("f", "boolean"): True,
        ("f", "variant", "control"): "blue",
        ("f", "variant", "treatment"): "green",
        ("f", "fallthrough"): {"variant": "control"},
    }
    entries[("f", "rule", "r1")] = rule(
        "A",
        [cond("country", "in", "fr", "de"), cond("plan", "in", "pro"), cond("age", "gte", 18)],
        {"variant": "treatment"},
    )
    entries[("f", "rule", "r2")] = rule(
        "B",
        [
            cond("email", "ends_with", "@example.com"),
            cond("age", "lt", 30),
            cond("version", "semver_gte", "2.0.0"),
        ],
        {"variant": "control"},
    )
    entries[("f", "rule", "r3")] = rule(
        "C",
        [
            cond("country", "in", "us", "ca"),
            cond("plan", "in", "pro", "team"),
            cond("version", "semver_gte", "1.4.0"),
        ],
        {"split": {"control": 5000, "treatment": 5000}},
    )
    return entries


#: The 3 x 3 rules' context, as chorus, Unleash and OpenFeature take it.
ATTRIBUTES: dict[str, Any] = {
    "country": "us",
    "plan": "pro",
    "age": 41,
    "email": "x@y.org",
    "version": "1.5.2",
}


def unleash_three_by_three() -> Callable[[], object] | None:
    """Unleash's client serving `three_by_three`: 3 strategies of 3 constraints each,
    in order, the third with a 50/50 strategy variant, sticky by ``userId``; None
    when UnleashClient is not installed.

    The toggle is the client API's feature JSON, bootstrapped offline as
    bench_flags.py's ``unleash_rollout_check`` does. Sources: the constraint schema
    of unleash-server 7 (``contextName``, ``operator``, ``values`` or ``value``,
    ``inverted``; operators IN, STR_ENDS_WITH, NUM_GTE, NUM_LT, SEMVER_LT among
    them, and no SEMVER_GTE, so ``>= v`` is an inverted SEMVER_LT), and Unleash's
    "Strategy variants" reference (docs.getunleash.io/reference/strategy-variants:
    variants on a flexibleRollout strategy, weights summing to 1,000 in the API).
    ``get_variant(name, context)`` returns the variant as a dict; custom context
    fields go under ``properties``, as strings (UnleashClient 6.9, its
    ``clients/unleash_client.py``).
    """
    try:
        # import_module: the package's __init__ re-exports the class without saying
        # so, which mypy rejects as a from-import.
        unleash = importlib.import_module("UnleashClient")
        from UnleashClient.cache import FileCache
    except ImportError:
        return None
    logging.getLogger("UnleashClient").setLevel(logging.ERROR)

    def constraint(field: str, operator: str, *values: str, inverted: bool = False) -> Any:
        single = operator.startswith(("NUM_", "SEMVER_"))  # these take one "value"
        found: dict[str, Any] = {"contextName": field, "operator": operator}
        found.update({"value": values[0]} if single else {"values": list(values)})
        return {**found, "inverted": inverted, "caseInsensitive": False}

    def strategy(group: str, constraints: list[Any], variants: dict[str, int]) -> Any:
        return {
            "name": "flexibleRollout",
            "parameters": {"rollout": "100", "stickiness": "default", "groupId": group},
            "constraints": constraints,
            "variants": [
                {"name": v, "weight": w, "weightType": "fix", "stickiness": "default"}
                for v, w in variants.items()
            ],
        }

    strategies = [
        strategy(
            "r1",
            [
                constraint("country", "IN", "fr", "de"),
                constraint("plan", "IN", "pro"),
                constraint("age", "NUM_GTE", "18"),
            ],
            {"treatment": 1000},
        ),
        strategy(
            "r2",
            [
                constraint("email", "STR_ENDS_WITH", "@example.com"),
                constraint("age", "NUM_LT", "30"),
                constraint("version", "SEMVER_LT", "2.0.0", inverted=True),
            ],
            {"control": 1000},
        ),
        strategy(
            "r3",
            [
                constraint("country", "IN", "us", "ca"),
                constraint("plan", "IN", "pro", "team"),
                constraint("version", "SEMVER_LT", "1.4.0", inverted=True),
            ],
            {"control": 500, "treatment": 500},
        ),
    ]
    cache = FileCache("chorus-bench-targeting", directory=tempfile.mkdtemp())
    cache.bootstrap_from_dict(
        {"version": 1, "features": [{"name": "f", "enabled": True, "strategies": strategies}]}
    )
    client = unleash.UnleashClient(
        url="http://127.0.0.1:1/api",  # never contacted: fetch_toggles=False
        app_name="chorus-bench-targeting",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    context = {"userId": "user-1234", "properties": {k: str(v) for k, v in ATTRIBUTES.items()}}
    if client.get_variant("f", context).get("name") not in ("control", "treatment"):
        return None  # the toggle did not load as meant: leave the peer out
    return lambda: client.get_variant("f", context)


def openfeature_three_by_three() -> Callable[[], object] | None:
    """OpenFeature's ``InMemoryProvider`` serving `three_by_three` from a
    ``context_evaluator``: the rules as a user would write them in plain Python, the
    split a SHA-256 bucket cut at 50% (cumulative ranges, as LaunchDarkly and
    Unleash cut theirs). None when openfeature-sdk is not installed.

    Source: openfeature-sdk 0.10's ``openfeature/provider/in_memory_provider.py``:
    ``InMemoryFlag(default_variant, variants, ..., context_evaluator=f)`` calls
    ``f(flag, EvaluationContext)`` for a ``FlagResolutionDetails``; the client's
    ``get_string_value(key, default, EvaluationContext(targeting_key, attributes))``
    runs its hooks and that.
    """
    try:
        from openfeature import api
        from openfeature.evaluation_context import EvaluationContext
        from openfeature.flag_evaluation import FlagResolutionDetails, Reason
        from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
    except ImportError:
        return None

    def version(text: Any) -> tuple[int, ...]:
        return tuple(int(p) for p in str(text).split("+")[0].split("-")[0].split("."))

    def rules(flag: Any, context: Any) -> Any:
        a = context.attributes
        if a.get("country") in ("fr", "de") and a.get("plan") == "pro" and a.get("age", 0) >= 18:
            variant, reason = "treatment", Reason.TARGETING_MATCH
        elif (
            str(a.get("email", "")).endswith("@example.com")
            and a.get("age", 99) < 30
            and version(a.get("version", "0.0.0")) >= (2, 0, 0)
        ):
            variant, reason = "control", Reason.TARGETING_MATCH
        elif (
            a.get("country") in ("us", "ca")
            and a.get("plan") in ("pro", "team")
            and version(a.get("version", "0.0.0")) >= (1, 4, 0)
        ):
            key = (context.targeting_key or "").encode() + b"f.r3"
            bucket = int.from_bytes(hashlib.sha256(key).digest()[:2], "big")
            variant, reason = ("control" if bucket < 32768 else "treatment"), Reason.SPLIT
        else:
            variant, reason = flag.default_variant, Reason.DEFAULT
        return FlagResolutionDetails(flag.variants[variant], reason=reason, variant=variant)

    variants = {"control": "blue", "treatment": "green"}
    provider = InMemoryProvider({"f": InMemoryFlag("control", variants, context_evaluator=rules)})
    api.set_provider(provider, domain="bench-targeting")
    client = api.get_client(domain="bench-targeting")
    context = EvaluationContext("user-1234", ATTRIBUTES)
    if client.get_string_value("f", "d", context) not in ("blue", "green"):
        return None
    return lambda: client.get_string_value("f", "d", context)


def chorus_openfeature_three_by_three() -> tuple[Callable[[], object], ...] | None:
    """`three_by_three` in a `FlagStore` (its entries written to a `LocalMap`, the
    flag then identical to the one ``evaluate`` is timed on), read three ways for one
    actor: ``FlagStore.evaluate``, ``ChorusProvider.resolve_string_details`` called
    directly, and the provider through the OpenFeature SDK client
    (``get_string_value``): the store's, the provider's and the SDK's shares of the
    cost. None when openfeature-sdk is not installed."""
    try:
        from openfeature import api
        from openfeature.evaluation_context import EvaluationContext

        from flags.openfeature import ChorusProvider
    except ImportError:
        return None
    from flags import FlagStore, LocalMap

    entries = LocalMap("bench")
    for key, value in three_by_three().items():
        entries.set(key, value)
    store = FlagStore(entries)
    provider = ChorusProvider(store)
    api.set_provider(provider, domain="bench-chorus")
    client = api.get_client(domain="bench-chorus")
    context = EvaluationContext("user-1234", {"groups": ["staff"], **ATTRIBUTES})
    got = client.get_string_details("f", "d", context)
    if (got.reason, got.flag_metadata.get("detail")) != ("SPLIT", "r3"):
        return None  # not the flag meant: leave the rows out
    groups = ("staff",)
    return (
        lambda: store.evaluate("f", "d", actor="user-1234", groups=groups, attributes=ATTRIBUTES),
        lambda: provider.resolve_string_details("f", "d", context),
        lambda: client.get_string_value("f", "d", context),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--peer-calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    gates = Rules("b", actors={"ann": True}, percentage_of_actors=0.5)
    boolean = compile_flag("b", {("b", "actor", "ann"): True, ("b", "percentage_of_actors"): 0.5})
    plain = Context(actor="user-1234")
    targeted = compile_flag("f", three_by_three(), compile_segments({}))
    context = Context(actor="user-1234", groups=("staff",), attributes=ATTRIBUTES)
    # More actors than a split's cache holds (flags._evaluation.SPLIT_CACHE_SIZE), in
    # turn: each comes back after the cache was cleared, so every split is computed.
    many = itertools.cycle(
        [
            Context(actor=f"user-{i}", groups=("staff",), attributes=ATTRIBUTES)
            for i in range(20_000)
        ]
    )
    chain = {
        "c1": compile_flag(
            "c1", {("c1", "boolean"): True, ("c1", "prereq", "c2"): {"variants": ["true"]}}
        ),
        "c2": compile_flag(
            "c2", {("c2", "boolean"): True, ("c2", "prereq", "c3"): {"variants": ["true"]}}
        ),
        "c3": compile_flag("c3", {("c3", "boolean"): True, ("c3", "actor", "x"): False}),
    }
    assert evaluate(targeted, context, "d").detail == "r3"
    assert evaluate(chain["c1"], plain, False, chain).value is True
    salt, arms = split_salt("f", "r3"), (split_arm("control", 5000), split_arm("treatment", 5000))
    ours, ours_new = (
        "3 rules x 3 conditions + split, evaluate",
        "3 rules x 3 conditions + split, evaluate, a new actor each time",
    )
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("boolean flag, Rules.enabled (today)", lambda: gates.enabled("user-1234", ()), args.calls),
        ("boolean flag, evaluate", lambda: evaluate(boolean, plain, False), args.calls),
        (ours, lambda: evaluate(targeted, context, "d"), args.calls),
        (ours_new, lambda: evaluate(targeted, next(many), "d"), args.calls),
        (
            "the split of 2 variants alone, choose",
            lambda: choose("user-1234", salt, arms),
            args.calls,
        ),
        (
            "prerequisite chain of 2, evaluate",
            lambda: evaluate(chain["c1"], plain, False, chain),
            args.calls,
        ),
    ]
    # Ours through the layers above evaluate: the rows' ratio to evaluate is their cost.
    layers = chorus_openfeature_three_by_three()
    ours_layered = [
        "3 rules x 3 conditions + split, FlagStore.evaluate",
        "3 rules x 3 conditions + split, ChorusProvider.resolve_string_details",
        "3 rules x 3 conditions + split, ChorusProvider via OpenFeature client",
    ]
    if layers is not None:
        cases += [
            (ours_layered[0], layers[0], args.calls),
            (ours_layered[1], layers[1], args.calls),
            (ours_layered[2], layers[2], args.peer_calls),
        ]
    peers = [
        ("Unleash get_variant, 3 strategies x 3 constraints + variants", unleash_three_by_three()),
        (
            "OpenFeature InMemoryProvider, context_evaluator 3 x 3 + split",
            openfeature_three_by_three(),
        ),
    ]
    missing = [label for label, check in peers if check is None]
    missing += ours_layered if layers is None else []
    cases += [(label, check, args.peer_calls) for label, check in peers if check is not None]
    rows, results = [], {}
    for label, check, calls in cases:
        samples = per_call_ns(check, calls, args.repeats)
        median = statistics.median(samples)
        results[label] = {"median_ns": median, "min_ns": min(samples), "max_ns": max(samples)}
    for label, r in results.items():
        note = f"min {r['min_ns']:,.0f}, max {r['max_ns']:,.0f}"
        if label in dict(peers):  # a peer: its ratio to ours, one actor and new actors
            r["vs_chorus"] = r["median_ns"] / results[ours]["median_ns"]
            r["vs_chorus_new_actors"] = r["median_ns"] / results[ours_new]["median_ns"]
            note += f"; {r['vs_chorus']:.1f}x ours, {r['vs_chorus_new_actors']:.1f}x new actors"
        if label in ours_layered:  # what the layers above evaluate add
            r["vs_evaluate"] = r["median_ns"] / results[ours]["median_ns"]
            note += f"; {r['vs_evaluate']:.1f}x evaluate"
        rows.append((label, f"{r['median_ns']:,.0f} ns", note))
    rows += [
        (label, "not installed", "pip install 'chorus-replicated[bench]'") for label in missing
    ]
    report("Typed-flag evaluation (issue 17)", rows, results, args.json)


if __name__ == "__main__":
    main()
