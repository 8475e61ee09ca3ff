"""BackgroundNode: a Node in a thread of its own, for apps that do not run trio.

Django, Flask and asyncio (FastAPI) apps run one and read replicated maps from any
thread (for feature flags, ``flags.FlagClient`` runs one for them). The node runs its
own ``trio.run`` in a daemon thread; this facade is synchronous.

- Reads (`SyncMap.get`, ``in``, `len`) are local dict lookups with no lock: under
  CPython's GIL a single dict operation is atomic, and the trio thread only ever
  replaces values, never mutates them in place.
- Writes are handed to the trio thread (``trio.from_thread.run_sync``) and return
  once applied locally: errors (bad keys, oversized values) are raised in the caller.
- `SyncMap.items` returns a snapshot list, safe to iterate while the node changes.

A write waits for the node's thread to take the GIL: cheap in a web app, slow (tens of
ms) when other threads spin on the CPU.

Calls between nodes (see `transport._calls`) work from threads too: `BackgroundNode.call`
and `BackgroundNode.call_owner` block the calling thread until the answer (or a typed
`CallError`); `BackgroundNode.serve` serves a plain function, run in a worker thread;
`BackgroundNode.watch_members` tells a callback of peers up, down and restarted.

Fork: a thread does not survive ``fork()``. A BackgroundNode started before a fork
(gunicorn ``--preload``, ``multiprocessing`` with the fork start method) runs only in
the parent; in the child its maps would hold the values of the moment of the fork
for ever. So in the child every use of it, reads included, raises `ForkedError`.
Start one node per process, after the fork.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import trio

from crdt import Key

from ._calls import CallResult, MemberEvent
from ._node import Node
from ._replicated import ReplicatedMap, Subscriber

log = logging.getLogger("chorus.node")


class ForkedError(RuntimeError):
    """A `BackgroundNode` (or what reads through it) was used in a child process.

    Its node's thread stayed in the parent when the process forked: in the child it
    would read the values of the moment of the fork for ever. Start a node in each
    process after the fork (gunicorn's ``post_fork`` hook, an ASGI lifespan, or at
    import without ``--preload``).
    """

    def __init__(self, started_in: int, hint: str | None = None) -> None:
        super().__init__(
            f"this chorus node was started in process {started_in}, and this is process "
            f"{os.getpid()}, forked from it: the node's thread runs only in the parent, so "
            "this copy would never see another change. "
            + (
                hint
                or "Start the node in each worker after the fork (gunicorn: a post_fork "
                "hook, or no --preload; uvicorn and FastAPI: the app's lifespan)"
            )
        )
        self.started_in = started_in

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a worker of a multiprocessing pool, it travels back pickled: keep
        # its text as written in the process that raised it.
        return (_forked_error, (self.started_in, str(self)))


def _forked_error(started_in: int, message: str) -> ForkedError:
    error = ForkedError.__new__(ForkedError)
    RuntimeError.__init__(error, message)
    error.started_in = started_in
    return error


class _ForkedView:
    """What a `SyncMap` reads through in a forked child: every access raises."""

    def __init__(self, started_in: int) -> None:
        self._started_in = started_in

    def __getattr__(self, name: str) -> Any:
        raise ForkedError(self._started_in)


class SyncMap:
    """A thread-safe, synchronous handle on a `ReplicatedMap` (made by `BackgroundNode.map`).

    In a process forked after the map was made, every method raises `ForkedError`.
    """

    __slots__ = ("__weakref__", "_owner", "_view")

    def __init__(self, owner: BackgroundNode, view: ReplicatedMap) -> None:
        self._owner = owner
        self._view = view

    @property
    def name(self) -> str:
        return self._view.name

    def get(self, key: Key, default: Any = None) -> Any:
        """The key's value, or ``default``: a dict lookup, from any thread."""
        return self._view._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._view._values

    def __len__(self) -> int:
        return len(self._view._values)

    def items(self) -> list[tuple[Key, Any]]:
        """A snapshot of ``(key, value)`` pairs."""
        return list(self._view._values.items())

    def set(self, key: Key, value: Any) -> None:
        """Write on every node (see `ReplicatedMap.set`); returns once applied here."""
        self._owner.run_sync(self._view.set, key, value)

    def delete(self, key: Key) -> None:
        """Delete on every node (see `ReplicatedMap.delete`); returns once applied here."""
        self._owner.run_sync(self._view.delete, key)

    def update(self, sets: Mapping[Key, Any] | None = None, deletes: Iterable[Key] = ()) -> None:
        """Set and delete several keys as one change (see `ReplicatedMap.update`);
        returns once applied here."""
        self._owner.run_sync(self._view.update, dict(sets or {}), list(deletes))

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Like `ReplicatedMap.subscribe`; ``callback`` runs in the node's thread."""
        unsubscribe: Callable[[], None] = self._owner.run_sync(self._view.subscribe, callback)
        return lambda: self._owner.run_sync(unsubscribe)


