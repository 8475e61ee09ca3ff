"""Typed flags through FlagStore: the writers, concurrent edits, prerequisites,
segments and schedules over replicated maps (LocalMaps merged by hand, and
simulated nodes whose own task applies schedules)."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flags import Flag, FlagFormatError, FlagStore, LocalMap
from flags._entries import flag_entries
from transport.simulation import Simulation

T0 = 1_800_000_000_000  # ms: a fixed wall clock for LocalMaps


class Clock:
    """A wall clock tests move by hand, in ms."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def store_on(node: str, clock: Clock | None = None) -> tuple[FlagStore, LocalMap]:
    flags = LocalMap(node, wall_ms=clock or Clock())
    return FlagStore(flags), flags


def exchange(*maps: LocalMap) -> None:
    """Every map merges every other's full state: a healed, settled cluster."""
    states = [m.state() for m in maps]
    for m in maps:
        for state in states:
            m.merge(state)


def colour_flag(store: FlagStore, name: str = "colour") -> None:
    store.set_variants(name, {"blue": "#00f", "green": "#0f0", "red": "#f00"}, type="string")
    store.set_fallthrough(name, {"variant": "blue"})
    store.set_off_variant(name, "red")
    store.enable(name)


def country(*values: str) -> dict[str, Any]:
    return {"attribute": "country", "op": "in", "values": list(values)}


# -- writers ---------------------------------------------------------------------------


def test_a_typed_flag_serves_by_rule_split_fallthrough_and_off_variant() -> None:
    store, _ = store_on("a")
    colour_flag(store)
    store.set_rule("colour", "fr", conditions=[country("fr")], serve={"variant": "green"})
    got = store.evaluate("colour", "?", actor="u1", attributes={"country": "fr"})
    assert (got.value, got.variant, got.reason, got.detail) == (
        "#0f0",
        "green",
        "TARGETING_MATCH",
        "fr",
    )
    got = store.evaluate("colour", "?", actor="u1", attributes={"country": "de"})
    assert (got.value, got.variant, got.reason) == ("#00f", "blue", "DEFAULT")
    store.set_fallthrough("colour", {"split": {"blue": 1, "green": 1}})
    served = {store.evaluate("colour", "?", actor=f"u{i}").variant for i in range(200)}
    assert served == {"blue", "green"}
    assert store.evaluate("colour", "?", actor="u7").reason == "SPLIT"
    store.disable("colour")
    got = store.evaluate("colour", "?", actor="u1", attributes={"country": "fr"})
    assert (got.value, got.variant, got.reason) == ("#f00", "red", "DISABLED")
    assert store.flag_type("colour") == "string"
    assert store.flag_type("nothing") is None
    unknown = store.evaluate("nothing", 5)
    assert (unknown.value, unknown.reason, unknown.detail) == (5, "ERROR", "unknown flag")


def test_writers_refuse_bad_fields_with_a_pointer_and_write_nothing() -> None:
    store, flags = store_on("a")
    colour_flag(store)
    before = flags.state()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: store.set_variant("colour", "pink", 5), "/variants/pink"),
        (lambda: store.set_variants("colour", {"x": 1}, type="colour"), "/type"),
        (
            lambda: store.set_rule(
                "colour",
                "r",
                conditions=[{"attribute": "a", "op": "like", "values": [1]}],
                serve={"variant": "blue"},
            ),
            "/rules/r/conditions/0/op",
        ),
        (
            lambda: store.set_rule("colour", "r", serve={"split": {"blue": -1}}),
            "/rules/r/serve/split/blue",
        ),
        (lambda: store.set_fallthrough("colour", {"variant": "a b"}), "/fallthrough/variant"),
        (lambda: store.set_prerequisite("colour", "missing", ["true"]), "/prerequisites/missing"),
        (lambda: store.schedule("colour", "s", -5, set=[["boolean", True]]), "/schedules/s/at_ms"),
        (
            lambda: store.schedule("colour", "s", T0 + 1_000, set=[["boolean", "yes"]]),
            "/schedules/s/set",
        ),
        (
            lambda: store.set_rule("colour", "r", serve={"variant": "blue"}, before="nope"),
            "/rules/r/position",
        ),
    ]
    for write, pointer in cases:
        with pytest.raises(FlagFormatError) as caught:
            write()
        assert caught.value.pointer == pointer, caught.value
    assert flags.state() == before


