"""An OpenFeature provider over a FlagStore, for apps that use the OpenFeature SDK.

    from openfeature import api
    from flags.openfeature import ChorusProvider

    api.set_provider(ChorusProvider(store))
    client = api.get_client()
    context = EvaluationContext(targeting_key="user-42", attributes={"groups": ["beta"]})
    client.get_boolean_value("new-checkout", False, context)

Flags are booleans. The evaluation context's ``targeting_key`` is the actor and its
``groups`` attribute (a list of str) the groups. Reasons follow the OpenFeature spec:

- ``TARGETING_MATCH``: an actor or group gate decided;
- ``STATIC``: the boolean gate decided;
- ``SPLIT``: a percentage gate decided;
- ``DEFAULT``: no gate matched, or the store's default applied;
- ``ERROR``: with ``FLAG_NOT_FOUND`` (no gates, no default: the caller's default is
  returned), ``TYPE_MISMATCH`` (a non-boolean evaluation) or ``INVALID_CONTEXT``
  (``groups`` is not a list of str).

Every local or remote change emits ``PROVIDER_CONFIGURATION_CHANGED`` with the
changed flags in ``flags_changed`` (which OpenFeature's own InMemoryProvider cannot
do, open-feature/python-sdk#620). The SDK runs handlers on its own worker thread, a
moment after the change. Requires the ``openfeature-sdk`` package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from ._rules import (
    ACTOR,
    BOOLEAN,
    DEFAULT,
    GROUP,
    NO_GATE,
    PERCENTAGE_OF_ACTORS,
    PERCENTAGE_OF_TIME,
)
from ._store import FlagStore

__all__ = ["ChorusProvider"]

_REASONS = {
    ACTOR: Reason.TARGETING_MATCH,
    GROUP: Reason.TARGETING_MATCH,
    BOOLEAN: Reason.STATIC,
    PERCENTAGE_OF_ACTORS: Reason.SPLIT,
    PERCENTAGE_OF_TIME: Reason.SPLIT,
    DEFAULT: Reason.DEFAULT,
    NO_GATE: Reason.DEFAULT,
}


class ChorusProvider(AbstractProvider):
    """An OpenFeature provider answering from a `FlagStore` (see the module notes).

    Args:
        store: the flags to serve.
    """

    def __init__(self, store: FlagStore) -> None:
        super().__init__()
        self._store = store
        self._unsubscribe: Callable[[], None] | None = None

    def get_metadata(self) -> Metadata:
        return Metadata(name="chorus")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self._store.subscribe(self._changed)

    def shutdown(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _changed(self, names: frozenset[str]) -> None:
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=sorted(names)))

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        if not self._store.known(flag_key):
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f"flag {flag_key!r} has no gates and no default",
            )
        actor: str | None = None
        groups: Sequence[str] = ()
        if evaluation_context is not None:
            actor = evaluation_context.targeting_key or None
            raw = (evaluation_context.attributes or {}).get("groups", ())
            if not isinstance(raw, (list, tuple)) or not all(isinstance(g, str) for g in raw):
                return FlagResolutionDetails(
                    value=default_value,
                    reason=Reason.ERROR,
                    error_code=ErrorCode.INVALID_CONTEXT,
                    error_message="the 'groups' attribute must be a list of str",
                )
            groups = raw
        value, why = self._store.explain(flag_key, actor, groups)
        return FlagResolutionDetails(
            value=value, reason=_REASONS[why], variant="on" if value else "off"
        )

    def _mismatch(self, flag_key: str, default_value: Any) -> FlagResolutionDetails[Any]:
        return FlagResolutionDetails(
            value=default_value,
            reason=Reason.ERROR,
            error_code=ErrorCode.TYPE_MISMATCH,
            error_message=f"chorus flags are booleans; {flag_key!r} was asked for another type",
        )

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._mismatch(flag_key, default_value)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._mismatch(flag_key, default_value)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._mismatch(flag_key, default_value)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        return self._mismatch(flag_key, default_value)
