"""Three real node processes on 127.0.0.1: replication, kill -9 and restart, a wrong secret."""

import functools
import time
from collections.abc import Iterator

import pytest

from tests.helpers import eventually, free_port
from transport.process import NodeProcess

pytestmark = pytest.mark.timeout(120)
SECRET = "9e0c355ecae7b1d2f3a4b5c6d7e8f901"


@pytest.fixture
def cluster() -> Iterator[tuple[list[int], dict[str, NodeProcess]]]:
    ports = [free_port() for _ in range(3)]
    nodes: dict[str, NodeProcess] = {}
    try:
        for i, port in enumerate(ports):
            seeds = [f"127.0.0.1:{p}" for p in ports[:i]]
            nodes[f"n{i}"] = NodeProcess(f"n{i}", f"127.0.0.1:{port}", seeds, SECRET)
        for node in nodes.values():
            assert eventually(functools.partial(synced, node))
        yield ports, nodes
    finally:
        for node in nodes.values():
            if node.process.poll() is None:
                node.kill()


def synced(node: NodeProcess) -> bool:
    return bool(node.request(op="status")["synced"])


def holds(node: NodeProcess, expected: dict[str, object]) -> bool:
    return items(node) == expected


def items(node: NodeProcess) -> dict[str, object]:
    return dict(node.request(op="items", map="m")["items"])


def test_writes_on_each_process_appear_on_all(cluster) -> None:  # type: ignore[no-untyped-def]
    _, nodes = cluster
    for name, node in nodes.items():
        assert node.request(op="set", map="m", key=name, value=name.upper())["ok"]
    expected: dict[str, object] = {"n0": "N0", "n1": "N1", "n2": "N2"}
    for node in nodes.values():
        assert eventually(functools.partial(holds, node, expected))
    assert eventually(lambda: nodes["n0"].request(op="status")["members"] == ["n0", "n1", "n2"])


def test_kill_9_and_restart_catches_up(cluster) -> None:  # type: ignore[no-untyped-def]
    ports, nodes = cluster
    for i in range(200):
        nodes["n0"].request(op="set", map="m", key=f"k{i}", value=i)
    assert eventually(lambda: len(items(nodes["n2"])) == 200)
    nodes["n2"].kill()
    nodes["n1"].request(op="set", map="m", key="while-down", value=True)
    nodes["n2"] = NodeProcess("n2", f"127.0.0.1:{ports[2]}", [f"127.0.0.1:{ports[0]}"], SECRET)
    assert eventually(lambda: nodes["n2"].request(op="status")["synced"])
    assert len(items(nodes["n2"])) == 201  # caught up before reporting synced
    assert nodes["n2"].request(op="get", map="m", key="while-down")["value"] is True


def test_a_node_with_the_wrong_secret_is_refused(cluster) -> None:  # type: ignore[no-untyped-def]
    ports, nodes = cluster
    rogue = NodeProcess(
        "rogue",
        f"127.0.0.1:{free_port()}",
        [f"127.0.0.1:{ports[0]}"],
        "0e1f5ecae7a1b2c3d4e5f60718293a4b",
    )
    try:
        rogue.request(op="set", map="m", key="evil", value=1)
        time.sleep(2)
        for node in nodes.values():
            assert node.request(op="get", map="m", key="evil")["value"] is None
            assert "rogue" not in node.request(op="status")["members"]
        assert rogue.request(op="status")["members"] == ["rogue"]
    finally:
        rogue.kill()


def test_sigterm_exits_cleanly(cluster) -> None:  # type: ignore[no-untyped-def]
    _, nodes = cluster
    assert nodes["n1"].terminate() == 0