def test_rules_go_where_they_are_put_and_keep_their_place_when_replaced() -> None:
    store, _ = store_on("a")
    colour_flag(store)
    serve = {"variant": "green"}
    store.set_rule("colour", "b", conditions=[country("b")], serve=serve)
    store.set_rule("colour", "d", conditions=[country("d")], serve=serve)
    store.set_rule("colour", "a", conditions=[country("a")], serve=serve, before="b")
    store.set_rule("colour", "c", conditions=[country("c")], serve=serve, after="b")
    store.set_rule("colour", "b", conditions=[country("bb")], serve=serve)  # replaced in place
    from flags._entries import rules_in_order

    assert [rid for rid, _ in rules_in_order(store.flag("colour"))] == ["a", "b", "c", "d"]
    store.set_rule("colour", "a", conditions=[country("a")], serve=serve, after="d")
    assert [rid for rid, _ in rules_in_order(store.flag("colour"))] == ["b", "c", "d", "a"]


def test_the_first_matching_rule_in_order_decides() -> None:
    store, _ = store_on("a")
    colour_flag(store)
    store.set_rule("colour", "green", conditions=[country("fr")], serve={"variant": "green"})
    store.set_rule("colour", "red", conditions=[country("fr")], serve={"variant": "red"})
    assert store.evaluate("colour", "?", attributes={"country": "fr"}).variant == "green"
    store.set_rule(
        "colour", "red", conditions=[country("fr")], serve={"variant": "red"}, before="green"
    )
    assert store.evaluate("colour", "?", attributes={"country": "fr"}).variant == "red"


def test_segments_are_shared_by_rules_and_recompile_them_when_changed() -> None:
    store, _ = store_on("a")
    colour_flag(store)
    store.set_segment("europe", [country("fr", "de")])
    store.set_rule("colour", "eu", segments=["europe"], serve={"variant": "green"})
    assert store.evaluate("colour", "?", attributes={"country": "de"}).variant == "green"
    store.set_segment("europe", [country("fr")])
    assert store.evaluate("colour", "?", attributes={"country": "de"}).variant == "blue"
    assert store.segments() == {"europe": [country("fr")]}
    assert store.delete_segment("europe") is True
    assert store.delete_segment("europe") is False
    assert store.evaluate("colour", "?", attributes={"country": "fr"}).variant == "blue"
    actions = [(e.flag, e.action, e.target) for e in store.audit("")]
    assert actions == [
        ("", "delete_segment", "europe"),
        ("", "set_segment", "europe"),
        ("", "set_segment", "europe"),
    ]
    assert "" not in store.names()
    assert store.unexportable() == []


def test_a_boolean_flag_with_typed_parts_is_enabled_as_it_evaluates() -> None:
    store, _ = store_on("a")
    store.enable("base")
    store.enable("checkout")
    store.set_rule(
        "checkout",
        "beta-off",
        conditions=[{"attribute": "groups", "op": "in", "values": ["beta"]}],
        serve={"variant": "false"},
    )
    store.set_prerequisite("checkout", "base", ["true"])
    assert store.enabled("checkout", "u1") is True
    assert store.enabled("checkout", "u1", ["beta"]) is False
    assert store.explain("checkout", "u1", ["beta"]) == (False, "beta-off")
    store.disable("base")
    assert store.enabled("checkout", "u1") is False
    assert store.explain("checkout", "u1") == (False, "prerequisite base")
    # A flag of another type is never "enabled".
    colour_flag(store)
    assert store.enabled("colour", "u1") is False


def test_a_prerequisite_cycle_is_refused_at_write_time() -> None:
    store, flags = store_on("a")
    for name in ("a", "b", "c"):
        store.enable(name)
    store.set_prerequisite("a", "b", ["true"])
    store.set_prerequisite("b", "c", ["true"])
    before = flags.state()
    with pytest.raises(FlagFormatError, match="a prerequisite cycle: c -> a -> b -> c") as caught:
        store.set_prerequisite("c", "a", ["true"])
    assert caught.value.pointer == "/prerequisites/a"
    with pytest.raises(FlagFormatError, match="cannot require itself"):
        store.set_prerequisite("a", "a", ["true"])
    with pytest.raises(FlagFormatError, match="no variant 'blue'"):
        store.set_prerequisite("a", "c", ["blue"])
    assert flags.state() == before


