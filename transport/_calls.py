"""Calls between nodes: request and response over the cluster's own connections.

A node serves named *services* (`Node.serve`) and calls them on a peer
(`Node.call`) or on the owner of a key (`Node.call_owner`), over the transport the
cluster already authenticates. This is Erlang's ``gen_server:call`` and Riak Core's
``riak_core_vnode_master:sync_command`` reduced to what replicated state needs: one
request, one answer or a typed error, within a deadline.

Semantics:

- **At most once.** A call is sent once and never retried here. A duplicated
  message runs the handler once: the callee keeps, per caller incarnation, the ids
  it received within 4,096 of the newest (ids only grow), and answers an older one
  ``expired`` without running it. A lost message or answer ends in `CallTimeout`.
  The handler may therefore have run even when the caller sees a timeout or
  `PeerUnavailable`: retry only what is safe to repeat, or make the handler
  idempotent.
- **Deadlines travel.** A call carries its timeout and the caller's clock when it
  was sent. The callee cancels the handler once the timeout has passed since the
  call arrived, or once the caller's deadline has passed by the callee's clock
  (allowing ``max_offset_ms`` for the two clocks, which the cluster keeps that
  close), whichever comes first; a call that arrives after that is answered
  ``expired`` and never runs. So no handler starts more than ``max_offset_ms`` (500
  ms by default) after its caller gave up, however long the call was delayed.
- **Bounded.** Each service runs at most ``max_concurrent`` handlers at once and
  each peer may have at most `MAX_INBOUND_PER_PEER` calls running here; beyond
  either the callee answers `Overloaded` at once, so a slow handler sheds load
  instead of growing memory. A caller has at most `MAX_PENDING_PER_PEER` calls in
  flight to one peer.
- **Fail fast.** Calls in flight to a peer fail with `PeerUnavailable` as soon as
  the node sees the peer down (its link dropped, or silent for the failure
  timeout) or restarted (a new incarnation); a call sent to an incarnation that
  has since restarted is answered so.
- **Errors stay remote.** A handler that raises is logged on the callee (logger
  ``chorus.calls``) and its caller gets `RemoteError` with the exception's type and
  message; the node goes on.

Payloads and answers are values of the kind a replicated map holds (None, bool, int,
float, str, bytes, lists, dicts with str or bytes keys), encoded as canonical CBOR,
and a call or answer must fit in one transport message.
"""

from __future__ import annotations

import collections
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import attrs
import trio

from crdt._values import MAX_VALUE_DEPTH, VALUE_TAGS, canonical_value, strict_loads

from ._wire import (
    MAX_SERVICES,
    SERVICE_NAME_RULE,
    Call,
    encode_call,
    encode_reply,
    valid_service,
)

if TYPE_CHECKING:
    from ._node import Node

log = logging.getLogger("chorus.calls")

#: A service's handler: ``await handler(caller_node_id, payload)`` returns the answer.
Handler = Callable[[str, Any], Awaitable[Any]]
#: Calls one peer may have running on this node at once; more are answered `Overloaded`.
MAX_INBOUND_PER_PEER = 256
#: Calls this node may have in flight to one peer at once; more raise `Overloaded`.
MAX_PENDING_PER_PEER = 1024
#: How far below the newest call id of a caller a call may arrive and still run: call
#: ids only grow per caller incarnation, so an id further back is a duplicate (or a
#: call overtaken by this many newer ones), answered ``expired`` and never run.
_SEEN_PER_PEER = 4096
#: How many caller incarnations a node keeps call ids of (the oldest go first).
_SEEN_CALLERS = 1024
#: Bytes a call or reply adds around its payload (ids, names), kept free of the limit.
_ENVELOPE_BYTES = 256
#: Longest remote error message kept, in UTF-8 bytes.
_MESSAGE_BYTES = 1000


def _count(counts: dict[str, int], outcome: str) -> None:
    counts[outcome] = counts.get(outcome, 0) + 1


class CallError(Exception):
    """A call that has no answer. Subclasses say why.

    Attributes:
        peer: the node called.
        service: the service called.
    """

    def __init__(self, peer: str, service: str, message: str) -> None:
        super().__init__(f"call of {service!r} on {peer}: {message}")
        self.peer = peer
        self.service = service


class CallTimeout(CallError):
    """No answer within the call's ``timeout_s``. The handler may have run."""


class PeerUnavailable(CallError):
    """The peer is not linked, went down, or restarted while the call was in flight.
    The handler may have run (if the peer went down after it started)."""


class RemoteError(CallError):
    """The handler raised; the message names the exception (logged on the callee)."""


class UnknownService(CallError):
    """The peer serves no such service (or, for `Node.call_owner`, no member does)."""


