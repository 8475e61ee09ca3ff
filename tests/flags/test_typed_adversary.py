"""An adversary's tests of typed flags (issue 17): convergence, schedules,
prerequisites, lying peers and the split cache.

Replication is played by hand over `LocalMap` with injected clocks: a node is a
LocalMap and a FlagStore; "the same entries" is the same `LWWMap` state, tombstones
included; tombstone collection is `LWWMap.collect_tombstones` on a copy of the
state, as the transport's stable point would do on every replica. A store made
afresh over a state (a node restarting) is the reference every long-running store
must agree with.
"""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdt import LWWMap
from flags import Flag, FlagFormatError, FlagStore, _evaluation
from flags._evaluation import Evaluation
from flags._local import LocalMap
from hlc import Timestamp

T0 = 1_000_000_000


class Node:
    """One replica: a LocalMap with a settable clock, and its FlagStore."""

    def __init__(self, node_id: str, now: int = T0) -> None:
        self.now = now
        self.map = LocalMap(node_id, wall_ms=lambda: self.now)
        self.store = FlagStore(self.map)

    def tick(self, ms: int) -> None:
        self.now += ms

    def hear(self, *others: Node) -> None:
        for other in others:
            self.map.merge(other.map.state())


def sync(*nodes: Node) -> None:
    for _ in range(2):
        for node in nodes:
            node.hear(*[n for n in nodes if n is not node])


def fresh(state: LWWMap, now: int, node_id: str = "fresh") -> FlagStore:
    """A store made over ``state`` at ``now``: a node that restarts with it."""
    node = Node(node_id, now)
    node.map.merge(state)
    store = FlagStore(node.map)
    store.apply_schedules(now)
    return store


def collected(node: Node, horizon_ms: int) -> LWWMap:
    """``node``'s state once every tombstone older than ``horizon_ms`` is collected,
    but those its store keeps (the keys its schedules write), as a node's collection
    does."""
    copy = node.map.state()
    copy.collect_tombstones(Timestamp(horizon_ms, 0, "~"), node.map.keeps_tombstone)
    return copy


CONTEXTS: list[dict[str, Any]] = [
    {},
    {"actor": "ann"},
    {"actor": "bob", "groups": ["beta"]},
    {"actor": "cy", "attributes": {"plan": "pro", "age": 30}},
    {"actor": "dee", "groups": ["staff"], "attributes": {"plan": "free", "age": 3}},
]


def answers(store: FlagStore, names: list[str] | None = None) -> dict[Any, Evaluation]:
    found = {}
    for name in sorted(names if names is not None else store.names()):
        for index, context in enumerate(CONTEXTS):
            found[(name, index)] = store.evaluate(name, "default", **context)
    return found


# -- 1. convergence ----------------------------------------------------------------------


def test_a_rule_a_due_schedule_added_follows_a_later_segment_change() -> None:
    """A flag whose only rule comes from a due schedule was not recompiled when a
    segment changed (only flags holding a real rule entry were): the node that ran
    through the change kept the rule's old segment, a node restarting on the same
    entries at the same time took the new one."""
    node = Node("a")
    store = node.store
    store.set_variants("f", {"on": "yes", "off": "no"}, type="string")
    store.set_fallthrough("f", {"variant": "off"})
    store.enable("f")
    rule = {"position": "V", "conditions": [], "segments": ["beta"], "serve": {"variant": "on"}}
    store.schedule("f", "s1", T0 + 500, set=[["rule", "r1", rule]])
    node.tick(1_000)
    store.apply_schedules()
    store.set_segment("beta", [{"attribute": "plan", "op": "in", "values": ["pro"]}])
    restarted = fresh(node.map.state(), node.now)
    assert restarted.evaluate("f", "d", attributes={"plan": "pro"}).variant == "on"
    assert answers(store) == answers(restarted)


def test_a_default_flag_with_a_rule_follows_a_later_segment_change() -> None:
    """The same for a store's default Flag with a rule on a segment: no map entry of
    its own, so it was never recompiled when the segment arrived."""
    rule = {"position": "V", "conditions": [], "segments": ["beta"], "serve": {"variant": "on"}}
    default = Flag(
        "f",
        boolean=True,
        type="string",
        variants={"on": "yes", "off": "no"},
        fallthrough={"variant": "off"},
        rules={"r1": rule},
    )
    node = Node("a")
    store = FlagStore(node.map, {"f": default})
    FlagStore(node.map).set_segment("beta", [{"attribute": "plan", "op": "in", "values": ["pro"]}])
    restarted = FlagStore(node.map, {"f": default})
    assert restarted.evaluate("f", "d", attributes={"plan": "pro"}).variant == "on"
    assert store.evaluate("f", "d", attributes={"plan": "pro"}).variant == "on"


