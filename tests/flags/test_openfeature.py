"""ChorusProvider through the real openfeature-sdk client API."""

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

import flags
from flags import Evaluation, FlagStore, LocalMap
from flags.openfeature import ChorusProvider
from tests.helpers import eventually


@pytest.fixture
def store() -> Iterator[FlagStore]:
    here = LocalMap("here")
    flags = FlagStore(here, defaults={"dark-mode": True})
    api.set_provider(ChorusProvider(flags))
    yield flags
    api.shutdown()


def ctx(actor: str | None = None, groups: Any = ()) -> EvaluationContext:
    return EvaluationContext(targeting_key=actor, attributes={"groups": groups})


def test_values_and_reasons(store: FlagStore) -> None:
    client = api.get_client()
    store.enable("checkout")
    store.disable_for_actor("checkout", "bob")
    store.enable_for_group("beta-ui", "beta")
    store.enable_percentage_of_actors("ramp", 1.0)

    details = client.get_boolean_details("checkout", False)
    assert (details.value, details.reason) == (True, Reason.STATIC)
    details = client.get_boolean_details("checkout", True, ctx("bob"))
    assert (details.value, details.reason) == (False, Reason.TARGETING_MATCH)
    details = client.get_boolean_details("beta-ui", False, ctx("ann", ["beta"]))
    assert (details.value, details.reason) == (True, Reason.TARGETING_MATCH)
    details = client.get_boolean_details("beta-ui", True, ctx("ann"))
    assert (details.value, details.reason) == (False, Reason.DEFAULT)
    details = client.get_boolean_details("ramp", False, ctx("ann"))
    assert (details.value, details.reason) == (True, Reason.SPLIT)
    details = client.get_boolean_details("dark-mode", False)
    assert (details.value, details.reason) == (True, Reason.DEFAULT)
    assert client.get_boolean_value("checkout", False) is True


