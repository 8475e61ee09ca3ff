"""The HTTP admin, in process (Starlette's TestClient over a LocalMap)."""

import itertools
from typing import Any

import pytest
import trio
from starlette.testclient import TestClient

import flags.http
from flags import FlagStore, LocalMap
from flags.http import MAX_BODY_BYTES, create_app

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api() -> Any:
    store = FlagStore(LocalMap("n1"), defaults={"dark": True})
    state = {"synced": False, "accepting": True}
    app = create_app(
        store,
        token=TOKEN,
        node_id="n1",
        synced=lambda: state["synced"],
        cluster=lambda: {"node": "n1", "members": ["n1"]},
        accepting_writes=lambda: state["accepting"],
    )
    client = TestClient(app)
    client.state = state  # type: ignore[attr-defined]
    client.store = store  # type: ignore[attr-defined]
    return client


def test_put_get_list_delete(api: Any) -> None:
    assert api.put("/flags/checkout", json={"enabled": True}, headers=AUTH).status_code == 200
    assert (
        api.put(
            "/flags/checkout", json={"group": "banned", "enabled": False}, headers=AUTH
        ).status_code
        == 200
    )
    assert (
        api.put("/flags/checkout", json={"actor": "ann", "enabled": True}, headers=AUTH).status_code
        == 200
    )
    assert (
        api.put(
            "/flags/ramp", json={"percentage_of_actors": 0.25, "author": "bob"}, headers=AUTH
        ).status_code
        == 200
    )
    assert (
        api.put("/flags/sample", json={"percentage_of_time": 0.5}, headers=AUTH).status_code == 200
    )

    flag = api.get("/flags/checkout", params={"actor": "zed", "group": ["banned"]}).json()
    assert flag["boolean"] is True
    assert flag["groups"] == {"banned": False}
    assert (flag["enabled"], flag["reason"]) == (False, "group")
    flag = api.get("/flags/checkout", params={"actor": "ann", "group": ["banned"]}).json()
    assert (flag["enabled"], flag["reason"]) == (True, "actor")
    names = [f["name"] for f in api.get("/flags").json()["flags"]]
    assert names == ["checkout", "dark", "ramp", "sample"]
    assert api.store.audit("ramp")[0].author == "bob"

    assert (
        api.delete("/flags/checkout", params={"actor": "ann"}, headers=AUTH).json()["actors"] == {}
    )
    cleared = api.delete("/flags/checkout", headers=AUTH).json()
    assert cleared["boolean"] is None
    assert cleared["groups"] == {}


def test_an_unknown_flag_reads_as_off(api: Any) -> None:
    flag = api.get("/flags/nope").json()
    assert (flag["enabled"], flag["reason"]) == (False, "no_gate")
    assert api.get("/flags/dark").json()["reason"] == "default"


