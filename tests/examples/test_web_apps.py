"""The Flask and FastAPI examples read flags toggled through a real node's HTTP admin."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from examples import fastapi_app, flask_app
from flags import FlagStore
from tests.helpers import eventually, free_port
from transport import BackgroundNode, Node, TcpTransport

pytestmark = pytest.mark.timeout(120)
SECRET, TOKEN = "9c41e07a5b3df28617d0e4b6a9c3f5e2", "web-example-token"


@pytest.fixture
def admin() -> Iterator[tuple[str, int]]:
    """A `chorus serve` node: the cluster the web app joins, and its HTTP admin."""
    gossip, http = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flags.cli",
            "serve",
            "--node-id",
            "admin",
            "--listen",
            f"127.0.0.1:{gossip}",
            "--http",
            f"127.0.0.1:{http}",
        ],
        env={**os.environ, "CHORUS_SECRET": SECRET, "CHORUS_TOKEN": TOKEN},
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        yield url, gossip
    finally:
        process.terminate()
        process.wait(10)


def web_node(gossip: int) -> BackgroundNode:
    return BackgroundNode(
        lambda: Node("web", TcpTransport("web", secret=SECRET, seeds=[f"127.0.0.1:{gossip}"]))
    ).start()


def toggle(url: str, body: dict[str, Any]) -> None:
    response = httpx.put(
        url + "/flags/new-checkout", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    response.raise_for_status()


def test_flask_app_follows_the_flag(admin: tuple[str, int]) -> None:
    url, gossip = admin
    node = web_node(gossip)
    try:
        client = flask_app.create_app(node).test_client()
        assert client.get("/checkout").json == {"checkout": "old"}
        toggle(url, {"enabled": True})
        assert eventually(lambda: client.get("/checkout").json == {"checkout": "new"})
        toggle(url, {"actor": "u1", "enabled": False})  # deny one user
        assert eventually(lambda: client.get("/checkout?user=u1").json == {"checkout": "old"})
        assert client.get("/checkout?user=u2").json == {"checkout": "new"}
    finally:
        node.stop()


def test_fastapi_app_follows_the_flag(admin: tuple[str, int]) -> None:
    url, gossip = admin
    node = web_node(gossip)
    try:
        with TestClient(fastapi_app.create_app(node)) as client:
            assert client.get("/checkout").json() == {"checkout": "old"}
            toggle(url, {"enabled": True})
            assert eventually(lambda: client.get("/checkout").json() == {"checkout": "new"})
    finally:
        node.stop()


def test_flag_store_reads_are_safe_from_other_threads(admin: tuple[str, int]) -> None:
    _, gossip = admin
    node = web_node(gossip)
    try:
        store: FlagStore = node.run_sync(lambda: FlagStore(node.node.map("flags")))
        node.run_sync(store.enable, "from-the-node-thread")
        assert store.enabled("from-the-node-thread")  # read here, in the test's thread
    finally:
        node.stop()
