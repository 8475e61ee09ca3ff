"""Lying or old peers: raw map entries of the right key shapes with hostile values.

Each example writes a random list of raw entries (through the map, as a peer's delta
would arrive) to a node whose store follows them one by one, with the clock moving
and the schedules applied as they fall due; a second node gets the same entries at
once, in reverse order, and a third restarts on the final state. Every read must not
raise, the three must answer alike for every flag and context, and a flag no entry
touches must answer as it did.
"""

from __future__ import annotations

import math
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flags import FlagStore
from flags._evaluation import SPLIT_CACHE_SIZE, Context, compile_flag, evaluate
from flags._local import LocalMap
from flags._variants import choose, split_arm, split_salt

T0 = 1_000_000_000
NAMES = st.sampled_from(["f", "g"])
VARIANT_NAMES = st.sampled_from(["a", "b", "on", "true", "false", "gone"])


def _nested(depth: int) -> Any:
    value: Any = {"leaf": 1.5}
    for _ in range(depth):
        value = {"x": value}
    return value


HOSTILE = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**1000, -(2**1000), 0, 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.none(),
    st.sampled_from([_nested(300), {"k": [1, {"z": None}]}, [1, 2], {}, {"a": math.nan}]),
    st.binary(max_size=3),
)
WEIGHTS = st.one_of(
    st.integers(-1, 3),
    st.sampled_from([10**6, 10**6 + 1, 2**64, True, 0.5, math.nan]),
)
SERVE = st.one_of(
    st.builds(lambda v: {"variant": v}, VARIANT_NAMES),
    st.dictionaries(VARIANT_NAMES, WEIGHTS, max_size=4).map(lambda d: {"split": d}),
    st.builds(
        lambda n: {"split": {f"v{i}": 1_000_000 for i in range(n)}}, st.sampled_from([100, 101])
    ),
    st.sampled_from([{"variant": "a", "split": {"a": 1}}, {}, {"variant": 3}]),
    HOSTILE,
)
CONDITION = st.one_of(
    st.builds(
        lambda attr, op, values: {"attribute": attr, "op": op, "values": values},
        st.sampled_from(["plan", "age", "actor", "groups", ""]),
        st.sampled_from(["in", "not_in", "lt", "gte", "semver_gt", "contains", "before", "regex"]),
        st.lists(
            st.one_of(
                st.sampled_from(["pro", "free", "1.2.3", "2025-01-01", "beta"]),
                st.integers(0, 40),
                st.floats(),
                st.booleans(),
            ),
            max_size=3,
        ),
    ),
    HOSTILE,
)
RULE = st.one_of(
    st.fixed_dictionaries(
        {
            "position": st.sampled_from(["V", "W", "V", "0", 5, ""]),
            "conditions": st.lists(CONDITION, max_size=2),
            "segments": st.lists(st.sampled_from(["beta", "nope", 7]), max_size=2),
            "serve": SERVE,
        }
    ),
    HOSTILE,
)
PREREQ = st.one_of(
    st.builds(lambda vs: {"variants": vs}, st.lists(VARIANT_NAMES, max_size=2)),
    st.sampled_from([{"variants": "true"}, {"variants": [1]}, {"x": ["true"]}]),
    HOSTILE,
)


KEY_PARTS: dict[str, st.SearchStrategy[str]] = {
    "actor": st.just("ann"),
    "variant": VARIANT_NAMES,
    "rule": st.sampled_from(["r1", "r2"]),
    "prereq": NAMES,
}


@st.composite
def _write(draw: st.DrawFn) -> list[Any]:
    kind = draw(
        st.sampled_from(["boolean", "actor", "type", "variant", "off_variant", "fallthrough"])
        | st.sampled_from(["rule", "prereq", "percentage_of_actors"])
    )
    key: list[Any] = [kind]
    if kind in KEY_PARTS:
        key.append(draw(KEY_PARTS[kind]))
    return [*key, draw(_value(kind))]


