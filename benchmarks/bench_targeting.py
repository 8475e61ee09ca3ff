"""The typed-flag evaluation core (issue 17), per evaluation, in one process.

- a boolean flag with an actor gate and a percentage of actors: today's
  ``Rules.enabled`` beside ``evaluate`` of the same flag compiled by ``compile_flag``;
- a string flag with 3 rules of 3 conditions each (the context matches the third)
  serving a split of 2 variants (issue 17's target: <= 2 us), and that split alone
  (``flags._variants.choose``: one SHA-256, then per variant the mixing);
- a flag behind a chain of 2 prerequisites.

Medians of repeats in ns per evaluation; JSON in benchmarks/results/targeting.json.
Run: ``PYTHONPATH=. python benchmarks/bench_targeting.py``.
"""

from __future__ import annotations

import argparse
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    gates = Rules("b", actors={"ann": True}, percentage_of_actors=0.5)
    boolean = compile_flag("b", {("b", "actor", "ann"): True, ("b", "percentage_of_actors"): 0.5})
    plain = Context(actor="user-1234")
    targeted = compile_flag("f", three_by_three(), compile_segments({}))
    context = Context(
        actor="user-1234",
        groups=("staff",),
        attributes={
            "country": "us",
            "plan": "pro",
            "age": 41,
            "email": "x@y.org",
            "version": "1.5.2",
        },
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
    cases: list[tuple[str, Callable[[], object]]] = [
        ("boolean flag, Rules.enabled (today)", lambda: gates.enabled("user-1234", ())),
        ("boolean flag, evaluate", lambda: evaluate(boolean, plain, False)),
        ("3 rules x 3 conditions + split, evaluate", lambda: evaluate(targeted, context, "d")),
        ("the split of 2 variants alone, choose", lambda: choose("user-1234", salt, arms)),
        ("prerequisite chain of 2, evaluate", lambda: evaluate(chain["c1"], plain, False, chain)),
    ]
    rows, results = [], {}
    for label, check in cases:
        samples = per_call_ns(check, args.calls, args.repeats)
        median = statistics.median(samples)
        results[label] = {"median_ns": median, "min_ns": min(samples), "max_ns": max(samples)}
        rows.append(
            (label, f"{median:,.0f} ns", f"min {min(samples):,.0f}, max {max(samples):,.0f}")
        )
    report("Typed-flag evaluation (issue 17)", rows, results, RESULTS)


if __name__ == "__main__":
    main()