# -- 2. schedules -------------------------------------------------------------------------


def test_a_key_deleted_after_its_schedule_is_due_but_before_the_store_looked_stays_deleted() -> (
    None
):
    """The clock passes a schedule's time; before the store's timer looks (it polls,
    and a clock that steps forward is noticed within a minute), the key the schedule
    set is deleted. The delete is stamped after the schedule, so it wins; but the
    schedule was not rewritten without the key (the store's list of due schedules
    was stale), so once the tombstone is collected the schedule's write comes back."""
    node = Node("a")
    store = node.store
    store.enable("f")
    store.schedule("f", "s1", T0 + 500, set=[["actor", "ann", False]])
    node.tick(1_000)  # due now; the store has not looked yet
    store.clear("f", actor="ann")
    store.apply_schedules()
    assert store.flag("f").actors == {}
    later = node.now + 10_000
    restarted = fresh(collected(node, later), later)
    assert restarted.flag("f").actors == {}


def test_deleting_a_schedule_due_but_not_yet_noticed_keeps_its_effect() -> None:
    """`delete_schedule` judged "applied" by the store's stale list: a schedule whose
    time had passed on this node's clock was cancelled, not materialized, though a
    node that had noticed it in time (same entries, same clock) kept its effect."""
    late, prompt = Node("a"), Node("b")
    late.store.enable("f")
    late.store.schedule("f", "s1", T0 + 500, set=[["actor", "ann", True]])
    sync(late, prompt)
    for node in (late, prompt):
        node.tick(1_000)
    prompt.store.apply_schedules()
    assert prompt.store.flag("f").actors == {"ann": True}
    late.store.delete_schedule("f", "s1")
    sync(late, prompt)
    late.store.apply_schedules()
    prompt.store.apply_schedules()
    assert late.store.flag("f").actors == {"ann": True}
    assert prompt.store.flag("f").actors == {"ann": True}


def test_a_schedule_written_across_a_partition_does_not_resurrect_a_key_deleted_later() -> None:
    """b schedules ann's gate for T0 + 500 while partitioned from a; a, not knowing,
    removes ann's gate at T0 + 1000. The delete is the later write and wins; after
    the heal a keeps its tombstone (a schedule writes the key), so collecting the
    others does not let the schedule's older write come back."""
    a, b = Node("a"), Node("b")
    a.store.enable("f")
    a.store.enable_for_actor("f", "ann")
    sync(a, b)
    b.store.schedule("f", "s1", T0 + 500, set=[["actor", "ann", False]])  # a hears nothing
    for node in (a, b):
        node.tick(1_000)
    a.store.clear("f", actor="ann")
    sync(a, b)
    for node in (a, b):
        node.store.apply_schedules()
        assert node.store.flag("f").actors == {}
    later = a.now + 60_000
    for node in (a, b):
        assert fresh(collected(node, later), later).flag("f").actors == {}


def test_a_schedule_cannot_be_written_for_a_time_already_past() -> None:
    """Dated before now, a schedule's write could lose to a tombstone this node has
    not heard of yet, and win once the cluster collects it: the writer refuses it."""
    node = Node("a")
    node.store.enable("f")
    node.tick(1_000)
    with pytest.raises(FlagFormatError, match="not in the future") as caught:
        node.store.schedule("f", "s1", T0 + 500, set=[["actor", "ann", True]])
    assert caught.value.pointer == "/schedules/s1/at_ms"
    with pytest.raises(FlagFormatError, match="not in the future"):
        node.store.schedule("f", "s1", node.now, set=[["actor", "ann", True]])
    assert node.store.flag("f").schedules == {}


