import datetime
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flags import FlagStore, LocalMap, actor_score

ACTORS = st.sampled_from(["ann", "bob", "cy", "dee"])
GROUPS = st.sampled_from(["beta", "staff", "banned"])


def reference(gates: dict[str, Any], actor: str | None, groups: list[str]) -> bool:
    """The rules, written out plainly, for the store to be checked against."""
    if actor is not None and actor in gates["actors"]:
        return bool(gates["actors"][actor])
    verdicts = [gates["groups"][g] for g in groups if g in gates["groups"]]
    if verdicts:
        return False not in verdicts
    if gates["boolean"] is True:
        return True
    if actor is not None and gates["pct_actors"] is not None:
        return bool(actor_score(actor, "f") < gates["pct_actors"])
    return False


@given(
    boolean=st.none() | st.booleans(),
    actors=st.dictionaries(ACTORS, st.booleans()),
    groups=st.dictionaries(GROUPS, st.booleans()),
    pct_actors=st.none() | st.floats(0, 1),
    actor=st.none() | ACTORS,
    member_of=st.lists(GROUPS, unique=True),
)
def test_gate_precedence_matches_the_reference_model(
    boolean: bool | None,
    actors: dict[str, bool],
    groups: dict[str, bool],
    pct_actors: float | None,
    actor: str | None,
    member_of: list[str],
) -> None:
    store = FlagStore(LocalMap())
    if boolean is True:
        store.enable("f")
    elif boolean is False:
        store.disable("f")
    for a, on in actors.items():
        (store.enable_for_actor if on else store.disable_for_actor)("f", a)
    for g, on in groups.items():
        (store.enable_for_group if on else store.disable_for_group)("f", g)
    if pct_actors is not None:
        store.enable_percentage_of_actors("f", pct_actors)
    gates = {"boolean": boolean, "actors": actors, "groups": groups, "pct_actors": pct_actors}
    assert store.enabled("f", actor, member_of) == reference(gates, actor, member_of)


def test_a_deny_in_any_group_wins_and_an_actor_gate_beats_groups() -> None:
    store = FlagStore(LocalMap())
    store.enable_for_group("f", "beta")
    store.disable_for_group("f", "banned")
    assert store.enabled("f", "ann", ["beta"])
    assert not store.enabled("f", "ann", ["beta", "banned"])
    store.enable_for_actor("f", "ann")
    assert store.enabled("f", "ann", ["beta", "banned"])
    store.enable("f")
    store.disable_for_actor("f", "bob")
    assert not store.enabled("f", "bob")
    assert store.enabled("f", "cy")


def test_the_actor_score_is_pinned() -> None:
    # fun_with_flags' formula; these values must never change, or cohorts move.
    assert actor_score("user-1", "new-checkout") == 0x8907 / 65536  # SHA-256 starts 8907
    assert actor_score("user-1", "new-checkout") == 0.5352630615234375
    assert actor_score("", "") == int("e3b0", 16) / 65536  # SHA-256 of nothing
    assert 0 <= actor_score("x" * 1000, "y") < 1


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5, 0.9])
def test_percentage_of_actors_is_within_statistical_bounds(ratio: float) -> None:
    store = FlagStore(LocalMap())
    store.enable_percentage_of_actors("f", ratio)
    n = 100_000
    share = sum(store.enabled("f", f"user-{i}") for i in range(n)) / n
    sigma = math.sqrt(ratio * (1 - ratio) / n)
    assert abs(share - ratio) < 5 * sigma + 1 / 65536


def test_ramping_keeps_earlier_actors_and_flags_pick_independent_cohorts() -> None:
    store = FlagStore(LocalMap())
    actors = [f"user-{i}" for i in range(20_000)]
    store.enable_percentage_of_actors("f", 0.05)
    first = {a for a in actors if store.enabled("f", a)}
    store.enable_percentage_of_actors("f", 0.20)
    later = {a for a in actors if store.enabled("f", a)}
    assert first <= later
    assert len(later) > 3 * len(first)
    store.enable_percentage_of_actors("g", 0.20)
    other = {a for a in actors if store.enabled("g", a)}
    overlap = len(later & other) / len(actors)
    assert abs(overlap - 0.04) < 0.01  # independent: 20% of 20%, not 20%