class BackgroundNode:
    """Run a `Node` in a background thread, with a synchronous facade.

    Args:
        make_node: a function that builds the Node (and its transport). It is called
            in the node's thread, inside its trio run.

    Use as a context manager, or call `start` and `stop`::

        node = BackgroundNode(lambda: Node("web-1", TcpTransport("web-1", ...)))
        node.start()
        sessions = node.map("sessions")
        sessions.set("s-42", {"user": "ann"})  # any thread
        if sessions.get("s-42"):
            ...
        node.stop()

    Feature flags are not read this way (a flag is several entries, one per gate):
    use ``flags.FlagClient``, which runs a BackgroundNode of its own.
    """

    def __init__(self, make_node: Callable[[], Node]) -> None:
        self._make_node = make_node
        self._pid = os.getpid()
        self._forked_from: int | None = None  # the parent's pid, in a forked child
        self._maps: weakref.WeakSet[SyncMap] = weakref.WeakSet()
        self._fork_callbacks: list[Callable[[int], None]] = []
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._node: Node | None = None

    # -- lifecycle -----------------------------------------------------------------

    def start(self, *, wait_synced: float | None = 30.0) -> BackgroundNode:
        """Start the node's thread; return once the node runs.

        Args:
            wait_synced: also wait up to this many seconds for `synced` (None: don't).

        Raises:
            RuntimeError: already started, or the node failed to start (the cause is
                chained).
            ForkedError: it was started in a parent of this process.
        """
        self._check_fork()
        if self._thread is not None:
            raise RuntimeError("BackgroundNode already started")
        self._pid = os.getpid()
        _running.add(self)
        self._thread = threading.Thread(target=self._main, name="chorus-node", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise RuntimeError("the node failed to start") from self._error
        if wait_synced is not None:
            self.wait_synced(wait_synced)
        return self

    def _main(self) -> None:
        async def run() -> None:
            node = self._make_node()
            async with node:
                self._node = node
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._started.set()
                await self._stop.wait()

        try:
            trio.run(run)
        except BaseException as exc:  # reported by start(), or kept for stop()
            self._error = exc
        finally:
            self._started.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the node and join its thread (idempotent; a no-op in a forked child).

        Waits at most ``timeout`` seconds. A thread still running then (a function
        `serve` runs that does not return) is left running, and an ERROR says so."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        if self._stop is not None and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):  # it stopped on its own
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        thread.join(timeout)
        if thread.is_alive():
            log.error(
                "background node: still running %g s after stop (a served function that "
                "does not return?); left running",
                timeout,
            )

    def __enter__(self) -> BackgroundNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the facade ------------------------------------------------------------------

    def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` in the node's thread and return its result (or raise).

        For anything that must happen there: building a ``flags.FlagStore`` over
        ``node.node.map(...)`` and writing through it. (Reading ``FlagStore.enabled``
        is safe from any thread: it reads an immutable snapshot.)

        Raises:
            RuntimeError: the node is not running.
            ForkedError: it was started in a parent of this process.
        """
        self._check_fork()
        if self._token is None:
            raise RuntimeError("BackgroundNode is not running")
        if threading.current_thread() is self._thread:
            return fn(*args)  # already in the node's thread (a subscriber, say)
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def run(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``await async_fn(*args)`` in the node's thread; return its result (or raise).

        Blocks the calling thread until it returns. Not from the node's own thread.

        Raises:
            RuntimeError: the node is not running, or this is the node's thread.
            ForkedError: it was started in a parent of this process.
        """
        self._check_fork()
        if self._token is None:
            raise RuntimeError("BackgroundNode is not running")
        return trio.from_thread.run(async_fn, *args, trio_token=self._token)

    @property
    def node(self) -> Node:
        """The Node itself: touch it only from its own thread (e.g. in callbacks)."""
        self._check_fork()
        if self._node is None:
            raise RuntimeError("BackgroundNode is not running")
        return self._node

    def map(self, name: str) -> SyncMap:
        """A thread-safe handle on the replicated map ``name``."""
        handle = SyncMap(self, self.run_sync(self.node.map, name))
        self._maps.add(handle)
        return handle

    @property
    def synced(self) -> bool:
        return self.node.synced

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until the node is synced; False if ``timeout`` (s) passed first."""
        result: bool = self.run(self.node.wait_synced, timeout)
        return result

    def members(self) -> frozenset[str]:
        result: frozenset[str] = self.run_sync(self.node.members)
        return result

    def owner(self, key: Key) -> str:
        result: str = self.run_sync(self.node.owner, key)
        return result

    def serving(self, service: str) -> frozenset[str]:
        """The live members serving ``service`` (see `Node.serving`); one hop."""
        result: frozenset[str] = self.run_sync(self.node.serving, service)
        return result

    def owner_of(self, key: Key, service: str) -> str | None:
        """The owner of ``key`` among the nodes serving ``service`` (see
        `Node.owner_of`); None when none does. One hop to the node's thread."""
        result: str | None = self.run_sync(self.node.owner_of, key, service)
        return result

    # -- calls -------------------------------------------------------------------------

    def call(self, peer: str, service: str, payload: Any = None, *, timeout_s: float = 5.0) -> Any:
        """Call ``service`` on ``peer`` and return its answer (see `Node.call`).

        Blocks the calling thread until the answer comes or ``timeout_s`` seconds
        have passed. Not from the node's own thread (a `watch_members` callback, a
        `SyncMap` subscriber): that would block the node.

        Raises:
            CallTimeout, PeerUnavailable, UnknownService, Overloaded, RemoteError:
                as for `Node.call`.
            TypeError, ValueError: the payload cannot be sent; nothing is sent.
            RuntimeError: the node is not running, or this is the node's thread.
            ForkedError: it was started in a parent of this process.
        """
        call = functools.partial(self.node.call, peer, service, payload, timeout_s=timeout_s)
        return self.run(call)

    def call_owner(
        self, key: Key, service: str, payload: Any = None, *, timeout_s: float = 5.0
    ) -> CallResult:
        """Call ``service`` on the owner of ``key`` (see `Node.call_owner`): blocks
        the calling thread as `call` does.

        Returns:
            A `CallResult`: the node that answered and its answer.

        Raises:
            UnknownService: no live member serves ``service``.
            The errors of `call`.
        """
        call = functools.partial(self.node.call_owner, key, service, payload, timeout_s=timeout_s)
        result: CallResult = self.run(call)
        return result

    def serve(
        self, service: str, fn: Callable[[str, Any], Any], *, max_concurrent: int = 64
    ) -> Callable[[], None]:
        """Serve ``service`` with a plain function: ``fn(caller_node_id, payload)``
        answers each call of it (see `Node.serve`).

        ``fn`` runs in a worker thread, never in the node's thread, so a slow one
        does not stall the node; at most ``max_concurrent`` run at once (calls beyond
        are answered `Overloaded`), in threads of the service's own, so they never
        take the threads the node needs for anything else. What it returns is the
        answer (a value a map can hold); what it raises reaches the caller as
        `RemoteError`, and is logged here.

        Cancellation: a thread cannot be interrupted. When the caller's timeout has
        passed, or the node stops, the call is given up but ``fn`` runs to its end,
        and it keeps its place among the ``max_concurrent`` until then (its late
        answer is dropped). Abandoning the thread instead would let slow calls pile
        up beyond ``max_concurrent`` and would let ``fn`` write after the node
        stopped. So `stop` waits for running calls of ``fn`` to return: bound its
        time (a database timeout) below ``stop``'s timeout. A call from this node to
        its own service (`call` with its own id, or `call_owner` electing it) still
        returns at its ``timeout_s``, as a peer's does.

        ``fn`` raising anything but `KeyboardInterrupt` (`SystemExit` included) is
        a `RemoteError` for the caller, logged here; the node goes on. Serving a
        name again after stopping it starts a new count of ``max_concurrent``:
        calls of the earlier ``fn`` still running are not in it.

        Returns:
            A function, callable from any thread, that stops serving it (calls
            arriving after answer `UnknownService`; running ones finish).

        Raises:
            ValueError, TypeError: as for `Node.serve`.
            RuntimeError: the node is not running.
            ForkedError: it was started in a parent of this process.
        """
        if not callable(fn):
            raise TypeError(f"the function serving {service!r} is not callable: {fn!r}")
        # Node.serve checks max_concurrent; a bad one must reach it, not fail here.
        threads = trio.CapacityLimiter(max(1, max_concurrent) if type(max_concurrent) is int else 1)

        def guarded(caller: str, payload: Any) -> Any:
            try:
                return fn(caller, payload)
            except (KeyboardInterrupt, Exception):
                raise
            except BaseException as exc:  # SystemExit, GeneratorExit: not the node's end
                raise RuntimeError(f"{service!r} raised {type(exc).__name__}") from exc

        async def handler(caller: str, payload: Any) -> Any:
            return await trio.to_thread.run_sync(guarded, caller, payload, limiter=threads)

        serve = functools.partial(self.node.serve, service, handler, max_concurrent=max_concurrent)
        unserve: Callable[[], None] = self.run_sync(serve)
        return lambda: self._run_if_running(unserve)

    def watch_members(self, callback: Callable[[MemberEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every `MemberEvent` (a peer up, down,
        restarted, or serving other services: see `Node.watch_members`).

        ``callback`` runs in the node's thread: it must return quickly and must not
        block on the node (`call`, `run`); hand the event to a queue for slow work.
        An exception it raises is logged.

        Returns:
            A function, callable from any thread, that stops the calls.

        Raises:
            RuntimeError: the node is not running.
            ForkedError: it was started in a parent of this process.
        """
        unwatch: Callable[[], None] = self.run_sync(self.node.watch_members, callback)
        return lambda: self._run_if_running(unwatch)

    def _run_if_running(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the node's thread; nothing to do once the node stopped."""
        with contextlib.suppress(trio.RunFinishedError):
            if self._token is not None and self._thread is not None and self._thread.is_alive():
                self.run_sync(fn)

    # -- fork --------------------------------------------------------------------------

    @property
    def forked(self) -> bool:
        """True in a child process forked after this node started (see `ForkedError`)."""
        return self._forked_from is not None

    def on_fork(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(parent_pid)`` in a child process forked after `start`.

        It runs right after the fork, in the child's only thread, before anything
        else: objects built over this node (a ``flags.FlagClient``) use it to make
        their own reads raise `ForkedError` too. It must not block or start threads.
        """
        self._fork_callbacks.append(callback)

    def _check_fork(self) -> None:
        if self._forked_from is not None:
            raise ForkedError(self._forked_from)

    def _after_fork_in_child(self) -> None:
        parent = self._pid
        self._forked_from = parent
        for handle in self._maps:
            handle._view = _ForkedView(parent)  # type: ignore[assignment]
        for callback in self._fork_callbacks:
            callback(parent)


# Started nodes, so that a forked child can disarm its copies of them.
_running: weakref.WeakSet[BackgroundNode] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for node in list(_running):
        if node._thread is not None:
            node._after_fork_in_child()
    _running.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
