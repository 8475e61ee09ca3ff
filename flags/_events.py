"""The change feed: one Server-Sent Event per flag change, for browsers and for apps
in other languages that follow flags without polling.

`FlagEvents` subscribes to a `FlagStore` (or a `FlagClient`) and keeps the last
``capacity`` changes in a ring, each with an id. A stream (`FlagEvents.response`) is
``text/event-stream`` as the WHATWG HTML standard defines it (§9.2, "Server-sent
events"):

```
retry: 1000

id: 3f9a2c1b-17
event: snapshot
data: {"flags": [<flag>, ...], "node": "a"}

id: 3f9a2c1b-18
event: flag
data: {"name": "new-checkout", "flag": <flag, or null once deleted>, "node": "a"}

: heartbeat
```

- A stream opened without ``Last-Event-ID`` starts with a ``snapshot`` of every flag,
  then one ``flag`` event per change, in the order this node applied them, each
  carrying the flag's whole new state (`flags.http.flag_json`). Applying the events
  in order to the snapshot gives this node's flags.
- A stream opened with the ``Last-Event-ID`` of an event this process still holds
  resumes right after it: every change since, no gap, no snapshot. Any other id (one
  from before a restart, another node's, or older than the ring) gets a ``snapshot``
  first instead: the server cannot resume, and says so by sending everything. A
  browser's ``EventSource`` sends the header itself when it reconnects.
- A comment line every ``heartbeat_s`` keeps proxies from closing an idle stream.
- ``retry: 1000`` asks clients to reconnect after one second.

This follows LaunchDarkly's streaming protocol in spirit (a ``put`` of everything,
then ``patch`` events), with ids so a reconnect need not fetch everything again.

Ids are ``<epoch>-<sequence>``: the epoch is random per `FlagEvents`, the sequence
counts the changes it saw. They order events of one node only; two nodes' streams
of the same change carry different ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import anyio
import attrs
import sniffio
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ._entries import rules_in_order
from ._export import RULE_FIELDS, in_order
from ._schema import TYPED_FIELDS, Flag

#: The ``retry`` field sent first: how long a client waits before reconnecting, in ms.
RETRY_MS = 1000


class _Flags(Protocol):
    """What the feed reads: a `FlagStore` or a `FlagClient`."""

    def subscribe(self, callback: Callable[[frozenset[str]], None]) -> Callable[[], None]: ...
    def known(self, name: str) -> bool: ...
    def flag(self, name: str) -> Flag: ...
    def all(self) -> list[Flag]: ...


def flag_json(flag: Flag) -> dict[str, Any]:
    """A flag as the HTTP API and the change feed show it.

    The gates, metadata and ``default`` always (``default`` a bool, None, or the
    default `Flag` shown the same way); the fields of typed flags only when set, so
    that a boolean flag's JSON is what it was before typed flags:

    - ``"type"``: whenever the flag is typed (`Flag.typed`), ``"boolean"`` included;
    - ``"variants"`` (``{variant: value}``), ``"off_variant"``, ``"fallthrough"``
      (``{"variant": v}`` or ``{"split": {v: weight}}``), ``"prerequisites"``
      (``{flag: [variant, ...]}``) and ``"schedules"`` (``{id: {"at_ms": int,
      "set": [...], "delete": [...]}}``) when not empty;
    - ``"rules"``: a list in evaluation order (position, then id), each
      ``{"id": rule_id, "position": str, "conditions": [...], "segments": [...],
      "serve": {...}}``, when the flag has any.
    """
    document = attrs.asdict(flag, recurse=False, filter=lambda a, _: a.name not in TYPED_FIELDS)
    document["actors"] = dict(flag.actors)
    document["groups"] = dict(flag.groups)
    if isinstance(flag.default, Flag):
        document["default"] = flag_json(flag.default)
    if not flag.typed:
        return document
    document["type"] = flag.type
    for field in ("variants", "off_variant", "fallthrough"):
        value = getattr(flag, field)
        if value:
            document[field] = dict(value) if isinstance(value, Mapping) else value
    if flag.rules:
        document["rules"] = [
            {"id": rule_id, **in_order(rule, RULE_FIELDS)} for rule_id, rule in rules_in_order(flag)
        ]
    if flag.prerequisites:
        document["prerequisites"] = {k: list(v) for k, v in flag.prerequisites.items()}
    if flag.schedules:
        document["schedules"] = {
            k: in_order(v, ("at_ms", "set", "delete")) for k, v in flag.schedules.items()
        }
    return document


def encode_event(event_id: str, kind: str, data: Any) -> bytes:
    """One event in the ``text/event-stream`` format. ``data`` is written as JSON on
    one line (JSON escapes every newline), ASCII only."""
    payload = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return f"id: {event_id}\nevent: {kind}\ndata: {payload}\n\n".encode("ascii")


def _NOT_YET() -> None:
    """Stands in for the unsubscribe function while the subscription is made."""


class _LoopWaker:
    """Wakes every stream of one event loop (trio's or asyncio's) at once, from any
    thread: streams wait on the current `anyio.Event`; `wake` schedules, in the
    loop, setting it and putting a fresh one in its place. One wake per change per
    loop, however many streams the loop runs."""

    def __init__(self, schedule: Callable[[Callable[[], None]], object]) -> None:
        self.event = anyio.Event()
        self.streams = 0
        self._schedule = schedule

    @staticmethod
    def key_and_schedule() -> tuple[object, Callable[[Callable[[], None]], object]]:
        """The running loop's identity, and its thread-safe way to run a function."""
        if sniffio.current_async_library() == "trio":
            token = trio.lowlevel.current_trio_token()
            return token, token.run_sync_soon
        loop = asyncio.get_running_loop()
        return loop, lambda fn: loop.call_soon_threadsafe(fn)

    def _fire(self) -> None:
        fired, self.event = self.event, anyio.Event()
        fired.set()

    def wake(self) -> None:
        # RuntimeError, RunFinishedError: the loop is gone, and nobody waits any more.
        with contextlib.suppress(trio.RunFinishedError, RuntimeError):
            self._schedule(self._fire)