@pytest.mark.parametrize(
    ("headers", "content", "status"),
    [
        ({}, b'{"enabled": true}', 401),
        ({"Authorization": "Bearer wrong"}, b'{"enabled": true}', 401),
        ({"Authorization": TOKEN}, b'{"enabled": true}', 401),  # no "Bearer "
        (AUTH, b"{not json", 400),
        (AUTH, b"\xff\xfe", 400),
        (AUTH, b"[1, 2]", 422),
        (AUTH, b'{"enabled": "yes"}', 422),
        (AUTH, b'{"enabled": true, "colour": "red"}', 422),
        (AUTH, b'{"percentage_of_actors": 1.5}', 422),
        (AUTH, b'{"percentage_of_time": -0.1}', 422),
        (AUTH, b'{"actor": 42, "enabled": true}', 422),
        (AUTH, b'{"actor": "ann"}', 422),
        (AUTH, b"{}", 422),
        (AUTH, b'{"enabled": true, "author": 5}', 422),
        (AUTH, b'{"enabled": true, "pad": "' + b"x" * 20_000 + b'"}', 413),
    ],
)
def test_bad_writes_are_rejected_with_json_and_change_nothing(
    api: Any, headers: dict[str, str], content: bytes, status: int
) -> None:
    before = api.get("/flags").json()
    response = api.put(
        "/flags/checkout", content=content, headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == status
    assert "error" in response.json()
    assert api.get("/flags").json() == before
    assert len(api.store._map._state._regs) == 0


def test_deletes_need_the_token_too(api: Any) -> None:
    api.put("/flags/checkout", json={"enabled": True}, headers=AUTH)
    assert api.delete("/flags/checkout").status_code == 401
    assert api.get("/flags/checkout").json()["boolean"] is True


def test_health_ready_cluster_and_shutdown(api: Any) -> None:
    assert api.get("/health").json() == {"status": "ok", "node": "n1"}
    assert api.get("/ready").status_code == 503
    api.state["synced"] = True
    assert api.get("/ready").status_code == 200
    assert api.get("/cluster").json()["members"] == ["n1"]
    api.state["accepting"] = False  # SIGTERM received
    assert api.get("/ready").status_code == 503
    assert api.put("/flags/x", json={"enabled": True}, headers=AUTH).status_code == 503


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(FlagStore(LocalMap()), token="", node_id="n", synced=lambda: True, cluster=dict)


def test_a_node_that_takes_no_writes_says_why(api: Any) -> None:
    store = FlagStore(LocalMap("n1"))
    why = {"reason": "this node's clock is +10000 ms off its peers' median"}
    app = create_app(
        store,
        token=TOKEN,
        node_id="n1",
        synced=lambda: True,
        cluster=dict,
        not_ready=lambda: why["reason"],
    )
    client = TestClient(app)
    answer = client.put("/flags/f", json={"enabled": True}, headers=AUTH)
    assert answer.status_code == 503
    assert "off its peers' median" in answer.json()["error"]
    assert store.flag("f").boolean is None  # nothing written
    ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == why["reason"]
    why["reason"] = None  # type: ignore[assignment]
    assert client.get("/ready").status_code == 200
    assert client.put("/flags/f", json={"enabled": True}, headers=AUTH).status_code == 200


@pytest.mark.parametrize("confirmed", [True, False])
def test_ack_replicated_waits_for_another_node(confirmed: bool) -> None:
    store = FlagStore(LocalMap("n1"))
    asked: list[float] = []

    async def replicated(timeout_s: float) -> bool:
        asked.append(timeout_s)
        return confirmed

    app = create_app(
        store, token=TOKEN, node_id="n1", synced=lambda: True, cluster=dict, replicated=replicated
    )
    client = TestClient(app)
    answer = client.put("/flags/f?ack=replicated", json={"enabled": True}, headers=AUTH)
    assert asked == [2.0]
    assert store.enabled("f")  # applied here either way
    if confirmed:
        assert answer.status_code == 200
    else:
        assert answer.status_code == 503
        assert answer.json()["written"] is True
        assert "no other node confirmed it" in answer.json()["error"]
    assert client.delete("/flags/f?ack=replicated", headers=AUTH).status_code == (
        200 if confirmed else 503
    )
    assert client.put("/flags/f", json={"enabled": True}, headers=AUTH).status_code == 200
    assert asked == [2.0, 2.0]  # plain writes do not wait
    bad = client.put("/flags/f?ack=quorum", json={"enabled": True}, headers=AUTH)
    assert bad.status_code == 422


# -- bodies over the limit, straight over ASGI: what the app reads, not just what it answers


def put_over_asgi(
    app: Any, headers: list[tuple[bytes, bytes]], chunks: Any, *, stall: bool = False
) -> tuple[int, int]:
    """PUT /flags/big to ``app`` as an ASGI server would, the body coming in ``chunks``
    (an iterable); after the last one, ``stall`` waits forever instead
    of ending the body. Returns (status, how many chunks the app asked for)."""
    source = iter(chunks)
    asked = 0
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        await trio.lowlevel.checkpoint()
        chunk = next(source, None)
        if chunk is None and stall:
            await trio.sleep_forever()
        return {"type": "http.request", "body": chunk or b"", "more_body": chunk is not None}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PUT",
        "scheme": "http",
        "path": "/flags/big",
        "raw_path": b"/flags/big",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode()), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }

    async def call() -> None:
        with trio.fail_after(5):
            await app(scope, receive, send)

    trio.run(call)
    return statuses[0], asked


def over_the_limit(size: int) -> Any:
    """Far more than the limit, yet finite: an app that reads it all does not hang."""
    return itertools.repeat(b"x" * size, 64 * MAX_BODY_BYTES // size)


def test_a_declared_length_over_the_limit_is_refused_before_reading(api: Any) -> None:
    app = api.app
    assert put_over_asgi(app, [(b"content-length", b"1073741824")], over_the_limit(1024)) == (
        413,
        0,
    )
    huge = b"9" * 5000  # more digits than int() takes from a string
    assert put_over_asgi(app, [(b"content-length", huge)], over_the_limit(1024)) == (413, 0)
    for bad in (b"-1", b"12abc", b"", b"1e9", b"\xd9\xa3"):  # the last: an Arabic-Indic 3
        assert put_over_asgi(app, [(b"content-length", bad)], over_the_limit(1024)) == (400, 0), bad
    assert api.store.flag("big").boolean is None


def test_a_streamed_body_is_read_only_until_it_passes_the_limit(api: Any) -> None:
    # Chunked (no Content-Length): 1 KiB pieces, 1 MiB in all. 16 fit; the 17th passes.
    assert put_over_asgi(api.app, [], over_the_limit(1024)) == (413, MAX_BODY_BYTES // 1024 + 1)
    # A Content-Length under the limit that the body then overruns: the same.
    declared = [(b"content-length", b"100")]
    assert put_over_asgi(api.app, declared, over_the_limit(1024)) == (
        413,
        MAX_BODY_BYTES // 1024 + 1,
    )
    # Exactly at the limit is still read (and is not JSON).
    exact = [b"x" * 1024] * (MAX_BODY_BYTES // 1024)
    assert put_over_asgi(api.app, [], exact)[0] == 400
    assert api.store.flag("big").boolean is None


def test_a_body_that_stalls_gets_408(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flags.http, "BODY_TIMEOUT_S", 0.2)
    status, _ = put_over_asgi(api.app, [], [b'{"enabled": '], stall=True)
    assert status == 408
    assert api.store.flag("big").boolean is None
