"""Calls from threads: `BackgroundNode.call`, `call_owner`, `serve` and `watch_members`
over real BackgroundNodes on 127.0.0.1."""

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import eventually, free_port
from tests.transport.test_background import make
from transport import (
    CallTimeout,
    ForkedError,
    MemberEvent,
    Overloaded,
    RemoteError,
    UnknownService,
)

pytestmark = pytest.mark.timeout(60)


def test_calls_between_threads_of_two_nodes_with_typed_errors() -> None:
    pa, pb = free_port(), free_port()
    with make("a", pa, []) as a, make("b", pb, [pa]) as b:
        assert eventually(lambda: a.members() == b.members() == {"a", "b"})
        ran_in: list[str] = []

        def echo(caller: str, payload: Any) -> Any:
            ran_in.append(threading.current_thread().name)
            return {"caller": caller, "payload": payload}

        def fails(caller: str, payload: Any) -> Any:
            raise KeyError("nope")

        unserve = b.serve("echo", echo)
        b.serve("fails", fails)
        assert a.call("b", "echo", [1, "two"]) == {"caller": "a", "payload": [1, "two"]}
        assert len(ran_in) == 1
        assert ran_in[0] != "chorus-node"  # a worker thread, not the node's
        assert b.call("b", "echo", 3) == {"caller": "b", "payload": 3}  # served here
        with pytest.raises(RemoteError, match="KeyError"):
            a.call("b", "fails")
        with pytest.raises(UnknownService):
            a.call("b", "missing")
        with pytest.raises(TypeError):
            a.call("b", "echo", {1.5})
        with pytest.raises(ValueError, match="served already"):
            b.serve("echo", echo)  # served already

        assert eventually(lambda: a.serving("echo") == {"b"})
        result = a.call_owner("any key", "echo", "x")
        assert (result.node, result.value) == ("b", {"caller": "a", "payload": "x"})
        assert a.owner_of("any key", "echo") == "b"
        unserve()
        assert eventually(lambda: a.serving("echo") == frozenset())
        with pytest.raises(UnknownService):
            a.call_owner("any key", "echo", "x")
        unserve()  # idempotent


def test_a_slow_function_keeps_its_place_until_it_returns() -> None:
    """Past the caller's timeout the thread cannot be stopped: the call is given up,
    but the function still counts against max_concurrent until it returns."""
    pa, pb = free_port(), free_port()
    with make("a", pa, []) as a, make("b", pb, [pa]) as b:
        assert eventually(lambda: a.members() == b.members() == {"a", "b"})
        release = threading.Event()
        finished: list[float] = []

        def slow(caller: str, payload: Any) -> Any:
            release.wait(10)
            finished.append(time.monotonic())
            return "late"

        b.serve("slow", slow, max_concurrent=1)
        started = time.monotonic()
        with pytest.raises(CallTimeout):
            a.call("b", "slow", timeout_s=0.3)
        assert time.monotonic() - started < 2  # the caller is not held by the thread
        with pytest.raises(Overloaded):  # the first still runs in its thread
            a.call("b", "slow", timeout_s=0.3)
        release.set()
        assert eventually(lambda: len(finished) == 1)
        assert eventually(lambda: b.run_sync(lambda: b.node._calls._services["slow"].running) == 0)
        assert a.call("b", "slow", timeout_s=2) == "late"


def test_watch_members_tells_up_services_and_down_in_the_node_thread() -> None:
    pa, pb = free_port(), free_port()
    with make("a", pa, []) as a:
        events: queue.Queue[tuple[MemberEvent, str]] = queue.Queue()
        unwatch = a.watch_members(lambda e: events.put((e, threading.current_thread().name)))
        with make("b", pb, [pa]) as b:
            b.serve("work", lambda caller, payload: payload)
            assert eventually(lambda: a.serving("work") == {"b"})
            incarnation = b.run_sync(lambda: b.node.incarnation)
        seen: list[tuple[str, str, frozenset[str]]] = []
        deadline = time.monotonic() + 10
        while not any(kind == "down" for kind, _, _ in seen) and time.monotonic() < deadline:
            event, thread = events.get(timeout=10)
            assert thread == "chorus-node"
            assert event.incarnation == incarnation
            seen.append((event.kind, event.node, event.services))
        assert seen[0][:2] == ("up", "b")
        assert ("services", "b", frozenset({"work"})) in seen or "work" in seen[0][2]
        assert seen[-1] == ("down", "b", frozenset())
        unwatch()


def _use_in_child(background: Any, results: Any) -> None:
    uses: list[Callable[[], Any]] = [
        lambda: background.call("a", "echo"),
        lambda: background.call_owner("k", "echo"),
        lambda: background.serve("other", lambda caller, payload: None),
        lambda: background.watch_members(lambda event: None),
    ]
    for use in uses:
        try:
            use()
            results.put("no error")
        except ForkedError:
            results.put("ForkedError")


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
def test_calls_raise_forked_error_in_a_forked_child() -> None:
    with make("a", free_port(), []) as a:
        a.serve("echo", lambda caller, payload: payload)
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        child = context.Process(target=_use_in_child, args=(a, results))
        child.start()
        child.join(20)
        assert child.exitcode == 0
        assert [results.get(timeout=5) for _ in range(4)] == ["ForkedError"] * 4
        assert a.call("a", "echo", 1) == 1  # the parent's node goes on
