"""BackgroundNode: a Node in a thread, used from ordinary (threaded) code."""

import threading

import pytest

from tests.helpers import eventually, free_port
from transport import BackgroundNode, Node, TcpTransport

pytestmark = pytest.mark.timeout(60)
SECRET = b"bac6e7f8a9b0c1d2e3f4a5b6c7d8e9f0"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0, "join_timeout_s": 2.0}


def make(name: str, port: int, seeds: list[int]) -> BackgroundNode:
    def build() -> Node:
        transport = TcpTransport(
            name,
            secret=SECRET,
            listen=("127.0.0.1", port),
            seeds=[f"127.0.0.1:{p}" for p in seeds],
            backoff_initial_s=0.05,
        )
        return Node(name, transport, **FAST)  # type: ignore[arg-type]

    return BackgroundNode(build)


def test_two_background_nodes_replicate_writes_from_ordinary_threads() -> None:
    pa, pb = free_port(), free_port()
    with make("a", pa, []) as a, make("b", pb, [pa]) as b:
        assert a.synced
        assert b.synced
        flags_a, flags_b = a.map("flags"), b.map("flags")
        flags_a.set("new-checkout", True)
        assert flags_a.get("new-checkout") is True  # applied locally on return
        assert eventually(lambda: flags_b.get("new-checkout") is True)
        flags_b.delete("new-checkout")
        assert eventually(lambda: "new-checkout" not in flags_a)
        assert eventually(lambda: a.members() == {"a", "b"})
        assert a.owner("user:1") == b.owner("user:1")


def test_reads_from_many_threads_while_the_node_writes() -> None:
    pa = free_port()
    with make("a", pa, []) as a:
        flags = a.map("flags")
        errors: list[BaseException] = []
        stop = threading.Event()

        def reader() -> None:
            try:
                while not stop.is_set():
                    flags.get("k")
                    for _key, _value in flags.items():
                        pass
                    len(flags)
            except BaseException as exc:  # the test fails on any reader error
                errors.append(exc)

        readers = [threading.Thread(target=reader) for _ in range(4)]
        for t in readers:
            t.start()
        for i in range(100):  # each write waits for the GIL against 4 spinning readers
            flags.set(f"k{i}", i)
        stop.set()
        for t in readers:
            t.join()
        assert errors == []
        assert len(flags) == 100


def test_errors_reach_the_caller_and_change_nothing() -> None:
    with make("a", free_port(), []) as a:
        flags = a.map("flags")
        with pytest.raises(TypeError):
            flags.set(1.5, "bad key")  # type: ignore[arg-type]
        assert len(flags) == 0


def test_subscribers_run_in_the_node_thread() -> None:
    with make("a", free_port(), []) as a:
        seen: list[tuple[frozenset[object], str]] = []
        unsubscribe = a.map("m").subscribe(
            lambda keys: seen.append((keys, threading.current_thread().name))
        )
        a.map("m").set("x", 1)
        assert seen == [(frozenset({"x"}), "chorus-node")]
        unsubscribe()
        a.map("m").set("y", 1)
        assert len(seen) == 1


def test_lifecycle_errors() -> None:
    node = make("a", free_port(), [])
    with pytest.raises(RuntimeError, match="not running"):
        node.map("m")
    node.start()
    with pytest.raises(RuntimeError, match="already"):
        node.start()
    node.stop()
    node.stop()  # idempotent

    def broken() -> Node:
        raise OSError("no such interface")

    with pytest.raises(RuntimeError, match="failed to start"):
        BackgroundNode(broken).start()