def test_errors_per_the_spec(store: FlagStore) -> None:
    client = api.get_client()
    missing = client.get_boolean_details("nope", True)
    assert (missing.value, missing.reason, missing.error_code) == (
        True,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    for unknown in (
        client.get_string_details("nope", "fallback"),
        client.get_integer_details("nope", 7),
        client.get_float_details("nope", 0.5),
        client.get_object_details("nope", {"a": 1}),
    ):  # FLAG_NOT_FOUND before TYPE_MISMATCH
        assert (unknown.reason, unknown.error_code) == (Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    assert client.get_string_details("nope", "fallback").value == "fallback"
    store.enable("checkout")
    mismatch = client.get_string_details("checkout", "fallback")
    assert (mismatch.value, mismatch.error_code) == ("fallback", ErrorCode.TYPE_MISMATCH)
    bad = client.get_boolean_details("checkout", False, ctx("ann", "not-a-list"))
    assert (bad.value, bad.error_code) == (False, ErrorCode.INVALID_CONTEXT)


def test_configuration_changed_events_for_local_and_remote_changes(store: FlagStore) -> None:
    changed: list[list[str] | None] = []
    both = threading.Event()

    def handler(details: EventDetails) -> None:  # runs on the SDK's worker thread
        changed.append(details.flags_changed)
        if len(changed) >= 2:
            both.set()

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
    try:
        store.enable("local-flag")
        there = LocalMap("there")
        FlagStore(there).enable_for_actor("remote-flag", "ann")
        store._map.merge(there.state())  # type: ignore[attr-defined]  # a remote change
        assert both.wait(5)
        assert ["local-flag"] in changed
        assert ["remote-flag"] in changed
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)


def test_metadata() -> None:
    assert ChorusProvider(FlagStore(LocalMap())).get_metadata().name == "chorus"


def test_flag_metadata_on_every_resolution(store: FlagStore) -> None:
    client = api.get_client()
    store.enable_for_group("checkout", "beta")
    store.set_metadata("checkout", description="new flow", owner="payments", expires="2027-01-31")
    meta = {"description": "new flow", "owner": "payments", "expires": "2027-01-31"}
    assert client.get_boolean_details("checkout", False).flag_metadata == meta
    assert client.get_boolean_details("checkout", False, ctx("a", ["beta"])).flag_metadata == meta
    assert client.get_boolean_details("checkout", False, ctx("a", "beta")).flag_metadata == meta
    assert client.get_string_details("checkout", "x").flag_metadata == meta
    store.set_metadata("dark-mode", owner="design")  # only the fields set
    assert client.get_boolean_details("dark-mode", False).flag_metadata == {"owner": "design"}
    assert client.get_boolean_details("nope", False).flag_metadata == {}


# -- typed flags -----------------------------------------------------------------------

#: A value of each type, a second one, and the caller's default asked with it.
VALUES: dict[str, tuple[Any, Any, Any]] = {
    "boolean": (True, False, False),
    "string": ("blue", "green", "grey"),
    "integer": (3, 7, -1),
    "float": (0.25, 2.0, -1.5),
    "object": ({"size": [1, 2], "theme": {"dark": True}}, {"size": []}, {"d": 0}),
}


def details(kind: str, name: str, default: Any, context: EvaluationContext | None = None) -> Any:
    """``get_<kind>_details`` of the OpenFeature client."""
    getter = getattr(api.get_client(), f"get_{kind}_details")
    return getter(name, default, context)


def typed(store: FlagStore, kind: str, name: str | None = None) -> str:
    """A flag of ``kind`` named ``name`` (default: the kind), switched on, variants
    ``one`` and ``two`` (`VALUES`), serving ``two`` by default."""
    name = name or kind
    one, two, _ = VALUES[kind]
    store.set_variants(name, {"one": one, "two": two}, type=kind)
    store.set_fallthrough(name, {"variant": "two"})
    store.enable(name)
    return name


def country(*values: str) -> dict[str, Any]:
    return {"attribute": "country", "op": "in", "values": list(values)}


@pytest.mark.parametrize("kind", list(VALUES))
def test_every_type_through_the_client(store: FlagStore, kind: str) -> None:
    name = typed(store, kind)
    store.set_rule(name, "fr", serve={"variant": "one"}, conditions=[country("fr")])
    store.set_metadata(name, owner="growth")
    one, two, default = VALUES[kind]
    got = details(kind, name, default)
    assert (got.value, got.variant, got.reason, got.error_code) == (two, "two", "DEFAULT", None)
    assert got.flag_metadata == {"owner": "growth", "type": kind, "detail": "boolean"}
    got = details(kind, name, default, EvaluationContext("ann", {"country": "fr"}))
    assert (got.value, got.variant, got.reason) == (one, "one", Reason.TARGETING_MATCH)
    assert got.flag_metadata["detail"] == "fr"  # the rule
    getter = getattr(api.get_client(), f"get_{kind}_value")
    assert getter(name, default) == two


def test_each_reason(store: FlagStore) -> None:
    name = typed(store, "string")
    store.set_variant(name, "three", "red")
    store.set_rule(name, "fr", serve={"variant": "one"}, conditions=[country("fr")])
    store.set_rule(name, "ab", serve={"split": {"two": 1, "three": 1}}, conditions=[country("de")])
    fr, de = (
        EvaluationContext("ann", {"country": "fr"}),
        EvaluationContext("ann", {"country": "de"}),
    )

    def answer(context: EvaluationContext | None = None) -> tuple[Any, ...]:
        got = details("string", name, "grey", context)
        return got.value, got.variant, got.reason, got.error_code

    assert answer(fr) == ("blue", "one", Reason.TARGETING_MATCH, None)
    value, variant, reason, code = answer(de)
    assert (variant in ("two", "three"), reason, code) == (True, Reason.SPLIT, None)
    assert answer(de) == (value, variant, reason, code)  # the same actor, the same arm
    assert answer() == ("green", "two", Reason.DEFAULT, None)  # the fallthrough
    store.set_fallthrough(name, None)
    assert answer() == ("grey", None, Reason.DEFAULT, None)  # none: the caller's default
    store.disable(name)  # the gates say off: the off variant, else the default
    assert answer(fr) == ("grey", None, Reason.DISABLED, None)
    store.set_off_variant(name, "three")
    assert answer(fr) == ("red", "three", Reason.DISABLED, None)

    store.enable(name)
    store.delete_variant(name, "one")  # the rule "fr" now serves nothing: an ERROR
    got = details("string", name, "grey", fr)
    assert (got.value, got.variant, got.reason, got.error_code) == (
        "grey",
        None,
        Reason.ERROR,
        ErrorCode.GENERAL,
    )
    assert got.error_message == f"flag {name!r}: variant one: no such variant of string flag {name}"
    assert got.flag_metadata == {
        "type": "string",
        "detail": "variant one: no such variant of string flag string",
    }


def test_typed_boolean_flags_answer_as_evaluate_does(store: FlagStore) -> None:
    store.enable_for_group("b", "beta")
    store.set_rule("b", "fr", serve={"variant": "false"}, conditions=[country("fr")])
    got = details("boolean", "b", True, EvaluationContext("ann", {"groups": ["beta"]}))
    # Gates that say on, no fallthrough: True, "true" (the store's implicit variant).
    assert (got.value, got.variant, got.reason) == (True, "true", Reason.TARGETING_MATCH)
    got = details(
        "boolean", "b", True, EvaluationContext("ann", {"groups": ["beta"], "country": "fr"})
    )
    assert (got.value, got.variant, got.reason) == (False, "false", Reason.TARGETING_MATCH)
    got = details("boolean", "b", True, EvaluationContext("ann"))
    assert (got.value, got.variant, got.reason) == (False, "false", Reason.DISABLED)
    # A flag of gates alone keeps its old answers: variant "on"/"off", STATIC.
    store.enable("gates")
    got = details("boolean", "gates", False)
    assert (got.value, got.variant, got.reason, got.flag_metadata) == (
        True,
        "on",
        Reason.STATIC,
        {},
    )


def test_type_mismatch_and_flag_not_found_for_every_type(store: FlagStore) -> None:
    for kind in VALUES:
        typed(store, kind)
    store.enable("gates")
    for asked, (_, _, default) in VALUES.items():
        for kind in (*VALUES, "gates"):
            if kind == asked or (asked, kind) == ("boolean", "gates"):
                continue
            got = details(asked, kind, default)
            assert (got.value, got.variant, got.reason, got.error_code) == (
                default,
                None,
                Reason.ERROR,
                ErrorCode.TYPE_MISMATCH,
            ), (asked, kind)
            flag_type = "boolean" if kind == "gates" else kind
            assert got.error_message == f"flag {kind!r} is a {flag_type} flag, asked for a {asked}"
        missing = details(asked, "nope", default)
        assert (missing.value, missing.error_code) == (default, ErrorCode.FLAG_NOT_FOUND)
    # No number is converted: the SDK's own check refuses an int for a float too.
    got = details("float", "integer", 0.5)
    assert (got.value, got.error_code) == (0.5, ErrorCode.TYPE_MISMATCH)
    assert got.flag_metadata == {"type": "integer"}
    got = details("integer", "boolean", 0)  # bool is an int in Python, not here
    assert (got.value, got.error_code) == (0, ErrorCode.TYPE_MISMATCH)


class Recording:
    """A FlagStore that records the arguments of each `evaluate`."""

    def __init__(self, store: FlagStore) -> None:
        self._store = store
        self.calls: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def evaluate(self, name: str, default: Any, **context: Any) -> Evaluation:
        self.calls.append(context)
        return self._store.evaluate(name, default, **context)


def test_the_context_mapping() -> None:
    store = FlagStore(LocalMap())
    recording = Recording(store)
    api.set_provider(ChorusProvider(recording))
    try:
        name = typed(store, "integer")
        store.set_rule(
            name,
            "ann",
            serve={"variant": "one"},
            conditions=[{"attribute": "actor", "op": "in", "values": ["ann"]}],
        )
        store.set_rule(
            name,
            "beta",
            serve={"variant": "one"},
            conditions=[{"attribute": "groups", "op": "in", "values": ["beta"]}],
        )
        store.set_rule(name, "fr", serve={"variant": "one"}, conditions=[country("fr")])
        context = EvaluationContext("ann", {"groups": ["beta", "staff"], "country": "fr", "n": 2})
        assert details("integer", name, 0, context).flag_metadata["detail"] == "ann"
        assert recording.calls[-1] == {
            "actor": "ann",
            "groups": ["beta", "staff"],
            "attributes": {"country": "fr", "n": 2},  # not "groups"
        }
        got = details("integer", name, 0, EvaluationContext("bob", {"groups": ["beta"]}))
        assert got.flag_metadata["detail"] == "beta"
        got = details("integer", name, 0, EvaluationContext("bob", {"country": "fr"}))
        assert got.flag_metadata["detail"] == "fr"
        assert details("integer", name, 0, EvaluationContext("", {})).variant == "two"
        assert recording.calls[-1] == {"actor": None, "groups": (), "attributes": None}
        details("integer", name, 0)  # no context at all
        assert recording.calls[-1] == {"actor": None, "groups": (), "attributes": None}
        before = len(recording.calls)
        bad_groups: list[Any] = ["beta", ["beta", 3], None]
        for bad in bad_groups:
            got = details("integer", name, 0, EvaluationContext("ann", {"groups": bad}))
            assert (got.value, got.error_code) == (0, ErrorCode.INVALID_CONTEXT)
        assert len(recording.calls) == before  # refused before evaluating
    finally:
        api.shutdown()


def test_object_values_are_copies(store: FlagStore) -> None:
    name = typed(store, "object")
    store.set_rule(name, "fr", serve={"variant": "one"}, conditions=[country("fr")])
    fr = EvaluationContext("ann", {"country": "fr"})
    got = details("object", name, {}, fr).value
    assert got == {"size": [1, 2], "theme": {"dark": True}}
    assert type(got) is dict
    got["size"].append(3)
    got["theme"]["dark"] = False
    got["new"] = 1
    assert details("object", name, {}, fr).value == {"size": [1, 2], "theme": {"dark": True}}
    assert store.evaluate(name, {}, attributes={"country": "fr"}).value == VALUES["object"][0]
    provider = ChorusProvider(store)  # two answers never share a list or dict
    a: Any = provider.resolve_object_details(name, {}, fr).value
    b: Any = provider.resolve_object_details(name, {}, fr).value
    assert a == b
    assert a is not b
    assert a["size"] is not b["size"]
    default = [1, 2]  # OpenFeature's object type is a dict or a list: a list default
    got = details("object", "nope", default)
    assert (got.value, got.error_code) == (default, ErrorCode.FLAG_NOT_FOUND)
    store.set_fallthrough(name, None)
    assert details("object", name, default).value == [1, 2]


def test_configuration_changed_for_typed_changes(store: FlagStore) -> None:
    changed: list[list[str] | None] = []
    lock = threading.Lock()

    def handler(details: EventDetails) -> None:
        with lock:
            changed.append(details.flags_changed)

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
    try:
        name = typed(store, "float")
        store.set_rule(name, "fr", serve={"variant": "one"}, conditions=[country("fr")])
        store.set_off_variant(name, "one")
        store.delete_variant(name, "one")
        store.set_variant(name, "one", 9.5)
        writes = 3 + 4  # typed(): set_variants, set_fallthrough, enable
        assert eventually(lambda: len(changed) >= writes)
        assert changed == [[name]] * writes
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, handler)