def test_a_past_schedule_written_raw_by_a_peer_keeps_the_tombstone_it_loses_to() -> None:
    """A peer (another version, or one writing the map directly) can still write a
    schedule dated before a delete; the tombstone wins, and is kept while the
    schedule is there."""
    node = Node("a")
    store = node.store
    store.enable("f")
    store.enable_for_actor("f", "ann")
    node.tick(1_000)
    store.clear("f", actor="ann")
    node.tick(1_000)
    node.map.set(("f", "schedule", "s1"), {"at_ms": T0 + 500, "set": [["actor", "ann", True]]})
    store.apply_schedules()
    assert store.flag("f").actors == {}
    later = node.now + 60_000
    assert fresh(collected(node, later), later).flag("f").actors == {}


# -- 3. prerequisites -----------------------------------------------------------------------


def test_a_schedule_cannot_close_a_prerequisite_cycle() -> None:
    """`set_prerequisite` refuses a cycle, but a schedule's ``prereq`` write was not
    checked: one node alone could make a -> b -> a."""
    store = Node("a").store
    store.enable("a")
    store.enable("b")
    store.set_prerequisite("a", "b", ["true"])
    with pytest.raises(FlagFormatError, match="cycle"):
        store.schedule("b", "s1", T0 + 500, set=[["prereq", "a", {"variants": ["true"]}]])
    with pytest.raises(FlagFormatError, match="cycle"):
        store.schedule("b", "s2", T0 + 500, set=[["prereq", "b", {"variants": ["true"]}]])


def test_a_prerequisite_cannot_close_a_cycle_with_a_pending_schedule() -> None:
    store = Node("a").store
    store.enable("a")
    store.enable("b")
    store.schedule("b", "s1", T0 + 500, set=[["prereq", "a", {"variants": ["true"]}]])
    with pytest.raises(FlagFormatError, match="cycle"):
        store.set_prerequisite("a", "b", ["true"])


def test_an_import_of_a_prerequisite_cycle_is_refused() -> None:
    store = Node("a").store
    with pytest.raises(FlagFormatError, match="cycle: y -> x -> y") as caught:
        store.import_flags(
            [
                Flag("x", boolean=True, prerequisites={"y": ["true"]}),
                Flag("y", boolean=True, prerequisites={"x": ["true"]}),
            ]
        )
    assert caught.value.pointer == "/1/prerequisites/x"
    store.enable("x")
    store.enable("z")
    store.set_prerequisite("z", "x", ["true"])
    with pytest.raises(FlagFormatError, match="cycle: x -> z -> x"):
        store.import_flags([Flag("x", boolean=True, prerequisites={"z": ["true"]})])
    # The import replaces a flag's edges: z's own, re-imported without x, allow x -> z.
    store.import_flags(
        [Flag("z", boolean=True), Flag("x", boolean=True, prerequisites={"z": ["true"]})]
    )
    assert store.flag("x").prerequisites == {"z": ["true"]}
    assert store.names() >= {"x", "z"}


def diamond(store: FlagStore, levels: int) -> None:
    """Flags f0..f<levels> and g0..g<levels>, each of level i requiring both of
    level i + 1: no cycle, each chain `levels` long, 2**levels paths from f0."""
    for i in range(levels, -1, -1):
        store.enable(f"f{i}")
        store.enable(f"g{i}")
    for i in range(levels):
        for x in ("f", "g"):
            store.set_prerequisite(f"{x}{i}", f"f{i + 1}", ["true"])
            store.set_prerequisite(f"{x}{i}", f"g{i + 1}", ["true"])


def test_a_diamond_of_prerequisites_evaluates_each_flag_a_bounded_number_of_times() -> None:
    """Each prerequisite was evaluated once per path to it: a diamond of 14 levels
    took 2**15 evaluations (and one of 30 levels, every write accepted, about half an
    hour on the read path of every node)."""
    store = Node("a").store
    diamond(store, 14)
    calls = 0
    real = _evaluation._evaluate

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    with mock.patch.object(_evaluation, "_evaluate", counting):
        got = store.evaluate("f0", False)
    assert (got.value, got.reason) == (True, "DEFAULT")
    assert calls <= 2 * 15 * 32


@pytest.mark.timeout(60)
def test_a_diamond_of_30_levels_evaluates_at_once() -> None:
    store = Node("a").store
    diamond(store, 30)
    started = time.perf_counter()
    got = store.evaluate("f0", False)
    assert time.perf_counter() - started < 1.0
    assert (got.value, got.reason) == (True, "DEFAULT")
    assert store.enabled("f0")
    store.disable("f30")  # the deepest unmet: every level above is disabled
    got = store.evaluate("f0", "d")
    assert (got.value, got.reason, got.detail) == (False, "DISABLED", "prerequisite f1")