def test_two_nodes_closing_a_cycle_concurrently_both_answer_error_naming_it() -> None:
    store_a, map_a = store_on("a")
    store_b, map_b = store_on("b")
    store_a.enable("x")
    store_a.enable("y")
    exchange(map_a, map_b)
    store_a.set_prerequisite("x", "y", ["true"])  # partitioned: each sees no cycle
    store_b.set_prerequisite("y", "x", ["true"])
    exchange(map_a, map_b)
    for store in (store_a, store_b):
        got = store.evaluate("x", "d", actor="u")
        assert (got.value, got.reason) == ("d", "ERROR")
        assert "cycle" in (got.detail or "")
        assert store.enabled("x", "u") is False
    assert store_a.evaluate("y", 0, actor="u") == store_b.evaluate("y", 0, actor="u")


# -- concurrent edits ------------------------------------------------------------------


def test_concurrent_edits_of_different_rules_both_survive_and_the_same_rule_keeps_the_later() -> (
    None
):
    clock_a, clock_b = Clock(), Clock()
    store_a, map_a = store_on("a", clock_a)
    store_b, map_b = store_on("b", clock_b)
    colour_flag(store_a)
    exchange(map_a, map_b)
    store_a.set_rule("colour", "fr", conditions=[country("fr")], serve={"variant": "green"})
    store_b.set_rule("colour", "de", conditions=[country("de")], serve={"variant": "red"})
    store_a.set_rule("colour", "same", conditions=[country("it")], serve={"variant": "green"})
    clock_b.now += 1  # b's edit of the same rule is the later HLC write
    store_b.set_rule("colour", "same", conditions=[country("it")], serve={"variant": "red"})
    store_b.set_variant("colour", "pink", "#fcc")
    exchange(map_a, map_b)
    for store in (store_a, store_b):
        flag = store.flag("colour")
        assert set(flag.rules) == {"fr", "de", "same"}
        assert flag.rules["same"]["serve"] == {"variant": "red"}
        assert "pink" in flag.variants
        assert store.evaluate("colour", "?", attributes={"country": "it"}).variant == "red"
    assert store_a.flag("colour") == store_b.flag("colour")


def test_two_new_rules_at_the_same_place_are_ordered_alike_everywhere() -> None:
    """Both nodes append a rule while partitioned: the two get the same position,
    and the rule id breaks the tie the same way on both."""
    store_a, map_a = store_on("a")
    store_b, map_b = store_on("b")
    colour_flag(store_a)
    exchange(map_a, map_b)
    store_a.set_rule("colour", "from-a", conditions=[country("fr")], serve={"variant": "green"})
    store_b.set_rule("colour", "from-b", conditions=[country("fr")], serve={"variant": "red"})
    exchange(map_a, map_b)
    for store in (store_a, store_b):
        assert store.evaluate("colour", "?", attributes={"country": "fr"}).detail == "from-a"


WRITES = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(
            [
                "rule-fr",
                "rule-de",
                "rule-fr-red",
                "delete-rule-fr",
                "variant-pink",
                "delete-variant-green",
                "fallthrough-split",
                "fallthrough-blue",
                "off-green",
                "disable",
                "enable",
                "prereq",
                "delete-prereq",
                "segment",
                "type-int",
                "merge",
            ]
        ),
    ),
    max_size=25,
)


