"""Entries the FlagStore does not know: ignored, logged, counted, never fatal.

The flags map is an ordinary replicated map: anyone holding ``node.map("flags")``,
or another version of the software, can put any key and value in it. A malformed
entry must cost nothing but itself: not a read, not a batch, not another flag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from starlette.testclient import TestClient

from flags import FlagStore, LocalMap
from flags.http import create_app

# -- helpers ---------------------------------------------------------------------------


@contextmanager
def logged(level: int = logging.ERROR) -> Iterator[list[logging.LogRecord]]:
    """Collect records at ``level`` or above from ``chorus.flags`` (usable under
    hypothesis, unlike the function-scoped ``caplog``). LocalMap logs a subscriber
    that raised there too, so an exception on the change path shows up here."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level)
    logger = logging.getLogger("chorus.flags")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def map_of(entries: dict[Any, Any], node: str = "there") -> LocalMap:
    """A LocalMap holding ``entries``, written through the raw map."""
    shared = LocalMap(node)
    for key, value in entries.items():
        shared.set(key, value)
    return shared


# -- the regression: one bad key turned every flag off on a restarted node ----------

FLAGS_ON = [f"flag-{i:02}" for i in range(60)]
OOPS = ("oops", "actor")  # an actor gate without its actor: the key that broke GET /flags


