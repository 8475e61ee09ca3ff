"""ChorusProvider through the real openfeature-sdk client API."""

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from flags import FlagStore, LocalMap
from flags.openfeature import ChorusProvider


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