def _apply(store: FlagStore, op: str) -> None:
    ops: dict[str, Any] = {
        "rule-fr": lambda: store.set_rule(
            "colour", "fr", conditions=[country("fr")], serve={"variant": "green"}
        ),
        "rule-de": lambda: store.set_rule(
            "colour", "de", segments=["eu"], serve={"variant": "red"}, before=None
        ),
        "rule-fr-red": lambda: store.set_rule(
            "colour", "fr", conditions=[country("fr")], serve={"variant": "red"}
        ),
        "delete-rule-fr": lambda: store.delete_rule("colour", "fr"),
        "variant-pink": lambda: store.set_variant("colour", "pink", "#fcc"),
        "delete-variant-green": lambda: store.delete_variant("colour", "green"),
        "fallthrough-split": lambda: store.set_fallthrough(
            "colour", {"split": {"blue": 3, "red": 1}}
        ),
        "fallthrough-blue": lambda: store.set_fallthrough("colour", {"variant": "blue"}),
        "off-green": lambda: store.set_off_variant("colour", "green"),
        "disable": lambda: store.disable("colour"),
        "enable": lambda: store.enable("colour"),
        "prereq": lambda: store.set_prerequisite("colour", "base", ["true"]),
        "delete-prereq": lambda: store.delete_prerequisite("colour", "base"),
        "segment": lambda: store.set_segment("eu", [country("de", "fr")]),
        "type-int": lambda: store.set_variants("colour", {"blue": 1, "green": 2}, type="integer"),
    }
    with contextlib.suppress(ValueError):  # refused on this node's view: nothing written
        ops[op]()


@settings(max_examples=60)
@given(WRITES)
def test_any_interleaving_of_typed_edits_converges(writes: list[tuple[str, str]]) -> None:
    """Three nodes edit one typed flag, merging only when told to; once all states are
    exchanged every node describes the flag alike and evaluates it alike for every
    context."""
    nodes = {n: store_on(n) for n in ("a", "b", "c")}
    colour_flag(nodes["a"][0])
    nodes["a"][0].enable("base")
    exchange(*(m for _, m in nodes.values()))
    for node, op in writes:
        if op == "merge":
            exchange(nodes[node][1], nodes["a" if node != "a" else "b"][1])
        else:
            _apply(nodes[node][0], op)
    exchange(*(m for _, m in nodes.values()))
    stores = [s for s, _ in nodes.values()]
    assert all(s.flag("colour") == stores[0].flag("colour") for s in stores)
    for actor in ("u1", "u2", "u3"):  # no actor: a split picks at random
        for where in ("fr", "de", "us"):
            answers = {
                s.evaluate("colour", "?", actor=actor, attributes={"country": where})
                for s in stores
            }
            assert len(answers) == 1, answers


# -- schedules -------------------------------------------------------------------------


def test_a_schedule_applies_at_its_time_and_on_catch_up_after_a_restart() -> None:
    clock = Clock()
    store, flags = store_on("a", clock)
    store.disable("launch")
    store.schedule("launch", "go", T0 + 60_000, set=[["boolean", True]])
    assert store.apply_schedules() == T0 + 60_000
    assert store.enabled("launch") is False
    clock.now = T0 + 60_000
    assert store.apply_schedules() is None
    assert store.enabled("launch") is True
    assert store.flag("launch").boolean is True
    # A node that starts after the time applies it from the state it catches up on.
    late = LocalMap("b", wall_ms=Clock(T0 + 120_000))
    late.merge(flags.state())
    assert FlagStore(late).enabled("launch") is True
    # One that starts before, from its own clock, when it gets there.
    early_clock = Clock(T0)
    early = LocalMap("c", wall_ms=early_clock)
    early.merge(flags.state())
    early_store = FlagStore(early)
    assert early_store.enabled("launch") is False
    early_clock.now = T0 + 60_000
    early_store.apply_schedules()
    assert early_store.enabled("launch") is True


def test_a_change_made_after_a_schedules_time_wins_and_one_made_before_loses() -> None:
    clock = Clock()
    store, _ = store_on("a", clock)
    store.enable("f")
    store.schedule("f", "off", T0 + 1_000, set=[["boolean", False]])
    store.enable("f")  # before the time: the schedule wins when it comes
    clock.now = T0 + 1_000
    store.apply_schedules()
    assert store.enabled("f") is False
    clock.now = T0 + 2_000
    store.enable("f")  # after: wins over it
    assert store.enabled("f") is True


def test_deleting_a_key_a_schedule_set_keeps_it_deleted_after_tombstones_are_collected() -> None:
    clock = Clock()
    store, flags = store_on("a", clock)
    store.enable("f")
    store.schedule(
        "f", "ramp", T0 + 1_000, set=[["percentage_of_actors", 0.5], ["actor", "ann", True]]
    )
    clock.now = T0 + 1_000
    store.apply_schedules()
    assert store.flag("f").percentage_of_actors == 0.5
    clock.now = T0 + 2_000
    store.clear("f", gate="percentage_of_actors")
    assert store.flag("f").percentage_of_actors is None
    assert store.flag("f").schedules["ramp"]["set"] == [["actor", "ann", True]]
    # Every replica has passed the delete: the cluster collects its tombstone.
    flags._state.collect_tombstones(flags.state().max_timestamp())  # type: ignore[arg-type]
    restarted = FlagStore(flags)
    assert restarted.flag("f").percentage_of_actors is None
    assert restarted.flag("f").actors == {"ann": True}