def test_percentage_of_time_is_random_per_check() -> None:
    store = FlagStore(LocalMap())
    store.enable_percentage_of_time("f", 0.3)
    share = sum(store.enabled("f") for _ in range(20_000)) / 20_000
    assert 0.27 < share < 0.33


@given(
    defaults=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.booleans()),
    written=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.booleans()),
)
def test_defaults_apply_only_where_the_cluster_holds_nothing(
    defaults: dict[str, bool], written: dict[str, bool]
) -> None:
    shared = LocalMap()
    writer = FlagStore(shared)
    for name, on in written.items():
        (writer.enable if on else writer.disable)(name)
    restarted = FlagStore(shared, defaults=defaults)  # a node coming back with defaults
    for name in "abc":
        expected = written.get(name, defaults.get(name, False))
        assert restarted.enabled(name) == expected
    # Defaults never reach the cluster: every entry belongs to a written flag.
    assert all(key[0] in written for key in shared._state._regs)  # type: ignore[index,operator]


def test_a_cleared_flag_falls_back_to_its_default() -> None:
    store = FlagStore(LocalMap(), defaults={"f": True})
    store.disable("f")
    assert not store.enabled("f")
    assert store.explain("f") == (False, "boolean")
    store.clear("f")
    assert store.enabled("f")
    assert store.explain("f") == (True, "default")


def test_disable_removes_percentage_gates() -> None:
    store = FlagStore(LocalMap())
    store.enable_percentage_of_actors("f", 1.0)
    store.enable_percentage_of_time("f", 1.0)
    assert store.enabled("f", "ann")
    store.disable("f")
    assert not store.enabled("f", "ann")
    assert not store.enabled("f")
    assert store.flag("f").percentage_of_actors is None


def test_clear_one_actor_or_group() -> None:
    store = FlagStore(LocalMap())
    store.enable_for_actor("f", "ann")
    store.enable_for_group("f", "beta")
    store.clear("f", actor="ann")
    assert store.flag("f").actors == {}
    assert store.flag("f").groups == {"beta": True}
    store.clear("f", group="beta")
    assert not store.flag("f").has_gates


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.enable(""), "flag name"),
        (lambda s: s.enable(5), "flag name"),
        (lambda s: s.enable_for_actor("f", 42), "actor"),
        (lambda s: s.enable_for_actor("f", ""), "actor"),
        (lambda s: s.enable_for_group("f", None), "group"),
        (lambda s: s.enable_percentage_of_actors("f", 1.5), r"\[0, 1\]"),
        (lambda s: s.enable_percentage_of_actors("f", -0.1), r"\[0, 1\]"),
        (lambda s: s.enable_percentage_of_time("f", float("nan")), r"\[0, 1\]"),
        (lambda s: s.enable_percentage_of_time("f", True), r"\[0, 1\]"),
        (lambda s: s.enable("f", author=7), "author"),
        (lambda s: s.set_metadata("f", expires="tomorrow"), "expires"),
        (lambda s: s.set_metadata("f", owner=3), "owner"),
    ],
)
def test_invalid_input_raises_and_writes_nothing(call: Any, message: str) -> None:
    shared = LocalMap()
    store = FlagStore(shared)
    with pytest.raises(ValueError, match=message):
        call(store)
    assert len(shared._state._regs) == 0


def test_delete_removes_gates_and_metadata_and_keeps_the_audit_log() -> None:
    shared = LocalMap()
    store = FlagStore(shared, defaults={"f": True})
    store.enable_for_actor("f", "ann")
    store.disable_for_group("f", "banned")
    store.set_metadata("f", owner="team-a", description="d")
    assert store.delete("f", author="bob") is True
    assert not store.flag("f").has_gates
    assert store.metadata("f") == {}
    assert store.explain("f") == (True, "default")  # this store's default still applies
    assert store.audit("f")[0].action == "delete"
    assert store.audit("f")[0].author == "bob"
    assert len(store.audit("f")) == 4
    assert [f.name for f in store.all()] == ["f"]  # by its default
    assert [f.name for f in FlagStore(shared).all()] == []  # audit entries are no flag
    entries = len(shared._state._regs)
    assert store.delete("f") is False  # nothing left: nothing written
    assert store.delete("never") is False
    assert len(shared._state._regs) == entries
    store.enable("f")
    with pytest.raises(ValueError, match="author"):
        store.delete("f", author=7)  # type: ignore[arg-type]
    assert store.flag("f").boolean is True  # checked whole: nothing removed