# The property: random typed flags and contexts, the provider through the SDK client
# against FlagStore.evaluate.
ACTORS, GROUPS, COUNTRIES = ["ann", "bob", "cy"], ["beta", "staff"], ["fr", "de", "us"]
VALUE_OF = {
    "boolean": st.booleans(),
    "string": st.text(max_size=4),
    "integer": st.integers(-(2**40), 2**40),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "object": st.dictionaries(
        st.text(max_size=3),
        st.none()
        | st.booleans()
        | st.integers()
        | st.text(max_size=3)
        | st.lists(st.integers(), max_size=2),
        max_size=3,
    ),
}
CONDITION = st.one_of(
    st.builds(country, st.sampled_from(COUNTRIES)),
    st.builds(
        lambda op, n: {"attribute": "age", "op": op, "values": [n]},
        st.sampled_from(["lt", "gte"]),
        st.integers(0, 100),
    ),
    st.builds(lambda a: {"attribute": "actor", "op": "in", "values": [a]}, st.sampled_from(ACTORS)),
    st.builds(
        lambda g: {"attribute": "groups", "op": "in", "values": [g]}, st.sampled_from(GROUPS)
    ),
)


@st.composite
def typed_flags(draw: st.DrawFn, kind: str) -> FlagStore:
    """A FlagStore holding flag "f" of type ``kind``: random variants, gates, off
    variant, fallthrough, rules, and perhaps a variant deleted under them (ERROR)."""
    names = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, unique=True))
    serve = st.one_of(
        st.builds(lambda v: {"variant": v}, st.sampled_from(names)),
        st.builds(
            lambda w: {"split": w},
            st.dictionaries(st.sampled_from(names), st.integers(1, 100), min_size=1),
        ),
    )
    store = FlagStore(LocalMap())
    store.set_variants("f", {v: draw(VALUE_OF[kind]) for v in names}, type=kind)
    gate = draw(st.sampled_from(["enable", "disable", None]))
    if gate is not None:
        getattr(store, gate)("f")
    for actor, on in draw(
        st.dictionaries(st.sampled_from(ACTORS), st.booleans(), max_size=2)
    ).items():
        (store.enable_for_actor if on else store.disable_for_actor)("f", actor)
    for group, on in draw(
        st.dictionaries(st.sampled_from(GROUPS), st.booleans(), max_size=1)
    ).items():
        (store.enable_for_group if on else store.disable_for_group)("f", group)
    if draw(st.booleans()):
        store.enable_percentage_of_actors("f", draw(st.sampled_from([0.3, 0.7])))
    store.set_off_variant("f", draw(st.none() | st.sampled_from(names)))
    store.set_fallthrough("f", draw(st.none() | serve))
    for i in range(draw(st.integers(0, 3))):
        store.set_rule(
            "f", f"r{i}", serve=draw(serve), conditions=draw(st.lists(CONDITION, max_size=2))
        )
    if draw(st.booleans()):
        store.delete_variant("f", draw(st.sampled_from(names)))
    return store