def test_deleting_an_applied_schedule_keeps_its_effect_and_a_pending_one_cancels() -> None:
    clock = Clock()
    store, _ = store_on("a", clock)
    colour_flag(store)
    store.schedule("colour", "green", T0 + 1_000, set=[["fallthrough", {"variant": "green"}]])
    store.schedule("colour", "later", T0 + 9_000, set=[["fallthrough", {"variant": "red"}]])
    clock.now = T0 + 1_000
    store.apply_schedules()
    assert store.evaluate("colour", "?").variant == "green"
    assert store.delete_schedule("colour", "green") is True
    assert store.evaluate("colour", "?").variant == "green"
    assert store.delete_schedule("colour", "later") is True
    assert store.delete_schedule("colour", "later") is False
    clock.now = T0 + 10_000
    store.apply_schedules()
    assert store.evaluate("colour", "?").variant == "green"
    assert store.flag("colour").schedules == {}


def test_a_schedule_takes_an_aware_datetime() -> None:
    store, _ = store_on("a")
    at = datetime.datetime(2028, 1, 1, 9, 0, tzinfo=datetime.UTC)
    store.schedule("f", "new-year", at, set=[["boolean", True]])
    assert store.flag("f").schedules["new-year"]["at_ms"] == int(at.timestamp() * 1000)
    with pytest.raises(ValueError, match="aware"):
        store.schedule("f", "naive", datetime.datetime(2027, 1, 1), set=[["boolean", True]])


@pytest.mark.timeout(60)
def test_simulated_nodes_apply_a_schedule_at_its_time_by_themselves(sim_run: Any) -> None:
    """No call to apply_schedules: each node's own task applies it, within a second
    of its time on the simulated clock, and a node partitioned away still does."""

    async def main() -> None:
        async with Simulation(seed=17) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            stores = {n: FlagStore(sim.node(n).map("flags")) for n in sim.live}
            stores["a"].disable("launch")
            at = sim.node("a").map("flags").wall_ms() + 20_000
            stores["a"].schedule("launch", "go", at, set=[["boolean", True]])
            await sim.run_for(2)
            sim.network.partition({"a", "b"}, {"c"})
            await sim.run_for(15)
            assert not any(s.enabled("launch") for s in stores.values())
            await sim.run_for(4)
            assert all(s.enabled("launch") for s in stores.values())
            sim.network.heal()

    sim_run(main)


# -- defaults, restore, import ---------------------------------------------------------


def test_a_typed_default_answers_until_the_cluster_holds_the_flag() -> None:
    default = Flag(
        "colour",
        boolean=True,
        type="string",
        variants={"blue": "#00f", "green": "#0f0"},
        fallthrough={"variant": "green"},
    )
    store, _ = store_on("a", None)
    store = FlagStore(LocalMap("a"), {"colour": default})
    assert store.evaluate("colour", "?").value == "#0f0"
    assert store.flag_type("colour") == "string"


def test_restore_brings_back_typed_parts() -> None:
    store, _ = store_on("a")
    colour_flag(store)
    store.set_rule("colour", "fr", conditions=[country("fr")], serve={"variant": "green"})
    stamp = store.audit("colour")[0].timestamp
    store.delete_rule("colour", "fr")
    store.set_variants("colour", {"one": 1}, type="integer")
    assert store.restore("colour", stamp) is True
    flag = store.flag("colour")
    assert flag.type == "string"
    assert set(flag.rules) == {"fr"}
    assert store.evaluate("colour", "?", attributes={"country": "fr"}).value == "#0f0"