class Overloaded(CallError):
    """Too many calls in flight: on the callee (for the service, or from this node),
    or from this node to that peer. Nothing ran; retry later."""


@attrs.frozen
class CallResult:
    """The answer of `Node.call_owner`, and which node gave it.

    Attributes:
        node: the node id of the owner that answered (this node's own id when it
            owns the key and served the call itself).
        value: the handler's answer.
    """

    node: str
    value: Any


@attrs.frozen
class MemberEvent:
    """A change in the nodes this node hears (see `Node.watch_members`).

    Attributes:
        kind: ``"up"`` (heard from, after being down or never heard), ``"down"``
            (declared down: link dropped, or silent for the failure timeout),
            ``"restarted"`` (a new incarnation, with no down seen in between) or
            ``"services"`` (it serves other services now).
        node: the peer's node id.
        incarnation: its incarnation id (the last known one for ``"down"``).
        services: the services it serves, as last heard (empty when down).
    """

    kind: str
    node: str
    incarnation: str | None
    services: frozenset[str]


def check_service(name: object) -> str:
    """Return ``name`` if it is a service name (`transport._wire.valid_service`: 1 to
    100 ASCII characters).

    Raises:
        ValueError: it is not.
    """
    if not valid_service(name):
        raise ValueError(SERVICE_NAME_RULE)
    return cast(str, name)


@attrs.define
class _Pending:
    peer: str
    service: str
    done: trio.Event = attrs.Factory(trio.Event)
    status: str = ""
    body: bytes | str = b""


@attrs.define
class _Seen:
    """The call ids received from one caller incarnation (see `Calls.on_call`)."""

    newest: int
    recent: set[int] = attrs.Factory(set)

    def add(self, call_id: int) -> None:
        self.recent.add(call_id)
        if call_id > self.newest:
            self.newest = call_id
        if len(self.recent) > 2 * _SEEN_PER_PEER:  # drop what the floor now refuses
            floor = self.newest - _SEEN_PER_PEER
            self.recent = {i for i in self.recent if i > floor}


def _decode(payload: bytes) -> Any:
    """A payload or answer from a peer, decoded as strictly as a map value: one item,
    no trailing bytes, no tag but bignums, nesting within `crdt`'s limit.

    Raises:
        ValueError: it is not such a value.
    """
    return strict_loads(payload, VALUE_TAGS, MAX_VALUE_DEPTH)


def _cut(message: str) -> str:
    """``message`` within `_MESSAGE_BYTES` bytes of UTF-8 (a lone surrogate becomes
    ``?``), so that any reply fits a message."""
    data = message.encode("utf-8", "replace")
    return data[:_MESSAGE_BYTES].decode("utf-8", "ignore")