CONTEXTS = st.builds(
    lambda actor, groups, attributes: EvaluationContext(actor, {"groups": groups, **attributes}),
    st.sampled_from(ACTORS),  # always an actor: without one a split picks at random
    st.lists(st.sampled_from(GROUPS), unique=True),
    st.fixed_dictionaries(
        {}, optional={"country": st.sampled_from(COUNTRIES), "age": st.integers(0, 100)}
    ),
)
DEFAULTS = {"boolean": False, "string": "dflt", "integer": -1, "float": -1.5, "object": {"d": 1}}


@pytest.mark.parametrize("kind", list(VALUE_OF))
def test_the_provider_answers_as_evaluate_does(kind: str) -> None:
    @settings(max_examples=50)
    @given(store=typed_flags(kind), contexts=st.lists(CONTEXTS, min_size=1, max_size=4))
    def check(store: FlagStore, contexts: list[EvaluationContext]) -> None:
        api.set_provider(ChorusProvider(store), domain="property")
        client = api.get_client(domain="property")
        for context in contexts:
            got = getattr(client, f"get_{kind}_details")("f", DEFAULTS[kind], context)
            attributes: dict[str, Any] = dict(context.attributes)
            groups = attributes.pop("groups")
            want = store.evaluate(
                "f",
                DEFAULTS[kind],
                actor=context.targeting_key,
                groups=groups,
                attributes=attributes,
            )
            assert (got.value, got.variant) == (want.value, want.variant)
            if want.reason == "ERROR":
                assert (got.reason, got.error_code) == (Reason.ERROR, ErrorCode.GENERAL)
            else:
                assert (got.reason, got.error_code) == (want.reason, None)

    try:
        check()
    finally:
        api.shutdown()