def test_one_malformed_key_neither_turns_60_flags_off_nor_breaks_reads() -> None:
    there = LocalMap("there")
    writer = FlagStore(there)
    for name in FLAGS_ON:
        writer.enable(name)
    with logged(logging.WARNING) as records:
        there.set(OOPS, True)  # through the raw map, as another version might
    assert writer.ignored_entries == 1
    assert all(writer.enabled(name) for name in FLAGS_ON)
    warnings = [r for r in records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "('oops', 'actor')" in warnings[0].getMessage()

    # A node joining: the 60 flags and the bad key arrive in one change batch.
    here = LocalMap("here")
    joiner = FlagStore(here)
    batches: list[frozenset[Any]] = []
    here.subscribe(batches.append)
    with logged() as errors:
        here.merge(there.state())
    assert len(batches) == 1
    assert OOPS in batches[0]
    assert {("flag-00", "boolean"), ("flag-59", "boolean")} <= batches[0]
    assert errors == []  # nothing raised inside the change path
    assert [joiner.enabled(name) for name in FLAGS_ON] == [True] * 60
    assert joiner.ignored_entries == 1

    # A node restarting: the store is built over a map that already holds it all.
    restarted = FlagStore(there)
    assert [restarted.enabled(name) for name in FLAGS_ON] == [True] * 60
    assert restarted.ignored_entries == 1

    for store in (writer, joiner, restarted):
        assert [flag.name for flag in store.all()] == FLAGS_ON  # "oops" is not a flag
        assert all(flag.boolean is True for flag in store.all())
        assert not store.flag("oops").has_gates
        assert store.explain("oops") == (False, "no_gate")
        assert not store.enabled("oops", "actor")
        assert store.audit("oops") == []


def test_get_flags_answers_with_a_malformed_key_in_the_map() -> None:
    shared = LocalMap("n1")
    store = FlagStore(shared)
    for name in FLAGS_ON:
        store.enable(name)
    shared.set(OOPS, True)
    shared.set(("flag-00", "percentage_of_actors"), 250)  # out of range, on a good flag
    client = TestClient(
        create_app(store, token="t", node_id="n1", synced=lambda: True, cluster=lambda: {})
    )
    listing = client.get("/flags")
    assert listing.status_code == 200
    flags = listing.json()["flags"]
    assert [f["name"] for f in flags] == FLAGS_ON
    assert flags[0]["boolean"] is True
    assert flags[0]["percentage_of_actors"] is None
    one = client.get("/flags/oops", params={"actor": "actor"})
    assert one.status_code == 404  # its only entry is ignored: no such flag
    assert "error" in one.json()
    assert store.ignored_entries == 2


# -- each kind of malformed entry -------------------------------------------------------

MALFORMED: list[tuple[Any, Any]] = [
    (("f", "actor"), True),  # the target missing
    (("f", "group"), False),
    (("f", "boolean", "x"), True),  # a target too many
    (("f", "percentage_of_actors", "x"), 0.5),
    (("f", "actor", "ann", "x"), True),
    (("f", "actor", 7), True),  # wrong element types
    (("f", "group", b"beta"), True),
    (("f", "actor", ""), True),
    (("f", "actor", "a" * 201), True),
    (("f", 5), True),
    ((5, "boolean"), True),
    ((b"f", "boolean"), True),
    (("", "boolean"), True),
    (("f" * 201, "boolean"), True),
    (("f", "variant"), "blue"),  # an unknown kind
    (("f", "Boolean"), True),
    (("f",), True),  # too short, or not a tuple at all
    ((), True),
    ("f", True),
    (b"f", True),
    (7, True),
    (("f", "boolean"), "yes"),  # known key, value of the wrong type or range
    (("f", "boolean"), 1),
    (("f", "boolean"), None),
    (("f", "actor", "ann"), "true"),
    (("f", "group", "beta"), 0),
    (("f", "percentage_of_actors"), "abc"),
    (("f", "percentage_of_actors"), 250),
    (("f", "percentage_of_actors"), -0.1),
    (("f", "percentage_of_actors"), float("nan")),
    (("f", "percentage_of_actors"), float("inf")),
    (("f", "percentage_of_actors"), True),
    (("f", "percentage_of_actors"), 2**1024 - 1),  # float() of it would overflow
    (("f", "percentage_of_time"), [0.5]),
    (("f", "meta", "description"), 3),
    (("f", "meta", "description"), "x" * 2001),
    (("f", "meta", "expires"), "2027-01-31T00:00"),
    (("f", "meta", "expires"), "tomorrow"),
    (("f", "meta", "colour"), "red"),
    (("f", "meta"), "x"),
    (("f", "audit", 17), {"author": "ann"}),
    (("f", "audit", "2026"), "not a record"),
    (("f", "audit"), {}),
]


@pytest.mark.parametrize(("key", "value"), MALFORMED)
def test_a_malformed_entry_is_ignored_logged_and_counted(
    key: Any, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # f's gates sit on keys no entry above writes (overwriting one is the next test's).
    shared = LocalMap()
    store = FlagStore(shared)
    store.enable_for_group("f", "staff", author="ann")
    store.enable_for_actor("f", "cy")
    store.set_metadata("f", owner="payments")
    store.enable("g")  # a bystander
    before, audit_before = store.flag("f"), store.audit("f")
    with caplog.at_level(logging.WARNING, logger="chorus.flags"):
        shared.set(key, value)
    assert store.ignored_entries == 1
    [record] = [r for r in caplog.records if r.name == "chorus.flags"]
    assert record.levelno == logging.WARNING
    assert "ignoring map entry" in record.getMessage()
    for reader in (store, FlagStore(shared)):  # live, and again from scratch (a restart)
        assert reader.flag("f") == before
        assert reader.audit("f") == audit_before
        assert reader.enabled("f", "ann", ["staff"])
        assert reader.enabled("f", "cy")
        assert not reader.enabled("f", "dee")
        assert reader.explain("f", "cy") == (True, "actor")
        assert reader.enabled("g")
        assert [flag.name for flag in reader.all()] == ["f", "g"]


def test_the_logged_key_is_cut_to_about_200_chars(caplog: pytest.LogCaptureFixture) -> None:
    store = FlagStore(LocalMap())
    with caplog.at_level(logging.WARNING, logger="chorus.flags"):
        store._map.set(("x" * 10_000, "boolean"), True)
        # An int whose repr() raises cannot be a key at all: peers could not decode it.
        with pytest.raises(TypeError, match="int keys"):
            store._map.set((10**5000, "boolean"), True)
    assert store.ignored_entries == 1
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert all(len(m) < 400 for m in messages)
    assert "'xxxx" in messages[0]


def test_a_gate_that_turns_malformed_reads_as_absent_and_back() -> None:
    shared = LocalMap()
    store = FlagStore(shared, defaults={"d": True})
    heard: list[frozenset[str]] = []
    store.subscribe(heard.append)
    store.enable("f")
    store.disable("d")
    store.enable_percentage_of_actors("p", 1.0)
    assert store.enabled("f")
    assert not store.enabled("d")
    assert store.enabled("p", "ann")

    shared.set(("f", "boolean"), "yes")  # the only gate of f, now unreadable
    shared.set(("d", "boolean"), "no")
    shared.set(("p", "percentage_of_actors"), 250)
    assert store.ignored_entries == 3
    assert not store.enabled("f")  # no gate left: off, not the stale True
    assert store.explain("f") == (False, "no_gate")
    assert store.enabled("d")  # no gate left: its default again
    assert store.explain("d") == (True, "default")
    assert not store.enabled("p", "ann")
    assert store.flag("p").percentage_of_actors is None
    assert frozenset({"f"}) in heard  # subscribers hear that f changed

    store.enable("f")
    store.enable_percentage_of_actors("p", 1.0)
    assert store.enabled("f")
    assert store.enabled("p", "ann")
    assert store.ignored_entries == 3


class HeldMap(LocalMap):
    """A LocalMap whose change notifications can be held back: what a reader in
    another thread sees while the node's thread has applied a change to the map
    but not yet told the store (BackgroundNode)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.held: list[Any] = []

    def _notify(self, changed: Any) -> None:
        if self.holding:
            self.held.append(changed)
        else:
            super()._notify(changed)

    def release(self) -> None:
        self.holding = False
        for changed in self.held:
            super()._notify(changed)
        self.held.clear()


def test_reads_recheck_a_value_that_changed_before_its_notification() -> None:
    shared = HeldMap()
    store = FlagStore(shared)
    store.enable_percentage_of_actors("p", 1.0)
    store.enable_for_actor("p", "ann")
    shared.holding = True
    shared.set(("p", "percentage_of_actors"), "abc")
    shared.set(("p", "actor", "ann"), 2**1024 - 1)
    assert store.flag("p").percentage_of_actors is None  # neither "abc" nor a raise
    assert store.flag("p").actors == {}
    assert [flag.name for flag in store.all()] == ["p"]
    assert store.enabled("p", "bob")  # the snapshot: the last rules it built
    assert store.ignored_entries == 0  # counted when the change arrives, not on reads
    shared.release()
    assert store.ignored_entries == 2
    assert not store.enabled("p", "bob")
    assert not store.flag("p").has_gates


def test_a_failure_on_one_key_or_flag_does_not_skip_the_rest_of_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug (not bad data) raising for one key or one flag: the batch goes on."""
    import flags._store as store_module

    there = LocalMap("there")
    for name in ("a", "b", "c", "d"):
        there.set((name, "boolean"), True)
    here = LocalMap("here")
    store = FlagStore(here)
    real_problem, real_compile = store_module._entry_problem, FlagStore._compile

    def problem(key: Any, value: Any) -> str | None:
        if key == ("b", "boolean"):
            raise RuntimeError("boom")
        return real_problem(key, value)

    def compile_(self: FlagStore, name: str) -> Any:
        if name == "c":
            raise RuntimeError("boom")
        return real_compile(self, name)

    monkeypatch.setattr(store_module, "_entry_problem", problem)
    monkeypatch.setattr(FlagStore, "_compile", compile_)
    with logged() as errors:
        here.merge(there.state())  # one batch: a, b, c, d
    assert store.enabled("a")
    assert store.enabled("d")
    assert not store.enabled("b")  # its key failed: ignored, counted
    assert not store.enabled("c")  # its rules failed: the old ones (none) kept
    assert store.ignored_entries == 1
    assert len(errors) == 2
    assert all("LocalMap" not in r.getMessage() for r in errors)  # not raised out


# -- the property: junk changes nothing about the valid flags --------------------------

NAMES = st.sampled_from(["a", "b", "c"])
IDS = st.sampled_from(["ann", "bob", "beta", "staff"])
GATE_KINDS = ["boolean", "actor", "group", "percentage_of_actors", "percentage_of_time"]
KNOWN_KINDS = [*GATE_KINDS, "meta", "audit"]


def entry(
    key: st.SearchStrategy[Any], value: st.SearchStrategy[Any]
) -> st.SearchStrategy[tuple[Any, Any]]:
    return st.tuples(key, value)


VALID_ENTRY = st.one_of(
    entry(st.tuples(NAMES, st.just("boolean")), st.booleans()),
    entry(st.tuples(NAMES, st.sampled_from(["actor", "group"]), IDS), st.booleans()),
    entry(st.tuples(NAMES, st.just("percentage_of_actors")), st.floats(0, 1) | st.integers(0, 1)),
    # 0 or 1 only: percentage of time is random in between.
    entry(st.tuples(NAMES, st.just("percentage_of_time")), st.sampled_from([0, 1, 0.0, 1.0])),
    entry(
        st.tuples(NAMES, st.just("meta"), st.sampled_from(["description", "owner"])),
        st.text(max_size=20),
    ),
    entry(st.tuples(NAMES, st.just("meta"), st.just("expires")), st.dates().map(str)),
    entry(
        st.tuples(NAMES, st.just("audit"), st.text(min_size=1, max_size=5)),
        st.fixed_dictionaries({"author": st.text(max_size=3), "action": st.just("enable")}),
    ),
)
VALID_ENTRIES = st.lists(VALID_ENTRY, max_size=15).map(dict)

ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
KEY_PART = st.recursive(
    st.text(max_size=5) | st.binary(max_size=5) | st.integers(),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=4,
)
NOT_A_NAME = (
    st.integers()
    | st.binary(max_size=5)
    | st.just("")
    | st.text(min_size=201, max_size=205)
    | st.lists(st.text(max_size=3), max_size=2).map(tuple)
)
UNKNOWN_KIND = st.text(max_size=8).filter(lambda k: k not in KNOWN_KINDS) | st.integers()
# The near misses, as often as anything else: what a careless check would take for a
# bool or for a ratio.
NOT_BOOL = st.sampled_from([0, 1, 0.0, 1.0, None]) | ANY_VALUE.filter(lambda v: type(v) is not bool)
NOT_RATIO = (
    st.sampled_from(
        [True, False, 2, -1, 1.001, 250, "0.5", float("nan"), float("inf"), 2**1024 - 1]
    )
    | st.none()
    | st.booleans()
    | st.text(max_size=5)
    | st.integers().filter(lambda i: i not in (0, 1))
    | st.floats().filter(lambda x: not 0 <= x <= 1)
    | st.lists(st.floats(0, 1), max_size=2)
)
# Keys of another shape, whatever their value.
BAD_KEY = st.one_of(
    entry(st.text(max_size=5) | st.binary(max_size=5) | st.integers(), ANY_VALUE),
    entry(st.lists(KEY_PART, max_size=1).map(tuple), ANY_VALUE),
    entry(st.tuples(NOT_A_NAME, st.sampled_from(KNOWN_KINDS)), ANY_VALUE),
    entry(st.tuples(NOT_A_NAME, st.sampled_from(["actor", "group"]), IDS), st.booleans()),
    entry(st.tuples(NAMES, UNKNOWN_KIND), ANY_VALUE),
    entry(st.tuples(NAMES, UNKNOWN_KIND, KEY_PART), ANY_VALUE),
    entry(
        st.tuples(NAMES, st.sampled_from(["boolean", "percentage_of_actors"]), KEY_PART),
        st.booleans() | st.floats(0, 1),
    ),
    entry(st.tuples(NAMES, st.sampled_from(["actor", "group", "meta", "audit"])), ANY_VALUE),
    entry(
        st.tuples(NAMES, st.sampled_from(["actor", "group"]), IDS, KEY_PART),
        st.booleans(),
    ),
    entry(st.tuples(NAMES, st.sampled_from(["actor", "group"]), NOT_A_NAME), st.booleans()),
    entry(
        st.tuples(
            NAMES,
            st.just("meta"),
            KEY_PART.filter(lambda p: p not in {"description", "owner", "expires"}),
        ),
        st.text(max_size=5),
    ),
    entry(st.tuples(NAMES, st.just("audit"), st.integers() | st.binary()), st.just({})),
)
# Known keys, values of the wrong type or range: the subtler half, drawn as often.
BAD_VALUE = st.one_of(
    entry(st.tuples(NAMES, st.just("boolean")), NOT_BOOL),
    entry(st.tuples(NAMES, st.sampled_from(["actor", "group"]), IDS), NOT_BOOL),
    entry(
        st.tuples(NAMES, st.sampled_from(["percentage_of_actors", "percentage_of_time"])),
        NOT_RATIO,
    ),
    entry(
        st.tuples(NAMES, st.just("meta"), st.sampled_from(["description", "owner"])),
        ANY_VALUE.filter(lambda v: type(v) is not str) | st.just("x" * 2001),
    ),
    entry(
        st.tuples(NAMES, st.just("meta"), st.just("expires")),
        st.sampled_from(["tomorrow", "", "2027-13-01", "31/01/2027", 20270131]),
    ),
    entry(
        st.tuples(NAMES, st.just("audit"), st.text(max_size=5)),
        NOT_BOOL.filter(lambda v: type(v) is not dict),
    ),
)
JUNK = st.lists(BAD_KEY | BAD_VALUE, min_size=1, max_size=10).map(dict)


def answers(store: FlagStore) -> dict[str, Any]:
    """Everything the store says about the valid flags, for one comparison."""
    probes = [(None, []), ("ann", []), ("bob", ["beta"]), ("cy", ["staff", "beta"])]
    return {
        "all": store.all(),
        "audit": store.audit(),
        "flags": {name: store.flag(name) for name in "abc"},
        "known": {name: store.known(name) for name in "abc"},
        "enabled": {(n, a, tuple(g)): store.enabled(n, a, g) for n in "abc" for a, g in probes},
        "explain": {(n, a, tuple(g)): store.explain(n, a, g) for n in "abc" for a, g in probes},
    }


@given(valid=VALID_ENTRIES, junk=JUNK, defaults=st.dictionaries(NAMES, st.booleans()))
@example(  # the near misses, every run: a careless check takes each for a gate
    valid={("a", "boolean"): True, ("b", "actor", "ann"): True, ("c", "group", "beta"): True},
    junk={
        ("a", "boolean"): 1,  # overwrites a valid gate
        ("b", "boolean"): 0,
        ("b", "actor", "bob"): 1.0,
        ("c", "group", "staff"): 0,
        ("c", "percentage_of_actors"): True,
        ("a", "percentage_of_actors"): 250,
        ("b", "percentage_of_time"): float("nan"),
        ("c", "percentage_of_time"): 2**1024 - 1,
        ("c", "actor"): True,  # the key of the original report
    },
    defaults={"a": False, "b": True},
)
def test_junk_in_the_map_changes_no_answer_about_the_valid_flags(
    valid: dict[Any, Any], junk: dict[Any, Any], defaults: dict[str, bool]
) -> None:
    # A junk entry on a valid entry's key replaces it: that gate is then absent.
    clean = {key: value for key, value in valid.items() if key not in junk}
    expected = answers(FlagStore(map_of(clean), defaults=defaults))

    with logged() as errors:
        # Restart: a store built over a map that already holds valid and junk entries.
        restarted = FlagStore(map_of({**valid, **junk}), defaults=defaults)
        # Join: everything arrives in one change batch.
        here = LocalMap("here")
        joiner = FlagStore(here, defaults=defaults)
        here.merge(map_of({**valid, **junk}).state())
        # Live: the valid entries, then the junk written over and among them.
        live_map = LocalMap("live")
        live = FlagStore(live_map, defaults=defaults)
        for key, value in [*valid.items(), *junk.items()]:
            live_map.set(key, value)

        for store in (restarted, joiner, live):
            assert answers(store) == expected
            assert store.ignored_entries == len(junk)
    assert errors == []  # nothing raised on the change path, nothing logged as a failure
