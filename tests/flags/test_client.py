"""FlagClient (flags.connect): flags from ordinary threads, over real sockets."""

import contextlib
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import flags
import transport
from flags import Flag, FlagClient, FlagStore, NotReadyError
from tests.helpers import eventually, free_port
from transport import BackgroundNode, ForkedError, Node, TcpTransport, WriteRefused

pytestmark = pytest.mark.timeout(60)
SECRET = "c1e7a9b3d5f20486a8c4e6b1d3f5a7c9"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[FlagClient, FlagClient]]:
    """Two clients in this process: ``a`` founds a cluster, ``b`` joins it."""
    a = flags.connect([], secret=SECRET, lock_dir=tmp_path, **FAST)
    b = flags.connect([a.address or ""], secret=SECRET, lock_dir=tmp_path, **FAST)
    try:
        yield a, b
    finally:
        b.close()
        a.close()


def test_a_write_on_one_client_is_read_on_the_other_from_any_thread(
    pair: tuple[FlagClient, FlagClient],
) -> None:
    a, b = pair
    assert a.node_id != b.node_id  # claimed per process slot: <host>-0, <host>-1
    a.enable("new-checkout", author="ann")
    a.disable_for_group("new-checkout", "banned")
    assert eventually(lambda: b.flag("new-checkout").groups == {"banned": False})
    seen: list[bool] = []

    def read() -> None:
        if b.enabled("new-checkout", actor="u1"):
            seen.append(b.enabled("new-checkout", actor="u1", groups=["banned"]))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen == [False] * 4
    assert b.explain("new-checkout", actor="u1") == (True, "boolean")
    assert [e.action for e in b.audit("new-checkout")] == ["disable_for_group", "enable"]


def test_writes_from_many_threads_all_apply(pair: tuple[FlagClient, FlagClient]) -> None:
    a, b = pair

    def write(i: int) -> None:
        for j in range(10):
            a.enable_for_actor("beta", f"user-{i}-{j}", author=f"thread-{i}")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(a.flag("beta").actors) == 50
    assert eventually(lambda: len(b.flag("beta").actors) == 50)
    assert all(b.enabled("beta", actor=f"user-{i}-9") for i in range(5))


def test_a_bad_write_raises_before_anything_is_applied(
    pair: tuple[FlagClient, FlagClient],
) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match="percentage of actors"):
        a.enable_percentage_of_actors("search", 1.5)
    with pytest.raises(ValueError, match="author"):
        a.enable("search", author="x" * 1000)
    assert not a.known("search")
    assert a.audit("search") == []


def test_a_client_counts_checks_and_exports_and_imports(
    pair: tuple[FlagClient, FlagClient], tmp_path: Path
) -> None:
    a, b = pair
    assert a.evaluations() is None  # off by default: the check is unchanged
    counting = flags.connect(
        [a.address or ""], secret=SECRET, lock_dir=tmp_path, count_evaluations=True, **FAST
    )
    try:
        a.import_flags([Flag("ramp", percentage_of_actors=0.5, owner="ops")], author="me")
        assert eventually(lambda: counting.known("ramp"))
        for i in range(7):
            counting.enabled("ramp", actor=f"u{i}")
        counting.explain("nope")
        evaluations = counting.evaluations()
        assert evaluations is not None
        assert (evaluations[0]["ramp"], evaluations[1]) == (7, 1)
        assert eventually(
            lambda: b.export() == [Flag("ramp", percentage_of_actors=0.5, owner="ops")]
        )
        [plan] = b.import_flags(b.export(), dry_run=True)
        assert plan.changes == []
    finally:
        counting.close()