class Source:
    """A readiness source the test drives: ``reason`` (None = ready) and ``connected``."""

    def __init__(self) -> None:
        self.reason: str | None = "not synced with the cluster yet"
        self.connected = True

    def provider(self, store: FlagStore, **options: Any) -> ChorusProvider:
        return ChorusProvider(
            store, ready=lambda: self.reason, connected=lambda: self.connected, **options
        )


@pytest.fixture
def events() -> Iterator[list[tuple[ProviderEvent, EventDetails]]]:
    """Provider events seen by the client's handlers (see `_handle`); shuts the SDK down."""
    seen: list[tuple[ProviderEvent, EventDetails]] = []
    try:
        yield seen
    finally:
        api.shutdown()


def _handle(seen: list[tuple[ProviderEvent, EventDetails]]) -> None:
    """Record the status events of the default client's provider in ``seen``."""

    def recorder(kind: ProviderEvent) -> Callable[[EventDetails], None]:
        return lambda details: seen.append((kind, details))

    for kind in (
        ProviderEvent.PROVIDER_READY,
        ProviderEvent.PROVIDER_STALE,
        ProviderEvent.PROVIDER_ERROR,
    ):
        api.get_client().add_handler(kind, recorder(kind))


def test_not_ready_until_synced_stale_while_cut_off_ready_otherwise(
    events: list[tuple[ProviderEvent, EventDetails]],
) -> None:
    store = FlagStore(LocalMap("here"))
    store.enable("checkout")
    source = Source()
    provider = source.provider(store, poll_s=0.01)
    assert provider.status is ProviderStatus.NOT_READY
    api.set_provider(provider)
    client = api.get_client()
    _handle(events)

    # NOT_READY: the caller's default, reason ERROR, PROVIDER_NOT_READY (spec 1.7.6).
    assert client.get_provider_status() is ProviderStatus.NOT_READY
    details = client.get_boolean_details("checkout", False)
    assert (details.value, details.reason, details.error_code) == (
        False,
        Reason.ERROR,
        ErrorCode.PROVIDER_NOT_READY,
    )
    direct = provider.resolve_boolean_details("checkout", False)
    assert (direct.value, direct.error_code) == (False, ErrorCode.PROVIDER_NOT_READY)
    assert provider.not_ready_reason == "not synced with the cluster yet"

    source.reason = None
    assert eventually(lambda: client.get_provider_status() is ProviderStatus.READY)
    assert client.get_boolean_details("checkout", False).value is True

    source.connected = False  # cut off from every peer
    assert eventually(lambda: client.get_provider_status() is ProviderStatus.STALE)
    assert provider.status.name == "STALE"  # the provider's own view
    assert eventually(lambda: any(k is ProviderEvent.PROVIDER_STALE for k, _ in events))
    details = client.get_boolean_details("checkout", False)  # still answers
    assert (details.value, details.reason) == (True, Reason.STATIC)

    source.connected = True
    assert eventually(lambda: client.get_provider_status() is ProviderStatus.READY)

    source.reason = "shutting down"  # not ready again: an error event, then defaults
    assert eventually(lambda: client.get_provider_status() is ProviderStatus.ERROR)
    assert eventually(
        lambda: any(
            k is ProviderEvent.PROVIDER_ERROR and d.error_code == ErrorCode.PROVIDER_NOT_READY
            for k, d in events
        )
    )
    details = client.get_boolean_details("checkout", False)
    assert (details.value, details.error_code) == (False, ErrorCode.PROVIDER_NOT_READY)

    source.reason = None
    assert eventually(lambda: client.get_provider_status() is ProviderStatus.READY)
    kinds = [k for k, _ in events]
    assert kinds.count(ProviderEvent.PROVIDER_STALE) == 1
    assert kinds.count(ProviderEvent.PROVIDER_ERROR) == 1