def _value(kind: str) -> st.SearchStrategy[Any]:
    return {
        "boolean": st.booleans() | HOSTILE,
        "actor": st.booleans() | HOSTILE,
        "type": st.sampled_from(["boolean", "string", "integer", "float", "object", "x"]),
        "variant": HOSTILE,
        "off_variant": VARIANT_NAMES | HOSTILE,
        "fallthrough": SERVE,
        "rule": RULE,
        "prereq": PREREQ,
        "percentage_of_actors": st.sampled_from([0.5, 1, 1.5, math.nan, True, -0.0]),
    }[kind]


SCHEDULE = st.one_of(
    st.fixed_dictionaries(
        {
            "at_ms": st.integers(T0 - 10, T0 + 30),
            "set": st.lists(_write(), max_size=3),
            "delete": st.lists(st.sampled_from([["boolean"], ["variant", "a"], ["rule", "r1"]])),
        }
    ),
    HOSTILE,
)
SEGMENT = st.one_of(
    st.just({}),
    st.builds(lambda cs: {"conditions": cs}, st.lists(CONDITION, max_size=2)),
    HOSTILE,
)


@st.composite
def raw_entry(draw: st.DrawFn) -> tuple[tuple[Any, ...], Any]:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return ("", "segment", "beta"), draw(SEGMENT)
    if choice == 1:
        return (draw(NAMES), "schedule", "s1"), draw(SCHEDULE)
    write = draw(_write())
    return (draw(NAMES), *write[:-1]), write[-1]


# Every context has an actor: without one a split picks at random.
CONTEXTS: list[dict[str, Any]] = [
    {"actor": "zed"},
    {"actor": "ann"},
    {"actor": "bob", "groups": ["beta"], "attributes": {"plan": "pro", "age": 30}},
    {"actor": "cy", "attributes": {"plan": "free", "age": 3.5}},
]
FLAGS = ["f", "g", "ctl", "unknown"]


def readout(store: FlagStore) -> Any:
    """Everything a reader can ask, as reprs (NaN is not equal to itself)."""
    found: dict[Any, Any] = {}
    for name in FLAGS:
        for index, context in enumerate(CONTEXTS):
            found[(name, index)] = repr(store.evaluate(name, "dflt", **context))
        found[(name, "enabled")] = repr(
            [store.enabled(name, c.get("actor"), c.get("groups", ())) for c in CONTEXTS]
        )
        found[(name, "type")] = store.flag_type(name)
        found[(name, "flag")] = repr(store.flag(name))
    found["segments"] = repr(store.segments())
    found["names"] = repr(sorted(store.names()))
    return found


def _control(store: FlagStore) -> None:
    store.set_variants("ctl", {"blue": "b", "red": "r"}, type="string")
    store.set_fallthrough("ctl", {"split": {"blue": 1, "red": 1}})
    store.enable("ctl")


@settings(max_examples=30 if os.environ.get("HYPOTHESIS_PROFILE", "ci") == "ci" else 1000)
@given(st.lists(raw_entry(), min_size=1, max_size=8), st.lists(st.integers(0, 8), max_size=8))
def test_hostile_entries_never_raise_and_every_node_reads_them_alike(
    entries: list[tuple[tuple[Any, ...], Any]], steps: list[int]
) -> None:
    clock = [T0 - 20]
    live = LocalMap("live", wall_ms=lambda: clock[0])
    store = FlagStore(live)
    _control(store)
    control_before = {i: store.evaluate("ctl", "d", **c) for i, c in enumerate(CONTEXTS)}
    written = []
    for index, (key, value) in enumerate(entries):
        try:
            live.set(key, value)
        except (TypeError, ValueError):  # a value the map refuses: no peer can send it
            continue
        written.append((key, value))
        clock[0] += steps[index] if index < len(steps) else 3
        store.apply_schedules()
        readout(store)  # never raises, at every step
    clock[0] = T0 + 40
    store.apply_schedules()

    batch = LocalMap("batch", wall_ms=lambda: clock[0])
    batch.merge(live.state())
    batch_store = FlagStore(batch)
    batch_store.apply_schedules()
    restarted = LocalMap("restarted", wall_ms=lambda: clock[0])
    restarted.merge(live.state())
    restarted_store = FlagStore(restarted)
    restarted_store.apply_schedules()

    got = readout(store)
    assert got == readout(batch_store) == readout(restarted_store)
    for i, c in enumerate(CONTEXTS):
        assert store.evaluate("ctl", "d", **c) == control_before[i]