def test_a_cycle_made_by_two_partitioned_nodes_is_an_error_naming_it_on_both() -> None:
    a, b = Node("a"), Node("b")
    a.store.enable("x")
    a.store.enable("y")
    a.store.enable("z")
    sync(a, b)
    a.store.set_prerequisite("x", "y", ["true"])
    b.store.set_prerequisite("y", "z", ["true"])
    b.store.set_prerequisite("z", "x", ["true"])
    sync(a, b)
    for name, cycle in (("x", "x -> y -> z -> x"), ("y", "y -> z -> x -> y")):
        got = {n.store.evaluate(name, "d") for n in (a, b)}
        assert len(got) == 1
        (only,) = got
        assert (only.reason, only.value) == ("ERROR", "d")
        assert str(only.detail).endswith("cycle " + cycle)
    assert answers(a.store) == answers(b.store) == answers(fresh(a.map.state(), a.now))


def test_a_chain_longer_than_the_limit_is_an_error_on_every_node() -> None:
    node = Node("a")
    for i in range(40, -1, -1):
        node.store.enable(f"c{i}")
        if i < 40:
            node.store.set_prerequisite(f"c{i}", f"c{i + 1}", ["true"])
    got = node.store.evaluate("c0", "d")
    assert (got.value, got.reason) == ("d", "ERROR")
    assert "chain too deep" in str(got.detail)
    assert node.store.evaluate("c9", "d").reason == "DEFAULT"  # 31 links: within
    assert answers(node.store) == answers(fresh(node.map.state(), node.now))


class _NoMemo(dict):  # type: ignore[type-arg]
    """A ``seen`` that remembers nothing: the evaluation before prerequisites were
    remembered, the reference."""

    def get(self, key: Any, default: Any = None) -> Any:
        return default

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


NAMES = [f"p{i}" for i in range(6)]
GRAPH_FLAG = st.fixed_dictionaries(
    {
        "boolean": st.none() | st.booleans(),
        "ratio": st.none() | st.sampled_from([0.0, 0.3, 0.7, 1.0]),
        "actor": st.none() | st.booleans(),
        "prereqs": st.dictionaries(
            st.integers(0, 5),
            st.sampled_from([["true"], ["false"], ["true", "false"]]),
            max_size=3,
        ),
    }
)


def compiled_graph(flags: list[dict[str, Any]], acyclic: bool) -> dict[str, Any]:
    compiled = {}
    for index, spec in enumerate(flags):
        name = NAMES[index]
        entries: dict[tuple[Any, ...], Any] = {}
        if spec["boolean"] is not None:
            entries[(name, "boolean")] = spec["boolean"]
        if spec["ratio"] is not None:
            entries[(name, "percentage_of_actors")] = spec["ratio"]
        if spec["actor"] is not None:
            entries[(name, "actor", "ann")] = spec["actor"]
        for other, wanted in spec["prereqs"].items():
            if other < len(flags) and (other > index or not acyclic):
                entries[(name, "prereq", NAMES[other])] = {"variants": wanted}
        compiled[name] = _evaluation.compile_flag(name, entries)
    return compiled


@given(st.lists(GRAPH_FLAG, min_size=1, max_size=6), st.booleans())
def test_remembering_prerequisites_answers_as_evaluating_each_path(
    flags: list[dict[str, Any]], acyclic: bool
) -> None:
    """Over random prerequisite graphs: never raises; without a cycle, remembering
    answers exactly as the reference does; with one, a cycle is an ERROR that names
    it, for every flag that reaches it first."""
    compiled = compiled_graph(flags, acyclic)
    for actor in (None, "ann", "bob", "cy"):
        context = _evaluation.Context(actor)
        for flag in compiled.values():
            got = _evaluation.evaluate(flag, context, "d", compiled)
            again = _evaluation.evaluate(flag, context, "d", dict(reversed(compiled.items())))
            assert got == again
            if acyclic:
                reference = _evaluation._evaluate(
                    flag, actor, frozenset(), {}, "d", compiled, (), _NoMemo()
                )
                assert got == reference
            if got.reason == "ERROR":
                assert "cycle" in str(got.detail) or "chain" in str(got.detail)
