"""An OpenFeature provider over a FlagStore, for apps that use the OpenFeature SDK.

    from openfeature import api
    from flags.openfeature import ChorusProvider

    api.set_provider(ChorusProvider.from_client(client))  # or ChorusProvider(store)
    of = api.get_client()
    context = EvaluationContext(targeting_key="user-42", attributes={"groups": ["beta"]})
    of.get_boolean_value("new-checkout", False, context)

Flags are booleans. The evaluation context's ``targeting_key`` is the actor and its
``groups`` attribute (a list of str) the groups. Reasons follow the OpenFeature spec:

- ``TARGETING_MATCH``: an actor or group gate decided;
- ``STATIC``: the boolean gate decided;
- ``SPLIT``: a percentage gate decided;
- ``DEFAULT``: no gate matched, or the store's default applied;
- ``ERROR``: with ``PROVIDER_NOT_READY`` (the node is not ready: the caller's default
  is returned), ``FLAG_NOT_FOUND`` (no gates, no default: the caller's default is
  returned, whatever type was asked for), ``TYPE_MISMATCH`` (a non-boolean evaluation
  of a known flag) or ``INVALID_CONTEXT`` (``groups`` is not a list of str).

Every resolution carries the flag's metadata in ``flag_metadata`` (spec 2.2.9):
``description``, ``owner`` and ``expires`` (an ISO date), those that are set.

Provider status (spec 1.7, 2.4 and 5.3). Given a readiness source (``ready=`` and
``connected=``, or `ChorusProvider.from_client`), the provider is:

- ``NOT_READY`` until the node is ready (admitted and synced, its clock sane: the
  text of ``GET /ready``). ``initialize`` waits for it, up to ``init_timeout_s``, so
  the SDK keeps the provider NOT_READY meanwhile and answers every evaluation with
  the caller's default, reason ``ERROR``, code ``PROVIDER_NOT_READY`` (spec 1.7.6).
  If the wait runs out, ``initialize`` raises `ProviderNotReadyError` (spec 2.4.2.1:
  the SDK's status becomes ERROR) and ``PROVIDER_READY`` follows when the node is
  ready. A node that stops being ready later (shutting down, its clock off) emits
  ``PROVIDER_ERROR`` with code ``PROVIDER_NOT_READY`` (an SDK cannot return to
  NOT_READY; spec 5.3 maps the event to ERROR), and its evaluations return the
  caller's default with that code until it emits ``PROVIDER_READY`` again.
- ``STALE`` while the node is cut off from every peer: the cluster's member set
  names other nodes, but none of them is live (heard from lately). Evaluations still
  answer, from the values last replicated, with their usual reasons. A node alone in
  its cluster (a founder, a test) is not stale: there is no one to be behind.
  ``PROVIDER_STALE`` is emitted on entering it, ``PROVIDER_READY`` on leaving it.
- ``READY`` otherwise. `ChorusProvider(store)` without a source is always READY
  (tests, `flags.LocalMap`).

The source is polled every ``poll_s`` seconds (default 1) by a daemon thread started
by ``initialize``; evaluations only read the last result (one attribute). The
provider's own view is `ChorusProvider.status`; the SDK's is the client's
``get_provider_status()``, driven by the events.

Every local or remote change emits ``PROVIDER_CONFIGURATION_CHANGED`` with the
changed flags in ``flags_changed`` (which OpenFeature's own InMemoryProvider cannot
do, open-feature/python-sdk#620). The SDK runs handlers on its own worker thread, a
moment after the change. Requires the ``openfeature-sdk`` package (the
``openfeature`` extra: ``pip install 'chorus-replicated[openfeature]'``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata, ProviderStatus

from transport import Node
from transport._membership import name_of

from ._rules import (
    ACTOR,
    BOOLEAN,
    DEFAULT,
    GROUP,
    NO_GATE,
    PERCENTAGE_OF_ACTORS,
    PERCENTAGE_OF_TIME,
)
from ._store import FlagSubscriber

if TYPE_CHECKING:
    from ._client import FlagClient

__all__ = ["ChorusProvider", "FlagSource", "cut_off"]

_REASONS = {
    ACTOR: Reason.TARGETING_MATCH,
    GROUP: Reason.TARGETING_MATCH,
    BOOLEAN: Reason.STATIC,
    PERCENTAGE_OF_ACTORS: Reason.SPLIT,
    PERCENTAGE_OF_TIME: Reason.SPLIT,
    DEFAULT: Reason.DEFAULT,
    NO_GATE: Reason.DEFAULT,
}
_NOT_READY = ProviderStatus.NOT_READY
_READY = ProviderStatus.READY
_STALE = ProviderStatus.STALE
_STALE_TEXT = "cut off from every peer: values may be behind the cluster's"


class FlagSource(Protocol):
    """What the provider reads: a `FlagStore` or a `FlagClient`."""

    def known(self, name: str) -> bool: ...
    def explain(
        self, name: str, actor: str | None = None, groups: Iterable[str] = ()
    ) -> tuple[bool, str]: ...
    def metadata(self, name: str) -> dict[str, str]: ...
    def subscribe(self, callback: FlagSubscriber) -> Callable[[], None]: ...


def cut_off(node: Node) -> bool:
    """True when ``node``'s member set names other nodes but none of them is live.

    Live is `transport.Node.members` (peers heard from lately); the member set is
    ``node.membership.members()`` (admitted, not removed: a node that left is not
    in it). Call it in the node's thread.
    """
    others = any(name_of(i) != node.node_id for i in node.membership.members())
    return others and len(node.members()) <= 1


class ChorusProvider(AbstractProvider):
    """An OpenFeature provider answering from a `FlagStore` (see the module notes).

    Args:
        store: the flags to serve (a `FlagStore`, or a `FlagClient`).
        ready: returns why the node is not ready, or None when it is (e.g.
            `FlagClient.not_ready_reason`). None: always ready.
        connected: returns False while the node is cut off from every peer (see
            `cut_off`). None: always connected.
        poll_s: how often, in seconds, ``ready`` and ``connected`` are called.
        init_timeout_s: how long ``initialize`` waits for ``ready`` (spec 2.4.2.1).

    Exceptions from ``ready`` or ``connected`` count as not ready, their text the
    reason (a closed `FlagClient`, say).
    """

    def __init__(
        self,
        store: FlagSource,
        *,
        ready: Callable[[], str | None] | None = None,
        connected: Callable[[], bool] | None = None,
        poll_s: float = 1.0,
        init_timeout_s: float = 30.0,
    ) -> None:
        super().__init__()
        self._store = store
        self._ready = ready
        self._connected = connected
        self._poll_s = poll_s
        self._init_timeout_s = init_timeout_s
        self._unsubscribe: Callable[[], None] | None = None
        watched = ready is not None or connected is not None
        # Read by every evaluation: the last poll's result. Written by one thread.
        self._status = _NOT_READY if watched else _READY
        self._reason: str | None = "not initialized" if watched else None
        self._announced = self._status  # the status the SDK was last told of
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    @classmethod
    def from_client(cls, client: FlagClient, **options: Any) -> ChorusProvider:
        """A provider over a `FlagClient`: NOT_READY until its node is ready, STALE
        while it is cut off from every peer.

        ``initialize`` (run by ``api.set_provider``) starts the client if it is not
        started, as a readiness probe does: set the provider in each worker, after
        any fork. Takes the keyword arguments of `ChorusProvider`.
        """

        def connected() -> bool:
            background = client.background
            return not background.run_sync(cut_off, background.node)

        return cls(client, ready=client.not_ready_reason, connected=connected, **options)

    @property
    def status(self) -> ProviderStatus:
        """NOT_READY, STALE or READY, as of the last poll (see the module notes)."""
        return self._status

    @property
    def not_ready_reason(self) -> str | None:
        """Why the provider is NOT_READY, or None."""
        return self._reason if self._status is _NOT_READY else None

    def get_metadata(self) -> Metadata:
        return Metadata(name="chorus")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Subscribe to changes; with a readiness source, wait up to ``init_timeout_s``
        for the node to be ready and start polling it.

        Raises:
            ProviderNotReadyError: not ready in time (the SDK's status becomes ERROR;
                ``PROVIDER_READY`` follows once it is).
        """
        if self._unsubscribe is None:
            self._unsubscribe = self._store.subscribe(self._changed)
        if self._ready is None and self._connected is None:
            return
        self._stop.clear()
        deadline = time.monotonic() + self._init_timeout_s
        self._probe()
        while self._status is _NOT_READY and time.monotonic() < deadline:
            if self._stop.wait(min(self._poll_s, max(0.0, deadline - time.monotonic()))):
                break
            self._probe()
        # What the SDK concludes from how initialize ends (spec 1.7.3, 1.7.4).
        self._announced = _NOT_READY if self._status is _NOT_READY else _READY
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(
                target=self._watch, name="chorus-openfeature", daemon=True
            )
            self._watcher.start()
        if self._status is _NOT_READY:
            raise ProviderNotReadyError(f"chorus node not ready: {self._reason}")

    def shutdown(self) -> None:
        self._stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(5)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _probe(self) -> None:
        reason: str | None = None
        stale = False
        try:
            if self._ready is not None:
                reason = self._ready()
            if reason is None and self._connected is not None:
                stale = not self._connected()
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
        self._reason = reason
        self._status = _NOT_READY if reason is not None else _STALE if stale else _READY

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            self._probe()
            status = self._status
            if status is self._announced:
                continue
            self._announced = status
            if status is _READY:
                self.emit_provider_ready(ProviderEventDetails(message="chorus node ready"))
            elif status is _STALE:
                self.emit_provider_stale(ProviderEventDetails(message=_STALE_TEXT))
            else:
                self.emit_provider_error(
                    ProviderEventDetails(
                        message=f"chorus node not ready: {self._reason}",
                        error_code=ErrorCode.PROVIDER_NOT_READY,
                    )
                )

    def _changed(self, names: frozenset[str]) -> None:
        self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=sorted(names)))

    def _unresolved(self, flag_key: str, default_value: Any) -> FlagResolutionDetails[Any] | None:
        """The error every evaluation checks first: not ready, then an unknown flag."""
        if self._status is _NOT_READY:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.PROVIDER_NOT_READY,
                error_message=f"chorus node not ready: {self._reason}",
            )
        if not self._store.known(flag_key):
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.FLAG_NOT_FOUND,
                error_message=f"flag {flag_key!r} has no gates and no default",
                flag_metadata=self._store.metadata(flag_key),
            )
        return None

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        unresolved = self._unresolved(flag_key, default_value)
        if unresolved is not None:
            return unresolved
        metadata = self._store.metadata(flag_key)
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
                    flag_metadata=metadata,
                )
            groups = raw
        value, why = self._store.explain(flag_key, actor, groups)
        return FlagResolutionDetails(
            value=value,
            reason=_REASONS[why],
            variant="on" if value else "off",
            flag_metadata=metadata,
        )

    def _mismatch(self, flag_key: str, default_value: Any) -> FlagResolutionDetails[Any]:
        unresolved = self._unresolved(flag_key, default_value)
        if unresolved is not None:
            return unresolved
        return FlagResolutionDetails(
            value=default_value,
            reason=Reason.ERROR,
            error_code=ErrorCode.TYPE_MISMATCH,
            error_message=f"chorus flags are booleans; {flag_key!r} was asked for another type",
            flag_metadata=self._store.metadata(flag_key),
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
