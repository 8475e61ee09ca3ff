"""An OpenFeature provider over a FlagStore, for apps that use the OpenFeature SDK.

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from flags.openfeature import ChorusProvider

    api.set_provider(ChorusProvider.from_client(client))  # or ChorusProvider(store)
    of = api.get_client()
    context = EvaluationContext(
        targeting_key="user-42", attributes={"groups": ["beta"], "country": "fr"}
    )
    of.get_boolean_value("new-checkout", False, context)
    of.get_string_details("button-color", "grey", context)  # .value, .variant, .reason

**Types.** All five OpenFeature types: ``resolve_boolean_details``, ``_string_``,
``_integer_``, ``_float_`` and ``_object_`` each serve the flags of that type
(`FlagStore.flag_type`: ``"boolean"``, ``"string"``, ``"integer"``, ``"float"``,
``"object"``).

**The context.** ``targeting_key`` is the actor (an empty key is no actor); the
attribute ``groups`` (a list or tuple of str) the actor's groups; every other
attribute goes to the rules' conditions, as `FlagStore.evaluate`'s ``attributes``
(``groups`` is not among them: conditions read it as the attribute ``"groups"``).

**A resolution**, the first step that applies:

1. The node is not ready: the caller's default, reason ``ERROR``, code
   ``PROVIDER_NOT_READY`` (see the status notes below).
2. The flag is unknown (no gates, no typed parts, no default): the caller's
   default, ``ERROR``, ``FLAG_NOT_FOUND``, whatever type was asked for.
3. The flag is of another type than asked: the caller's default, ``ERROR``,
   ``TYPE_MISMATCH``. No number is converted: a float asked of an integer flag is
   a mismatch, as is an integer asked of a float or boolean flag. OpenFeature's
   Python SDK decides the same way: its client's check of every value
   (``_typecheck_flag_value`` in ``openfeature/client.py``, ``isinstance(value,
   float)``) rejects an int for a float, and its ``InMemoryProvider`` hands the
   stored value over unconverted, so an integer flag asked for a float is a
   TYPE_MISMATCH there too (with the flag's value rather than the default; the
   request to cast ints to floats in the SDK, open-feature/python-sdk#516, was
   closed without it). A float flag stores 3 as 3.0, so it always serves floats.
4. ``groups`` is not a list of str: the caller's default, ``ERROR``,
   ``INVALID_CONTEXT``.
5. A boolean flag of gates alone (no type entry, variants, rules, fallthrough, off
   variant or prerequisites) answers as it always has, variant ``"on"`` or ``"off"``:
   ``TARGETING_MATCH`` when an actor or group gate decided (either way),
   ``STATIC`` when the boolean gate did, ``SPLIT`` when a percentage gate did,
   ``DEFAULT`` when no gate matched or the store's default applied. These are not
   `FlagStore.evaluate`'s answers for such a flag (it says ``DEFAULT`` for the
   boolean gate, ``DISABLED`` for a gate that says off, variants ``"true"`` and
   ``"false"``): kept so that what apps saw before typed flags does not change. A
   flag answers by step 6 from its first typed part on (`FlagStore.set_variants`,
   ``set_rule``...).
6. Any other flag answers with `FlagStore.evaluate`'s value and variant (None when
   the caller's default was served), its reason as is: ``TARGETING_MATCH`` (a
   rule, or on a boolean flag without fallthrough an actor or group gate),
   ``SPLIT`` (a rule's or the fallthrough's split), ``DEFAULT`` (the
   fallthrough, or no fallthrough), ``DISABLED`` (the gates or a prerequisite say
   off: the off variant, else the caller's default). Its reason ``ERROR`` (a
   variant deleted under a rule, a malformed entry, a prerequisite in error)
   becomes the caller's default with code ``GENERAL`` and the detail in
   ``error_message``.

An object flag's value is a JSON object (a dict). Each resolution returns a copy of
its own, its dicts and lists copied all the way down, so that a caller changing it
changes neither the store's snapshot nor another caller's answer. The copy costs
about 1.4 us for a flat dict of 10 entries and 1.8 us for ``{"size": [1, 2],
"theme": {"dark": True}, "name": "x"}`` (``copy.deepcopy``: 11 and 8 us; 2-core x86
VM, CPython 3.11). The caller's default is returned as given, a dict or a list.

Every resolution carries the flag's metadata in ``flag_metadata`` (spec 2.2.9):
``description``, ``owner`` and ``expires`` (an ISO date), those that are set. Past
step 2, every flag but a boolean of gates alone adds ``type`` (its type), and step
6 adds ``detail`` (the evaluation's: the rule id, the deciding gate,
``"prerequisite <flag>"``, or what went wrong). Both are str, as OpenFeature's flag
metadata requires (bool, int, float or str values). A flag of gates alone keeps
exactly the three fields it had before typed flags.

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

Every local or remote change to a flag's gates, metadata or typed parts (type,
variants, rules, fallthrough, off variant, prerequisites, schedules, and a schedule
coming due) emits ``PROVIDER_CONFIGURATION_CHANGED`` with the changed flags in
``flags_changed`` (which OpenFeature's own InMemoryProvider cannot do,
open-feature/python-sdk#620). A change to a segment emits nothing yet:
`FlagStore.subscribe` does not report it, though the flags whose rules use the
segment may then answer differently. The SDK runs handlers on its own worker thread, a
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

from ._evaluation import DEFAULT as DEFAULT_REASON
from ._evaluation import DISABLED, ERROR, SPLIT, TARGETING_MATCH, Evaluation
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
#: `FlagStore.evaluate`'s reasons (the ERROR reason is answered apart, with a code).
_TYPED_REASONS = {
    TARGETING_MATCH: Reason.TARGETING_MATCH,
    SPLIT: Reason.SPLIT,
    DEFAULT_REASON: Reason.DEFAULT,
    DISABLED: Reason.DISABLED,
}
_NOT_READY = ProviderStatus.NOT_READY
_READY = ProviderStatus.READY
_STALE = ProviderStatus.STALE
_STALE_TEXT = "cut off from every peer: values may be behind the cluster's"


class FlagSource(Protocol):
    """What the provider reads: a `FlagStore` or a `FlagClient`."""

    def flag_type(self, name: str) -> str | None: ...
    def is_typed(self, name: str) -> bool: ...
    def evaluate(
        self,
        name: str,
        default: Any,
        *,
        actor: str | None = None,
        groups: Iterable[str] = (),
        attributes: Mapping[str, Any] | None = None,
    ) -> Evaluation: ...
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

    def _resolve(
        self,
        flag_key: str,
        default_value: Any,
        evaluation_context: EvaluationContext | None,
        wanted: str,
    ) -> FlagResolutionDetails[Any]:
        """Resolve ``flag_key`` as a flag of type ``wanted`` (one of the five), by the
        steps of the module notes: not ready, unknown flag, type, context, then the
        flag's gates (gate-only boolean flags) or `FlagStore.evaluate`."""
        if self._status is _NOT_READY:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.PROVIDER_NOT_READY,
                error_message=f"chorus node not ready: {self._reason}",
            )
        store = self._store
        kind = store.flag_type(flag_key)
        if kind is None:
            return _not_found(flag_key, default_value, store.metadata(flag_key))
        gates_only = kind == "boolean" and _gates_only(store, flag_key)
        metadata: dict[str, Any] = store.metadata(flag_key)
        if not gates_only:
            metadata["type"] = kind
        if kind != wanted:
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"flag {flag_key!r} is a {kind} flag, asked for a {wanted}",
                flag_metadata=metadata,
            )
        actor: str | None = None
        groups: Sequence[str] = ()
        attributes: Mapping[str, Any] | None = None
        if evaluation_context is not None:
            actor = evaluation_context.targeting_key or None
            attributes = evaluation_context.attributes or None
            if attributes is not None and "groups" in attributes:
                raw = attributes["groups"]
                if not isinstance(raw, (list, tuple)) or not all(isinstance(g, str) for g in raw):
                    return FlagResolutionDetails(
                        value=default_value,
                        reason=Reason.ERROR,
                        error_code=ErrorCode.INVALID_CONTEXT,
                        error_message="the 'groups' attribute must be a list of str",
                        flag_metadata=metadata,
                    )
                groups = raw
                attributes = {k: v for k, v in attributes.items() if k != "groups"}
        if gates_only:  # today's answers: the deciding gate's reason, "on"/"off"
            value, why = store.explain(flag_key, actor, groups)
            return FlagResolutionDetails(
                value=value,
                # UNKNOWN: the flag got typed parts between the two reads (a race)
                reason=_REASONS.get(why, Reason.UNKNOWN),
                variant="on" if value else "off",
                flag_metadata=metadata,
            )
        got = store.evaluate(
            flag_key, default_value, actor=actor, groups=groups, attributes=attributes
        )
        if got.detail is not None:
            metadata["detail"] = got.detail
        if got.reason == ERROR:
            if got.detail == "unknown flag":  # deleted since flag_type looked
                return _not_found(flag_key, default_value, metadata)
            return FlagResolutionDetails(
                value=default_value,
                reason=Reason.ERROR,
                error_code=ErrorCode.GENERAL,
                error_message=f"flag {flag_key!r}: {got.detail}",
                flag_metadata=metadata,
            )
        value = got.value
        if kind == "object" and got.variant is not None:
            value = _copy_json(value)  # the snapshot's own dict must not leak out
        return FlagResolutionDetails(
            value=value,
            reason=_TYPED_REASONS[got.reason],
            variant=got.variant,
            flag_metadata=metadata,
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[Any] | Mapping[str, Any],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[Any] | Mapping[str, Any]]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")