def test_initialize_gives_up_then_ready_follows(
    events: list[tuple[ProviderEvent, EventDetails]],
) -> None:
    source = Source()
    provider = source.provider(FlagStore(LocalMap()), poll_s=0.01, init_timeout_s=0.05)
    api.set_provider(provider)
    client = api.get_client()
    assert eventually(lambda: client.get_provider_status() is ProviderStatus.ERROR)
    details = client.get_boolean_details("x", True)
    assert (details.value, details.error_code) == (True, ErrorCode.PROVIDER_NOT_READY)
    source.reason = None
    assert eventually(lambda: client.get_provider_status() is ProviderStatus.READY)


def test_without_a_source_always_ready() -> None:
    provider = ChorusProvider(FlagStore(LocalMap()))
    assert provider.status is ProviderStatus.READY
    api.set_provider(provider)
    try:
        assert eventually(lambda: api.get_client().get_provider_status() is ProviderStatus.READY)
    finally:
        api.shutdown()


SECRET = "c1e7a9b3d5f20486a8c4e6b1d3f5a7c9"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0}


@pytest.mark.timeout(60)
def test_from_client_over_a_real_cluster(
    tmp_path: Path, events: list[tuple[ProviderEvent, EventDetails]]
) -> None:
    a = flags.connect([], secret=SECRET, lock_dir=tmp_path, **FAST)
    b = flags.connect([a.address or ""], secret=SECRET, lock_dir=tmp_path, **FAST)
    try:
        a.enable("checkout")
        a.set_metadata("checkout", owner="payments")
        a.set_variants("color", {"blue": "#00f", "green": "#0f0"}, type="string")
        a.set_fallthrough("color", {"variant": "green"})
        a.set_rule("color", "fr", serve={"variant": "blue"}, conditions=[country("fr")])
        a.enable("color")
        assert eventually(lambda: b.known("checkout"))
        assert eventually(lambda: b.evaluate("color", "grey").variant == "green")
        provider = ChorusProvider.from_client(b, poll_s=0.05)
        api.set_provider(provider)
        client = api.get_client()
        _handle(events)
        assert eventually(lambda: client.get_provider_status() is ProviderStatus.READY)
        details = client.get_boolean_details("checkout", False)
        assert (details.value, details.flag_metadata) == (True, {"owner": "payments"})
        assert (details.variant, details.reason) == ("on", Reason.STATIC)  # gates alone
        color = client.get_string_details(
            "color", "grey", EvaluationContext("ann", {"country": "fr"})
        )
        assert (color.value, color.variant, color.reason) == (
            "#00f",
            "blue",
            "TARGETING_MATCH",
        )
        assert client.get_string_details("color", "grey").variant == "green"
        assert client.get_integer_details("color", 0).error_code == ErrorCode.TYPE_MISMATCH

        a.background.stop()  # a crashes: still a member, no longer live
        assert eventually(lambda: client.get_provider_status() is ProviderStatus.STALE)
        assert client.get_boolean_details("checkout", False).value is True

        b.close(drain_s=0)  # reads now raise: not ready
        assert eventually(lambda: client.get_provider_status() is ProviderStatus.ERROR)
        details = client.get_boolean_details("checkout", False)
        assert (details.value, details.error_code) == (False, ErrorCode.PROVIDER_NOT_READY)
    finally:
        b.close(drain_s=0)
        with contextlib.suppress(Exception):
            a.close(drain_s=0)
