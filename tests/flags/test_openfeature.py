"""ChorusProvider through the real openfeature-sdk client API."""

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus

import flags
from flags import FlagStore, LocalMap
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
        assert eventually(lambda: b.known("checkout"))
        provider = ChorusProvider.from_client(b, poll_s=0.05)
        api.set_provider(provider)
        client = api.get_client()
        _handle(events)
        assert eventually(lambda: client.get_provider_status() is ProviderStatus.READY)
        details = client.get_boolean_details("checkout", False)
        assert (details.value, details.flag_metadata) == (True, {"owner": "payments"})

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