def test_import_makes_a_typed_flag_equal_and_writes_nothing_the_second_time() -> None:
    source, _ = store_on("a")
    colour_flag(source)
    source.enable("base")
    source.set_rule(
        "colour", "fr", conditions=[country("fr")], serve={"split": {"green": 1, "red": 1}}
    )
    source.set_prerequisite("colour", "base", ["true"])
    source.schedule("colour", "s", T0 + 5, set=[["off_variant", "blue"]])
    target, flags = store_on("b")
    plans = target.import_flags(source.export())
    assert any(plan.changes for plan in plans)
    assert [flag_entries(f) for f in target.export()] == [flag_entries(f) for f in source.export()]
    state = flags.state()
    assert not any(plan.changes for plan in target.import_flags(source.export()))
    assert flags.state() == state


def test_a_counting_store_counts_evaluations() -> None:
    store = FlagStore(LocalMap("a"), count_evaluations=True)
    colour_flag(store)
    store.evaluate("colour", "?")
    store.evaluate("colour", "?", actor="u1")
    store.evaluate("missing", "?")
    counts = store.evaluations()
    assert counts is not None
    assert counts[0]["colour"] == 2
    assert counts[1] == 1


@pytest.mark.timeout(60)
def test_a_delete_after_a_schedules_time_outlives_real_tombstone_collection(sim_run: Any) -> None:
    """b schedules ann's gate while partitioned from a; a, not knowing, removes it
    after the schedule's time. After the heal the nodes prune the losing write (the
    schedule is left with none, so it goes), and a real collection (the stable
    point) then drops both tombstones: ann's gate stays removed on every node and
    on a store made afresh, as bob's does."""

    async def main() -> None:
        async with Simulation(seed=23, gc_interval_s=0.5, sync_interval_s=1.0) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            stores = {n: FlagStore(sim.node(n).map("flags")) for n in sim.live}
            stores["a"].enable("f")
            stores["a"].enable_for_actor("f", "ann")
            stores["a"].enable_for_actor("f", "bob")
            await sim.run_for(2)
            sim.network.partition({"a"}, {"b", "c"})
            at = sim.node("b").map("flags").wall_ms() + 1_000
            stores["b"].schedule("f", "s1", at, set=[["actor", "ann", False]])
            await sim.run_for(3)
            stores["a"].clear("f", actor="ann")  # after the schedule's time
            stores["a"].clear("f", actor="bob")
            await sim.run_for(1)
            sim.network.heal()
            assert await sim.settle(timeout=30) is not None
            await sim.run_for(3)
            for name in sim.live:
                sim.node(name).collect_tombstones()
            await sim.run_for(2)
            assert sum(sim.node(n).stats.tombstones_collected for n in sim.live) > 0
            for name, store in stores.items():
                flags = sim.node(name).map("flags")
                assert flags.timestamp(("f", "actor", "ann")) is None, name  # collected
                assert flags.timestamp(("f", "actor", "bob")) is None, name
                assert store.flag("f").schedules == {}
                assert store.flag("f").actors == {}
                assert FlagStore(flags).flag("f").actors == {}

    sim_run(main)


def test_serving_a_variant_the_flag_lacks_is_refused_with_its_pointer() -> None:
    store, flags = store_on("a")
    colour_flag(store)
    before = flags.state()
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: store.set_off_variant("colour", "pink"), "/off_variant"),
        (
            lambda: store.set_fallthrough("colour", {"split": {"blue": 1, "pink": 1}}),
            "/fallthrough",
        ),
        (lambda: store.set_rule("colour", "r", serve={"variant": "pink"}), "/rules/r/serve"),
    ]
    for write, pointer in cases:
        with pytest.raises(FlagFormatError, match="no variant 'pink'") as caught:
            write()
        assert caught.value.pointer == pointer
    assert flags.state() == before
    # A variant of weight 0 is never served, so it need not exist; a boolean flag
    # without variants has "true" and "false".
    store.set_fallthrough("colour", {"split": {"blue": 1, "pink": 0}})
    store.enable("b")
    store.set_rule("b", "off-for-beta", serve={"variant": "false"})


def test_removing_a_served_variant_is_allowed_and_its_answers_are_errors() -> None:
    store, _ = store_on("a")
    colour_flag(store)
    store.set_rule("colour", "fr", conditions=[country("fr")], serve={"variant": "green"})
    assert store.delete_variant("colour", "green") is True
    got = store.evaluate("colour", "?", attributes={"country": "fr"})
    assert (got.value, got.reason) == ("?", "ERROR")
    assert "green" in (got.detail or "")


