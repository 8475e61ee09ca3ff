"""The change feed (`flags._events`): ids, resuming, snapshots, wakeups across
threads and event loops, heartbeats, the subscriber bound, and ``GET /events``."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import pytest
import trio
from starlette.testclient import TestClient

from flags import FlagStore, LocalMap
from flags._events import FlagEvents
from flags.http import create_app

TOKEN, VIEWER = "admin-token", "viewer-token"


def parse(chunk: bytes) -> list[dict[str, Any]]:
    """The events (and comments) of ``chunk``, each as its fields."""
    found = []
    for block in chunk.decode("ascii").split("\n\n"):
        if not block:
            continue
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            key, _, value = line.partition(": ")
            fields[key] = json.loads(value) if key == "data" else value
        found.append(fields)
    return found


async def next_events(
    stream: AsyncGenerator[bytes], timeout_s: float = 2.0
) -> list[dict[str, Any]]:
    with trio.fail_after(timeout_s):
        return parse(await stream.__anext__())


def in_trio(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test under trio (this suite has no trio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        trio.run(functools.partial(test, *args, **kwargs))

    return run


def feed(**options: Any) -> tuple[FlagStore, FlagEvents]:
    store = FlagStore(LocalMap("n1"))
    events = FlagEvents(store, node_id="n1", **options)
    events.follow()
    return store, events


def test_a_feed_follows_from_its_first_stream_or_follow_on() -> None:
    store = FlagStore(LocalMap("n1"))
    events = FlagEvents(store, node_id="n1")
    store.enable("before")
    assert events.last_id == f"{events.epoch}-0"  # not following yet
    events.follow()
    events.follow()  # once only
    store.enable("after")
    assert events.last_id == f"{events.epoch}-1"
    events.close()
    store.enable("closed")
    assert events.last_id == f"{events.epoch}-1"


@in_trio
async def test_a_fresh_stream_starts_with_a_snapshot_then_one_event_per_change() -> None:
    store, events = feed()
    store.enable("old")
    stream = events.stream()
    assert parse(await stream.__anext__()) == [{"retry": "1000"}]
    (snapshot,) = await next_events(stream)
    assert snapshot["event"] == "snapshot"
    assert [f["name"] for f in snapshot["data"]["flags"]] == ["old"]
    assert snapshot["id"] == events.last_id
    store.enable_for_actor("new", "user-1")
    store.delete("old")
    received = await next_events(stream)
    while len(received) < 2:
        received += await next_events(stream)
    assert [(e["event"], e["data"]["name"]) for e in received] == [("flag", "new"), ("flag", "old")]
    assert received[0]["data"]["flag"]["actors"] == {"user-1": True}
    assert received[1]["data"]["flag"] is None  # deleted
    assert received[1]["id"] == events.last_id
    await stream.aclose()


@in_trio
async def test_a_stream_resumes_after_its_last_event_id_without_a_gap() -> None:
    store, events = feed()
    store.enable("a")
    seen = events.last_id
    store.enable("b")
    store.disable("c")
    stream = events.stream(seen)
    await stream.__anext__()  # retry
    received = await next_events(stream)
    assert [(e["event"], e["data"]["name"]) for e in received] == [("flag", "b"), ("flag", "c")]
    await stream.aclose()


@pytest.mark.parametrize(
    "last_id",
    ["other-1", "", "garbage", "EPOCH-99", "EPOCH-x", "EPOCH-0"],
)
@in_trio
async def test_an_id_it_cannot_resume_from_gets_a_snapshot(last_id: str) -> None:
    store, events = feed(capacity=2)
    for name in "abc":  # three changes: the first has left the ring of two
        store.enable(name)
    last_id = last_id.replace("EPOCH", events.epoch)
    stream = events.stream(last_id)
    await stream.__anext__()
    (first,) = await next_events(stream)
    assert first["event"] == "snapshot"
    assert {f["name"] for f in first["data"]["flags"]} == {"a", "b", "c"}
    await stream.aclose()


def test_resume_points() -> None:
    store, events = feed(capacity=2)
    assert events.resume_point(f"{events.epoch}-0") == 0  # nothing happened yet
    for name in "abc":
        store.enable(name)
    assert events.resume_point(f"{events.epoch}-1") == 1  # events 2 and 3 are held
    assert events.after(1) is not None
    assert events.resume_point(f"{events.epoch}-0") is None  # event 1 is gone
    assert events.after(0) is None
    assert events.resume_point(f"{events.epoch}-3") == 3
    assert events.after(3) == []
    assert events.resume_point(f"{events.epoch}-4") is None  # ahead of us: not ours
    assert events.resume_point(None) is None


@in_trio
async def test_an_idle_stream_sends_heartbeats() -> None:
    _, events = feed(heartbeat_s=0.05)
    stream = events.stream()
    await stream.__anext__()
    await next_events(stream)  # the snapshot
    with trio.fail_after(2):
        assert await stream.__anext__() == b": heartbeat\n\n"
        assert await stream.__anext__() == b": heartbeat\n\n"
    await stream.aclose()


@in_trio
async def test_close_ends_every_stream() -> None:
    _, events = feed()
    stream = events.stream()
    await stream.__anext__()
    await next_events(stream)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, events.close)
        with trio.fail_after(2):
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()


def test_a_change_in_another_thread_wakes_an_asyncio_stream() -> None:
    # As under uvicorn: the node's thread changes flags, the stream runs in asyncio.
    store, events = feed()

    async def follow() -> list[dict[str, Any]]:
        stream = events.stream()
        await stream.__anext__()
        await stream.__anext__()  # the snapshot
        writer = threading.Thread(target=store.enable, args=("from-thread",))
        writer.start()
        chunk = await asyncio.wait_for(stream.__anext__(), 2.0)
        writer.join()
        await stream.aclose()
        return parse(chunk)

    (event,) = asyncio.run(follow())
    assert event["data"]["name"] == "from-thread"


def api(**options: Any) -> tuple[FlagStore, FlagEvents, TestClient]:
    store, events = feed(**options)
    app = create_app(
        store,
        token=TOKEN,
        viewer_token=VIEWER,
        node_id="n1",
        synced=lambda: True,
        cluster=dict,
        events=events,
    )
    return store, events, TestClient(app)


@pytest.mark.timeout(20)
def test_events_need_the_admin_or_the_viewer_token() -> None:
    _, events, client = api()
    assert client.get("/events").status_code == 401
    assert client.get("/events", headers={"Authorization": "Bearer nope"}).status_code == 401
    events.close()  # the streams below end after their snapshot
    for token in (TOKEN, VIEWER):
        response = client.get("/events", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503  # closed: stopping
    assert events.streams == 0


@pytest.mark.timeout(20)
def test_the_viewer_token_reads_but_never_writes() -> None:
    store, events, client = api()
    viewer = {"Authorization": f"Bearer {VIEWER}"}
    assert client.put("/flags/x", json={"enabled": True}, headers=viewer).status_code == 401
    assert not store.known("x")
    assert client.get("/flags", headers=viewer).status_code == 200
    events.close()


@pytest.mark.timeout(20)
def test_streams_over_the_bound_get_503_and_slots_come_back() -> None:
    _, events, client = api(max_subscribers=1)
    events._streams = 1  # one stream open elsewhere
    response = client.get("/events", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "too many" in response.json()["error"]
    events._release()
    assert events.streams == 0
    events.close()


def test_a_viewer_token_equal_to_the_admin_token_is_refused() -> None:
    store = FlagStore(LocalMap("n1"))
    with pytest.raises(ValueError, match="viewer token"):
        create_app(store, token=TOKEN, viewer_token=TOKEN, node_id="n1", synced=bool, cluster=dict)


# -- found by an adversarial review ------------------------------------------------------


@pytest.mark.parametrize("digits", ["\u00b2", "\u00b9\u00b3", "1\u00b2"])
def test_a_last_event_id_of_non_ascii_digits_gets_a_snapshot_not_an_error(digits: str) -> None:
    # str.isdigit() is True for superscripts ("²", which a raw 0xB2 byte in the header
    # decodes to, as latin-1), but int() refuses them: resume_point raised ValueError
    # inside the stream, after its 200, and the connection died mid-response. Found by
    # sending "Last-Event-ID: <epoch>-\xb2" to a running node's /events.
    store, events = feed()
    store.enable("a")
    try:
        point: object = events.resume_point(f"{events.epoch}-{digits}")
    except ValueError as exc:
        point = exc
    assert point is None

    async def first_event() -> list[dict[str, Any]]:
        stream = events.stream(f"{events.epoch}-{digits}")
        await stream.__anext__()  # retry
        received = await next_events(stream)
        await stream.aclose()
        return received

    (snapshot,) = trio.run(first_event)
    assert snapshot["event"] == "snapshot"