def test_bad_defaults_are_refused() -> None:
    with pytest.raises(ValueError, match="bool"):
        FlagStore(LocalMap(), defaults={"f": "yes"})  # type: ignore[dict-item]


def test_the_read_path_never_raises() -> None:
    store = FlagStore(LocalMap())
    store.enable_for_group("f", "beta")
    assert store.enabled("f", "ann", None) is False  # type: ignore[arg-type]
    assert store.enabled("unknown") is False
    assert store.enabled("f", 12, 5) is False  # type: ignore[arg-type]


def test_subscribers_hear_each_change_once_local_and_remote() -> None:
    here, there = LocalMap("here"), LocalMap("there")
    store = FlagStore(here)
    heard: list[frozenset[str]] = []
    store.subscribe(heard.append)
    store.enable("a")
    other = FlagStore(there)
    other.enable_for_actor("b", "ann")
    here.merge(there.state())  # a remote change arrives
    assert heard[0] == frozenset({"a"})
    assert frozenset({"b"}) in heard
    assert store.enabled("b", "ann")
    assert len([h for h in heard if "a" in h]) == 1  # the audit entry is no second change


def test_metadata_and_the_audit_log() -> None:
    store = FlagStore(LocalMap("node-1"), audit_retention=3)
    store.set_metadata(
        "f",
        description="New checkout",
        owner="payments",
        expires=datetime.date(2027, 1, 31),
        author="ann",
    )
    for i in range(5):
        store.enable("f", author=f"user{i}")
    flag = store.flag("f")
    assert (flag.description, flag.owner, flag.expires) == (
        "New checkout",
        "payments",
        "2027-01-31",
    )
    log = store.audit("f")
    assert len(log) == 3  # bounded
    assert [e.author for e in log] == ["user4", "user3", "user2"]  # newest first
    assert log[0].action == "enable"
    assert log[0].node == "node-1"
    assert log[0].timestamp > log[1].timestamp


def test_all_lists_cluster_flags_and_defaults() -> None:
    store = FlagStore(LocalMap(), defaults={"z": False})
    store.enable("a")
    assert [f.name for f in store.all()] == ["a", "z"]
    assert store.flag("z").default is False


@given(
    actor=st.text(max_size=20),
    flag=st.text(min_size=1, max_size=20),
    ratio=st.floats(0, 1),
    actors=st.dictionaries(st.text(max_size=3), st.booleans(), max_size=3),
    groups=st.dictionaries(st.text(max_size=3), st.booleans(), max_size=3),
    member_of=st.lists(st.text(max_size=3), max_size=3),
    boolean=st.none() | st.booleans(),
)
def test_the_fast_path_agrees_with_explain(
    actor: str,
    flag: str,
    ratio: float,
    actors: dict[str, bool],
    groups: dict[str, bool],
    member_of: list[str],
    boolean: bool | None,
) -> None:
    from flags._rules import Rules

    rules = Rules(flag, boolean, actors, groups, percentage_of_actors=ratio)
    assert rules.enabled(actor, member_of) == rules.explain(actor, member_of)[0]


def test_metadata_lists_the_fields_set_and_ignores_malformed_ones() -> None:
    flags_map = LocalMap()
    store = FlagStore(flags_map)
    assert store.metadata("checkout") == {}
    store.set_metadata("checkout", description="new flow", expires="2027-01-31")
    flags_map.set(("checkout", "meta", "owner"), 42)  # a peer's malformed entry
    assert store.metadata("checkout") == {"description": "new flow", "expires": "2027-01-31"}