def _describe(exc: BaseException) -> str:
    """``"KeyError: 'x'"`` for a handler's exception, whatever its ``__str__`` does."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:
        text = f"{type(exc).__name__} (its message cannot be shown)"
    return _cut(text)


@attrs.define
class _Service:
    handler: Handler
    max_concurrent: int
    running: int = 0


class Calls:
    """One node's calls: the services it serves, the calls it waits on, the calls it
    runs. Lives in the node's trio thread; the node feeds it messages and peer
    changes (internal: the public surface is on `Node`)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._services: dict[str, _Service] = {}
        self._pending: dict[int, _Pending] = {}
        self._pending_per_peer: collections.Counter[str] = collections.Counter()
        self._inbound: collections.Counter[str] = collections.Counter()
        # Per caller (node id, incarnation): the newest call id received and the ids
        # received within `_SEEN_PER_PEER` of it, so that a duplicate runs once.
        self._seen: dict[tuple[str, str], _Seen] = {}
        # Ids only grow, from a start no other incarnation shares (secrets, not the
        # random module, which an application may seed alike in every process).
        self._next_id = secrets.randbits(62)

    # -- serving ---------------------------------------------------------------------

    def services(self) -> frozenset[str]:
        return frozenset(self._services)

    def serve(self, service: str, handler: Handler, max_concurrent: int) -> Callable[[], None]:
        check_service(service)
        if not callable(handler):
            raise TypeError(f"the handler of {service!r} is not callable: {handler!r}")
        if type(max_concurrent) is not int or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be a positive int, got {max_concurrent!r}")
        if service in self._services:
            raise ValueError(f"service {service!r} is served already on {self._node.node_id}")
        if len(self._services) >= MAX_SERVICES:
            raise ValueError(f"a node serves at most {MAX_SERVICES} services")
        entry = _Service(handler, max_concurrent)
        self._services[service] = entry

        def unserve() -> None:
            if self._services.get(service) is entry:
                del self._services[service]
                self._node._services_changed()

        self._node._services_changed()
        return unserve

    def on_call(self, peer: str, call: Call) -> None:
        node = self._node
        call_id, service = call.call_id, call.service
        # Keyed by the caller's incarnation too: a restarted caller's ids are new, and
        # a late duplicate of its old incarnation's call still runs once at most.
        seen = self._seen.get((peer, call.caller))
        if seen is None:
            seen = self._seen[(peer, call.caller)] = _Seen(call_id)
            if len(self._seen) > _SEEN_CALLERS:
                del self._seen[next(iter(self._seen))]  # the longest known
        if call_id in seen.recent:
            _count(node.stats.calls_in, "duplicate")
            return  # it runs (or ran) once; its answer is (or was) sent
        if call_id <= seen.newest - _SEEN_PER_PEER:
            self._reply(peer, call_id, "expired", "a call this old is not run")
            return
        seen.add(call_id)
        timeout_ms = call.timeout_ms
        if call.sent_wall_ms:
            # The caller gave up at sent_wall_ms + timeout_ms by its clock, which is
            # within max_offset_ms of ours while both are ready: a call that arrives
            # later than that never runs, and one that runs stops by then.
            left = call.sent_wall_ms + call.timeout_ms + node._max_offset_ms - node.wall_ms()
            timeout_ms = min(timeout_ms, left)
            if timeout_ms <= 0:
                self._reply(peer, call_id, "expired", "it arrived after its caller gave up")
                return
        if call.incarnation and call.incarnation != node.incarnation:
            self._reply(peer, call_id, "restarted", f"it is now {node.incarnation}")
            return
        entry = self._services.get(service)
        if entry is None:
            self._reply(peer, call_id, "unknown_service", "no such service here")
            return
        if entry.running >= entry.max_concurrent or self._inbound[peer] >= MAX_INBOUND_PER_PEER:
            why = (
                f"{entry.running} calls of {service!r} running (max_concurrent)"
                if entry.running >= entry.max_concurrent
                else f"{self._inbound[peer]} calls from {peer} running"
            )
            self._reply(peer, call_id, "overloaded", why)
            return
        try:
            argument = _decode(call.payload)
        except ValueError as exc:
            node.stats.rejected += 1
            self._reply(peer, call_id, "error", f"the payload is not a value: {exc}")
            return
        entry.running += 1
        self._inbound[peer] += 1
        assert node._nursery is not None  # messages arrive only while the node runs
        node._nursery.start_soon(self._run, peer, call_id, service, entry, timeout_ms, argument)

    async def _run(
        self, peer: str, call_id: int, service: str, entry: _Service, timeout_ms: int, argument: Any
    ) -> None:
        try:
            status, body = await self._answer(peer, service, entry, timeout_ms / 1000, argument)
        finally:
            entry.running -= 1
            self._inbound[peer] -= 1
            if not self._inbound[peer]:
                del self._inbound[peer]
        self._reply(peer, call_id, status, body)

    def _reply(self, peer: str, call_id: int, status: str, body: bytes | str) -> None:
        _count(self._node.stats.calls_in, status)
        try:
            self._node._send(peer, encode_reply(call_id, status, body), "reply")
        except Exception:  # never the node's end: the caller times out instead
            log.exception("node %s: the reply to %s cannot be sent", self._node.node_id, peer)

    async def _answer(
        self, caller: str, service: str, entry: _Service, timeout_s: float, argument: Any
    ) -> tuple[str, bytes | str]:
        """Run the handler: ``("ok", answer's CBOR)`` or ``(status, why not)``."""
        with trio.move_on_after(timeout_s) as scope:
            try:
                answer = await entry.handler(caller, argument)
            except Exception as exc:
                log.exception("node %s: handler of %r raised", self._node.node_id, service)
                return "error", _describe(exc)
        if scope.cancelled_caught:
            return "expired", f"the handler took over the caller's {timeout_s:g} s"
        try:
            encoded = canonical_value(answer)[0]
        except TypeError as exc:
            log.error(
                "node %s: the answer of %r cannot be sent: %s", self._node.node_id, service, exc
            )
            return "error", _cut(f"the handler's answer cannot be sent: {exc}")
        limit = self._node.max_message_bytes - _ENVELOPE_BYTES
        if len(encoded) > limit:
            log.error(
                "node %s: the answer of %r is %d bytes", self._node.node_id, service, len(encoded)
            )
            return "error", f"the handler's answer is {len(encoded)} bytes, over {limit}"
        return "ok", encoded

    # -- calling ---------------------------------------------------------------------

    def encode_payload(self, peer: str, service: str, payload: Any) -> bytes:
        """The payload's canonical CBOR, or TypeError/ValueError naming the call."""
        encoded = canonical_value(payload)[0]  # TypeError for what a map cannot hold
        limit = self._node.max_message_bytes - _ENVELOPE_BYTES
        if len(encoded) > limit:
            raise ValueError(
                f"call of {service!r} on {peer}: the payload is {len(encoded)} bytes, over {limit}"
            )
        return encoded

    async def call(self, peer: str, service: str, payload: bytes, timeout_s: float) -> Any:
        node = self._node
        record = node._peers.get(peer)
        if record is None or not record.alive or peer not in node._transport.peers():
            _count(node.stats.calls_out, "unavailable")
            raise PeerUnavailable(peer, service, "not linked to it, or it is down")
        if self._pending_per_peer[peer] >= MAX_PENDING_PER_PEER:
            _count(node.stats.calls_out, "overloaded")
            raise Overloaded(peer, service, f"{MAX_PENDING_PER_PEER} calls in flight to it")
        call_id = self._next_id = (self._next_id + 1) % 2**64
        pending = _Pending(peer, service)
        self._pending[call_id] = pending
        self._pending_per_peer[peer] += 1
        try:
            timeout_ms = max(1, min(math.ceil(timeout_s * 1000), 24 * 3600 * 1000))
            data = encode_call(
                call_id,
                service,
                timeout_ms,
                record.incarnation or "",
                payload,
                caller=node.incarnation,
                sent_wall_ms=node.wall_ms(),
            )
            node._send(peer, data, "call")
            with trio.move_on_after(timeout_s):
                await pending.done.wait()
        finally:
            del self._pending[call_id]
            self._pending_per_peer[peer] -= 1
            if not self._pending_per_peer[peer]:
                del self._pending_per_peer[peer]
        if not pending.done.is_set():
            _count(node.stats.calls_out, "timeout")
            raise CallTimeout(peer, service, f"no answer within {timeout_s:g} s")
        return self._counted(pending)

    async def call_here(self, service: str, payload: bytes, timeout_s: float) -> Any:
        """Serve a call of this node's own service, with the same limits and errors
        as a remote one (the payload goes through CBOR, as it would on the wire)."""
        me = self._node.node_id
        entry = self._services.get(service)
        if entry is None:
            _count(self._node.stats.calls_out, "unknown_service")
            raise UnknownService(me, service, "no such service here")
        if entry.running >= entry.max_concurrent:
            _count(self._node.stats.calls_out, "overloaded")
            raise Overloaded(me, service, f"{entry.running} calls running (max_concurrent)")
        pending = _Pending(me, service)

        async def serve_here() -> None:
            try:
                pending.status, pending.body = await self._answer(
                    me, service, entry, timeout_s, _decode(payload)
                )
            finally:
                entry.running -= 1
            pending.done.set()

        # In a task of the node's, as a peer's call runs: a handler that does not
        # yield to cancellation (a worker thread, a shielded scope) cannot hold this
        # caller past its timeout.
        entry.running += 1
        assert self._node._nursery is not None
        self._node._nursery.start_soon(serve_here)
        with trio.move_on_after(timeout_s):
            await pending.done.wait()
        if not pending.done.is_set() or pending.status == "expired":
            _count(self._node.stats.calls_out, "timeout")
            raise CallTimeout(me, service, f"no answer within {timeout_s:g} s")
        return self._counted(pending)

    def _counted(self, pending: _Pending) -> Any:
        """`_result`, counted in ``stats.calls_out`` by outcome."""
        outcome = {"restarted": "unavailable", "expired": "timeout"}.get(pending.status)
        _count(self._node.stats.calls_out, outcome or pending.status)
        return self._result(pending)

    @staticmethod
    def _result(pending: _Pending) -> Any:
        peer, service, status, body = pending.peer, pending.service, pending.status, pending.body
        if status == "ok":
            try:
                return _decode(body)  # type: ignore[arg-type]
            except ValueError as exc:
                raise RemoteError(peer, service, f"its answer is not a value: {exc}") from None
        error: type[CallError] = {
            "error": RemoteError,
            "unknown_service": UnknownService,
            "overloaded": Overloaded,
            "expired": CallTimeout,
            "restarted": PeerUnavailable,
        }[status]
        raise error(peer, service, str(body))

    def on_reply(self, peer: str, call_id: int, status: str, body: bytes | str) -> None:
        pending = self._pending.get(call_id)
        if pending is None or pending.peer != peer or pending.done.is_set():
            return  # late (the caller gave up), duplicated, or not ours
        pending.status, pending.body = status, body
        pending.done.set()

    def peer_lost(self, peer: str, why: str) -> None:
        """Fail every call in flight to ``peer`` with `PeerUnavailable`."""
        for pending in self._pending.values():
            if pending.peer == peer and not pending.done.is_set():
                pending.status, pending.body = "restarted", why
                pending.done.set()
