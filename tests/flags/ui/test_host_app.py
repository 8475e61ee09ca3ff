"""The UI over a `FlagClient`, mounted in a FastAPI app (the host runs asyncio; the
UI's store calls go through worker threads to the client's node)."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import flags
from flags import FlagClient
from flags.ui import create_ui
from tests.flags.ui.ui_helpers import TOKEN, UI

pytestmark = pytest.mark.timeout(60)
SECRET = "c1e7a9b3d5f20486a8c4e6b1d3f5a7c9"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlagClient]:
    client = flags.connect([], secret=SECRET, lock_dir=tmp_path, wait_ready_s=20)
    try:
        yield client
    finally:
        client.close(drain_s=0)


def test_a_fastapi_app_mounts_the_ui_over_a_flag_client(client: FlagClient) -> None:
    app = FastAPI()

    @app.get("/")
    def home() -> dict[str, str]:
        return {"app": "host"}

    app.mount("/admin/flags", create_ui(client, token=TOKEN, cluster=lambda: {"node": "x"}))
    with TestClient(app) as http:
        ui = UI(http, client, root="/admin/flags")
        ui.login(name="ops")
        assert http.get("/").json() == {"app": "host"}
        ui.get("/")
        response = ui.post("/create", {"name": "checkout"}, follow_redirects=False)
        assert response.headers["location"] == "/admin/flags/flags/checkout"
        ui.post("/gates/checkout", {"action": "actor-enable", "actor": "user-1"})
        ui.post(
            "/gates/checkout",
            {"action": "percentage_of_actors", "percentage_of_actors": "30"},
        )
        flag = client.flag("checkout")
        assert flag.actors == {"user-1": True}
        assert flag.percentage_of_actors == pytest.approx(0.3)
        assert client.enabled("checkout", actor="user-1")
        assert client.audit("checkout")[0].author == "ui:ops"
        page = ui.get("/flags/checkout", params={"actor": "user-1"}).text
        assert "<strong>enabled</strong>, decided by actor" in page
        target = client.audit("checkout")[-1].timestamp  # right after the creation
        ui.post("/restore/checkout", {"timestamp": target})
        assert not client.flag("checkout").has_gates
        assert "partial" not in ui.get("/").text
        ui.post("/delete/checkout", {"confirm": "checkout"})
        assert "checkout" not in {f.name for f in client.all()}
        assert ui.get("/cluster").status_code == 200


def test_the_change_feed_over_a_flag_client_wakes_an_asyncio_stream(client: FlagClient) -> None:
    # README's mounting recipe: FlagEvents over the client; writes apply in the
    # client's node thread, the stream runs in the host's asyncio loop.
    events = flags.FlagEvents(client)

    async def follow() -> bytes:
        stream = events.stream()
        await stream.__anext__()  # retry
        await stream.__anext__()  # the snapshot
        writing = asyncio.create_task(asyncio.to_thread(client.enable, "fed"))
        chunk = await asyncio.wait_for(stream.__anext__(), 5.0)
        await writing
        await stream.aclose()
        return chunk

    try:
        chunk = asyncio.run(follow())
    finally:
        events.close()
    assert b"event: flag" in chunk
    assert b'"name":"fed"' in chunk
    assert b'"boolean":true' in chunk
    assert f'"node":"{client.node_id}"'.encode() in chunk