def test_a_client_that_cannot_join_says_why_and_writes_nothing(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    with pytest.raises(NotReadyError, match="connection refused") as raised:
        flags.connect([nowhere], secret=SECRET, lock_dir=tmp_path, wait_ready_s=1.5)
    assert "not a member" in raised.value.reason or "not synced" in raised.value.reason
    # Not waiting: the client runs, says it is not ready, and refuses writes whole.
    client = flags.connect([nowhere], secret=SECRET, lock_dir=tmp_path, wait_ready_s=None)
    try:
        assert client.node_id.endswith("-0")  # the failed client gave its id back
        assert not client.ready
        assert eventually(lambda: "connection refused" in (client.not_ready_reason() or ""))
        with pytest.raises(WriteRefused):
            client.enable("new-checkout")
        assert client.audit("new-checkout") == []
        assert not client.enabled("new-checkout")
    finally:
        client.close()


def test_threads_that_start_a_client_at_once_share_one_wait(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    client = FlagClient([nowhere], secret=SECRET, lock_dir=tmp_path, wait_ready_s=1.0)
    errors: list[BaseException] = []

    def first_read() -> None:
        try:
            client.enabled("new-checkout")
        except NotReadyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_read) for _ in range(6)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    took = time.monotonic() - started
    try:
        assert len(errors) == 6
        assert took < 3.0, f"{took:.1f} s: each thread waited in turn"
    finally:
        client.close()


def test_a_readiness_probe_never_waits_on_another_threads_start(tmp_path: Path) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    client = FlagClient([nowhere], secret=SECRET, lock_dir=tmp_path, wait_ready_s=0.3)
    stop = threading.Event()

    def reader() -> None:  # starts, waits 0.3 s, fails, stops the node; again
        while not stop.is_set():
            with contextlib.suppress(NotReadyError):
                client.enabled("new-checkout")

    thread = threading.Thread(target=reader)
    thread.start()
    slowest = 0.0
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            asked = time.monotonic()
            reason = client.not_ready_reason()  # never raises, never waits
            slowest = max(slowest, time.monotonic() - asked)
            assert reason is not None
    finally:
        stop.set()
        thread.join(10)
        client.close(drain_s=0)
    assert slowest < 0.2, f"a probe waited {slowest:.2f} s"


def test_a_forked_error_pickles_with_its_text() -> None:
    error = ForkedError(12345, "a hint.")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ForkedError
    assert str(copy) == str(error)
    assert copy.started_in == 12345


def test_a_closed_client_refuses_reads_and_its_node_leaves(
    pair: tuple[FlagClient, FlagClient],
) -> None:
    a, b = pair
    b_id = b.node_id
    assert eventually(lambda: b_id in a.background.members())
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.enabled("new-checkout")
    with pytest.raises(RuntimeError):
        b.enable("new-checkout")
    # It left (drain), rather than waiting to be found dead: gone within a heartbeat.
    assert eventually(lambda: b_id not in a.background.members(), timeout=0.9)
    b.close()  # idempotent


def test_a_client_starts_on_first_use_from_any_thread(tmp_path: Path) -> None:
    client = FlagClient([], secret=SECRET, lock_dir=tmp_path, defaults={"dark-mode": True})
    assert client.node_id == ""  # nothing claimed, nothing running
    with pytest.raises(RuntimeError, match="not started"):
        client.background  # noqa: B018
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(client.enabled("dark-mode")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    try:
        assert results == [True] * 8
        assert client.node_id.endswith("-0")  # one node for all eight first reads
        assert client.ready
    finally:
        client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.start()


def test_a_missing_or_weak_secret_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHORUS_SECRET", raising=False)
    with pytest.raises(ValueError, match="CHORUS_SECRET"):
        FlagClient([])
    with pytest.raises(transport.WeakSecretError):
        FlagClient([], secret="summer2024")


def _in_child(check: Callable[[], object]) -> str:
    """Fork, run ``check()`` in the child, and return what it reported."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave at once, running nothing of pytest's
        try:
            result = str(check())
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        os.write(write_end, result.encode()[:4000])
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    return report


def test_a_client_used_across_a_fork_raises_instead_of_freezing(
    pair: tuple[FlagClient, FlagClient],
) -> None:
    a, b = pair
    a.enable("frozen")
    assert eventually(lambda: b.enabled("frozen"))
    report = _in_child(lambda: b.enabled("frozen"))
    assert report.startswith("ForkedError: this chorus node was started in process")
    assert "flags.FlagClient(...) rather than flags.connect" in report
    assert _in_child(lambda: b.enable("frozen")).startswith("ForkedError")

    def close_in_child() -> str:
        b.close()
        return "closed"

    assert _in_child(close_in_child) == "closed"

    def start_in_child() -> str:  # what gunicorn's post_fork hook does
        b.start()
        try:
            return f"{b.node_id} {b.enabled('frozen')}"
        finally:
            b.close(drain_s=0)

    parent_id = b.node_id
    report = _in_child(start_in_child)
    child_id, child_read = report.split() if report.count(" ") == 1 else (report, "")
    assert child_id != parent_id
    assert child_read == "True", report
    # The parent is untouched: its node runs, reads and writes.
    a.disable("frozen")
    assert eventually(lambda: not b.enabled("frozen"))


def test_a_background_node_map_used_across_a_fork_raises(tmp_path: Path) -> None:
    node = BackgroundNode(
        lambda: Node("solo", TcpTransport("solo", secret=SECRET, listen="127.0.0.1:0"))
    )
    with node:
        cache = node.map("cache")
        cache.set("k", 1)
        assert _in_child(lambda: cache.get("k")).startswith("ForkedError")
        assert _in_child(lambda: node.members()).startswith("ForkedError")
        assert cache.get("k") == 1


def test_store_over_a_sync_map_or_a_foreign_thread_refuses_before_writing() -> None:
    node = BackgroundNode(
        lambda: Node("solo", TcpTransport("solo", secret=SECRET, listen="127.0.0.1:0"))
    )
    with node:
        with pytest.raises(TypeError, match=r"flags\.connect"):
            FlagStore(node.map("flags"))  # type: ignore[arg-type]
        store: FlagStore = node.run_sync(lambda: FlagStore(node.node.map("flags")))
        with pytest.raises(RuntimeError, match="trio thread"):
            store.enable("new-checkout")  # from this thread, not the node's
        assert node.run_sync(lambda: store.flag("new-checkout").boolean) is None
        assert node.run_sync(store.audit) == []


def test_advertise_port_zero_is_the_port_bound() -> None:
    node = BackgroundNode(
        lambda: Node(
            "adv",
            TcpTransport("adv", secret=SECRET, listen="127.0.0.1:0", advertise="app-1.internal:0"),
        )
    )
    with node:
        tcp = node.run_sync(lambda: node.node._transport)
        assert tcp.address is not None
        assert tcp.advertised == f"app-1.internal:{tcp.address[1]}"