def test_deleting_a_part_the_flag_lacks_writes_nothing_and_says_so() -> None:
    store, flags = store_on("a")
    colour_flag(store)
    store.enable("base")
    before = flags.state()
    assert store.delete_variant("colour", "pink") is False
    assert store.delete_rule("colour", "nope") is False
    assert store.delete_prerequisite("colour", "base") is False
    assert store.delete_schedule("colour", "nope") is False
    assert store.delete_segment("nope") is False
    assert flags.state() == before
    store.set_prerequisite("colour", "base", ["true"])
    assert store.delete_prerequisite("colour", "base") is True
    assert store.flag("colour").prerequisites == {}


def test_values_of_the_wrong_shape_are_format_errors_not_type_errors() -> None:
    store, flags = store_on("a")
    colour_flag(store)
    store.enable("base")
    before = flags.state()
    five: Any = 5  # what a caller without type checks may pass
    cases: list[tuple[Callable[[], object], str]] = [
        (
            lambda: store.set_rule("colour", "r", serve={"variant": "blue"}, conditions=five),
            "/rules/r/conditions",
        ),
        (
            lambda: store.set_rule("colour", "r", serve={"variant": "blue"}, segments="beta"),
            "/rules/r/segments",
        ),
        (lambda: store.set_prerequisite("colour", "base", five), "/prerequisites/base"),
        (lambda: store.schedule("colour", "s", T0 + 1_000, set=[five]), "/schedules/s/set/0"),
        (lambda: store.schedule("colour", "s", T0 + 1_000, delete=five), "/schedules/s/delete"),
        (lambda: store.set_segment("beta", five), "/conditions"),
    ]
    for write, pointer in cases:
        with pytest.raises(FlagFormatError) as caught:
            write()
        assert caught.value.pointer == pointer, caught.value
    assert flags.state() == before


def test_pruning_takes_a_losing_write_out_of_a_schedule_on_every_node_alike() -> None:
    """b schedules ann's gate while a, not knowing, removes it after the schedule's
    time. Once both are seen, pruning on either node writes the same schedule
    without the losing write (here: none left, so it is removed), and afterwards
    no replica needs the tombstone: even a collection that keeps nothing leaves
    ann's gate removed."""
    clock_a, clock_b = Clock(), Clock()
    store_a, map_a = store_on("a", clock_a)
    store_b, map_b = store_on("b", clock_b)
    store_a.enable("f")
    store_a.enable_for_actor("f", "ann")
    store_a.enable_for_actor("f", "bob")
    exchange(map_a, map_b)
    store_b.schedule("f", "s1", T0 + 500, set=[["actor", "ann", False], ["actor", "bob", False]])
    clock_a.now = clock_b.now = T0 + 1_000
    store_a.clear("f", actor="ann")  # a has not heard of s1
    exchange(map_a, map_b)
    for store in (store_a, store_b):
        store.apply_schedules()
        assert store.flag("f").actors == {"bob": False}
    assert store_b.prune_schedules() == 1
    assert store_b.flag("f").schedules["s1"]["set"] == [["actor", "bob", False]]
    assert store_b.prune_schedules() == 0  # nothing left to prune
    exchange(map_a, map_b)
    assert store_a.prune_schedules() == 0
    for flags in (map_a, map_b):
        flags._state.collect_tombstones(flags.state().max_timestamp())  # type: ignore[arg-type]
        restarted = FlagStore(flags)
        restarted.apply_schedules()
        assert restarted.flag("f").actors == {"bob": False}


def test_a_flag_holds_at_most_max_schedules() -> None:
    from flags._schedule import MAX_SCHEDULES

    store, flags = store_on("a")
    store.enable("f")
    for i in range(MAX_SCHEDULES):
        store.schedule("f", f"s{i}", T0 + 1_000 + i, set=[["boolean", i % 2 == 0]])
    before = flags.state()
    with pytest.raises(FlagFormatError, match=f"at most {MAX_SCHEDULES} schedules") as caught:
        store.schedule("f", "one-more", T0 + 5_000, set=[["boolean", True]])
    assert caught.value.pointer == "/schedules"
    assert flags.state() == before
    store.schedule("f", "s0", T0 + 9_000, set=[["boolean", False]])  # a rewrite is no more