def _not_found(
    flag_key: str, default_value: Any, metadata: Mapping[str, Any]
) -> FlagResolutionDetails[Any]:
    return FlagResolutionDetails(
        value=default_value,
        reason=Reason.ERROR,
        error_code=ErrorCode.FLAG_NOT_FOUND,
        error_message=f"flag {flag_key!r} has no gates, no variants and no default",
        flag_metadata=dict(metadata),
    )


def _gates_only(source: FlagSource, name: str) -> bool:
    """True when flag ``name`` is a boolean flag of gates alone (no variants, rules,
    fallthrough, off variant or prerequisites), whose resolutions keep the reasons
    of the gates (module notes)."""
    return not source.is_typed(name)


def _copy_json(value: Any) -> Any:
    """A copy of a JSON value: dicts and lists copied all the way down; str, numbers,
    bools and None shared (immutable). A shallow copy first, then only the dicts and
    lists inside are replaced by copies of theirs."""
    if type(value) is dict:
        copied = value.copy()
        for key, item in value.items():
            if type(item) is dict or type(item) is list:
                copied[key] = _copy_json(item)
        return copied
    if type(value) is list:
        listed = value.copy()
        for index, item in enumerate(value):
            if type(item) is dict or type(item) is list:
                listed[index] = _copy_json(item)
        return listed
    return value