def test_a_segment_without_conditions_is_read_as_an_empty_one() -> None:
    live = LocalMap("a", wall_ms=lambda: T0)
    store = FlagStore(live)
    live.set(("", "segment", "beta"), {})
    assert store.segments() == {"beta": []}
    store.enable("after")  # the store still follows the map
    assert store.enabled("after")


@pytest.mark.parametrize("depth", [1, 300])
def test_a_deeply_nested_object_variant_is_served_and_described(depth: int) -> None:
    live = LocalMap("a", wall_ms=lambda: T0)
    store = FlagStore(live)
    live.set(("f", "type"), "object")
    live.set(("f", "variant", "deep"), _nested(depth))
    live.set(("f", "fallthrough"), {"variant": "deep"})
    live.set(("f", "boolean"), True)
    got = store.evaluate("f", None)
    assert (got.variant, got.reason) == ("deep", "DEFAULT")
    assert store.flag("f").variants == {"deep": _nested(depth)}


# -- 5. the split cache --------------------------------------------------------------------

SPLITS = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 5), min_size=1
).filter(lambda d: any(d.values()))
ACTOR_NAMES = st.text(max_size=6) | st.sampled_from(["ann", "bob", "", "\u00e9", "a" * 300])


@given(st.lists(SPLITS, min_size=1, max_size=4), st.lists(ACTOR_NAMES, min_size=1, max_size=30))
def test_the_split_cache_answers_as_choose_across_recompiles_and_weight_changes(
    splits: list[dict[str, int]], actors: list[str]
) -> None:
    """A store's flag recompiled with each split in turn (as a weight change would
    do): every answer, hit or miss, is `choose`'s over the current weights."""
    live = LocalMap("a", wall_ms=lambda: T0)
    store = FlagStore(live)
    store.set_variants("f", {v: v for v in "abcd"}, type="string")
    store.enable("f")
    for split in splits:
        store.set_fallthrough("f", {"split": split})
        arms = sorted((v, w) for v, w in split.items() if w > 0)
        salt = split_salt("f", "fallthrough")
        compiled = [split_arm(v, w) for v, w in arms]
        for actor in actors * 2:  # the second pass hits the cache
            try:
                want = arms[choose(actor, salt, compiled)][0]
            except UnicodeEncodeError:  # a lone surrogate: evaluate answers ERROR
                assert store.evaluate("f", None, actor=actor).reason == "ERROR"
                continue
            assert store.evaluate("f", None, actor=actor).variant == want


def test_the_split_cache_answers_as_choose_when_it_is_cleared_midway() -> None:
    flag = compile_flag(
        "f",
        {
            ("f", "type"): "integer",
            ("f", "variant", "a"): 1,
            ("f", "variant", "b"): 2,
            ("f", "boolean"): True,
            ("f", "fallthrough"): {"split": {"a": 3, "b": 1}},
        },
    )
    arms = [split_arm("a", 3), split_arm("b", 1)]
    salt = split_salt("f", "fallthrough")
    for i in range(SPLIT_CACHE_SIZE * 2 + 5):
        actor = f"u{i % (SPLIT_CACHE_SIZE + 7)}"
        got = evaluate(flag, Context(actor), None)
        assert got.variant == "ab"[choose(actor, salt, arms)]