class FlagEvents:
    """The change feed of one node's flags (see the module notes for the format).

    Args:
        flags: a `FlagStore` or `FlagClient`; its changes, local or replicated, become
            events. The feed subscribes when the first stream opens (`follow`).
        node_id: this node's id, carried in each event's data; None: the ``node_id``
            of ``flags`` (a `FlagClient`'s, read when the first stream opens, once
            the client has started and claimed its id).
        capacity: how many events the ring holds for resuming (a reconnect after
            more changes than this gets a snapshot).
        max_subscribers: how many streams may be open at once; one more gets 503.
        heartbeat_s: seconds between heartbeat comments on an idle stream.

    A change costs one JSON encoding of the flag and one append, whatever the number
    of streams; each open stream then wakes and writes it. Thread-safe: the store
    calls in from the node's thread, streams run in the server's event loop (trio
    under ``chorus serve``, asyncio under uvicorn).
    """

    def __init__(
        self,
        flags: _Flags,
        *,
        node_id: str | None = None,
        capacity: int = 1024,
        max_subscribers: int = 256,
        heartbeat_s: float = 15.0,
    ) -> None:
        if capacity < 1 or max_subscribers < 1 or heartbeat_s <= 0:
            raise ValueError("capacity and max_subscribers must be >= 1, heartbeat_s > 0")
        self._flags = flags
        self.node_id = node_id or ""
        self._node_id_given = node_id is not None
        self.epoch = secrets.token_hex(4)
        self.capacity = capacity
        self.max_subscribers = max_subscribers
        self.heartbeat_s = heartbeat_s
        self._lock = threading.Lock()
        self._events: deque[tuple[int, bytes]] = deque(maxlen=capacity)
        self._seq = 0
        self._loops: dict[object, _LoopWaker] = {}
        self._streams = 0
        self._closed = False
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def streams(self) -> int:
        """How many streams are open now."""
        return self._streams

    @property
    def last_id(self) -> str:
        """The id of the newest event (``<epoch>-0`` before any)."""
        return f"{self.epoch}-{self._seq}"

    def follow(self) -> None:
        """Start following the flags' changes, if not yet: the first stream does it.
        Made before a server forks its workers, a feed over a `FlagClient` must not
        start the client's node in the parent; `close` ends it."""
        with self._lock:
            if self._unsubscribe is not None or self._closed:
                return
            self._unsubscribe = _NOT_YET  # another thread's call returns at once
        unsubscribe = self._flags.subscribe(self._changed)  # starts a FlagClient
        with self._lock:
            closed = self._closed  # closed meanwhile: nothing may follow any more
            self._unsubscribe = None if closed else unsubscribe
            if not self._node_id_given:
                self.node_id = str(getattr(self._flags, "node_id", ""))
        if closed:
            unsubscribe()

    def close(self) -> None:
        """Stop following the flags and end every open stream (call before a server
        drains its connections: a stream never ends by itself)."""
        with self._lock:
            self._closed = True
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self._wake_all()

    # -- producing -------------------------------------------------------------------

    def _changed(self, names: frozenset[str]) -> None:
        for name in sorted(names):
            flag = flag_json(self._flags.flag(name)) if self._flags.known(name) else None
            data = {"name": name, "flag": flag, "node": self.node_id}
            with self._lock:
                self._seq += 1
                self._events.append((self._seq, encode_event(self.last_id, "flag", data)))
        self._wake_all()

    def _wake_all(self) -> None:
        with self._lock:
            loops = list(self._loops.values())
        for loop in loops:
            loop.wake()

    # -- consuming -------------------------------------------------------------------

    def resume_point(self, last_event_id: str | None) -> int | None:
        """The sequence number to resume after, or None when ``last_event_id`` cannot
        be resumed from (absent, malformed, another epoch, ahead, or out of the ring)."""
        if last_event_id is None:
            return None
        epoch, _, seq_text = last_event_id.strip().partition("-")
        # isascii: str.isdigit() takes superscripts ("²", a 0xB2 byte as latin-1),
        # which int() refuses.
        if (
            epoch != self.epoch
            or not (seq_text.isascii() and seq_text.isdigit())
            or len(seq_text) > 18
        ):
            return None
        seq = int(seq_text)
        with self._lock:
            oldest = self._events[0][0] if self._events else self._seq + 1
            if seq > self._seq or seq < oldest - 1:
                return None
        return seq

    def after(self, seq: int) -> list[tuple[int, bytes]] | None:
        """The encoded events after sequence number ``seq``, oldest first; None when
        some of them have left the ring already."""
        with self._lock:
            if seq >= self._seq:
                return []
            if not self._events or self._events[0][0] > seq + 1:
                return None
            skip = seq + 1 - self._events[0][0]
            return [self._events[i] for i in range(skip, len(self._events))]

    def snapshot(self) -> tuple[int, bytes]:
        """``(sequence number, encoded snapshot event)``: every flag as of that number
        or later (a change racing with it may be in the snapshot and come again as an
        event after it: applying a flag's state twice is harmless)."""
        with self._lock:
            seq = self._seq
        flags = [flag_json(flag) for flag in self._flags.all()]
        data = {"flags": flags, "node": self.node_id}
        return seq, encode_event(f"{self.epoch}-{seq}", "snapshot", data)

    async def stream(
        self, last_event_id: str | None = None, *, until: float | None = None
    ) -> AsyncGenerator[bytes]:
        """The stream's bytes, chunk by chunk, until `close`, the client leaves, or
        the wall clock (`time.time`) passes ``until`` (seconds since the epoch; say,
        when the session that opened it expires): nothing is sent after it."""
        self.follow()
        key, schedule = _LoopWaker.key_and_schedule()
        with self._lock:
            loop = self._loops.get(key) or self._loops.setdefault(key, _LoopWaker(schedule))
            loop.streams += 1
        try:
            yield f"retry: {RETRY_MS}\n\n".encode("ascii")
            cursor = self.resume_point(last_event_id)
            while not self._closed:
                left = self.heartbeat_s if until is None else until - time.time()
                if left <= 0:
                    return
                woken = loop.event  # before looking: a change after this sets it
                pending = self.after(cursor) if cursor is not None else None
                if pending is None:
                    cursor, chunk = self.snapshot()
                    yield chunk
                elif pending:
                    cursor = pending[-1][0]
                    yield b"".join(chunk for _, chunk in pending)
                else:
                    with anyio.move_on_after(min(self.heartbeat_s, left)):
                        await woken.wait()
                    if not woken.is_set() and (until is None or time.time() < until):
                        yield b": heartbeat\n\n"
        finally:
            with self._lock:
                loop.streams -= 1
                if not loop.streams:
                    del self._loops[key]

    def response(self, request: Request, *, until: float | None = None) -> Response:
        """The stream as a Starlette response for ``request`` (its ``Last-Event-ID``
        header resumes; the caller has authenticated it), ending at ``until`` (see
        `stream`): 200 ``text/event-stream``, or 503 JSON with ``Retry-After`` when
        `max_subscribers` streams are open or the feed is closed."""
        with self._lock:
            full = self._streams >= self.max_subscribers
            if not full and not self._closed:
                self._streams += 1
        if self._closed or full:
            why = "the server is stopping" if self._closed else "too many open event streams"
            return JSONResponse({"error": why}, status_code=503, headers={"Retry-After": "5"})
        last_id = request.headers.get("last-event-id")
        return _EventStream(self.stream(last_id, until=until), self._release)

    def _release(self) -> None:
        with self._lock:
            self._streams -= 1


class _EventStream(StreamingResponse):
    """A stream that gives its subscriber slot back however it ends: the client
    leaving before the first byte included."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
