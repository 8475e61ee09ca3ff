"""The HTTP admin, in process (Starlette's TestClient over a LocalMap)."""

import hmac
import itertools
from typing import Any
from urllib.parse import quote

import pytest
import trio
from prometheus_client.registry import CollectorRegistry
from starlette.testclient import TestClient

import flags.http
from flags import FlagStore, LocalMap
from flags.http import MAX_BODY_BYTES, create_app
from flags.serve import ServeConfig

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


def test_an_unknown_flag_is_404_not_off(api: Any) -> None:
    answer = api.get("/flags/nope")
    assert answer.status_code == 404
    assert set(answer.json()) == {"error"}  # no "enabled": false to mistake for an answer
    assert api.get("/flags/dark").json()["reason"] == "default"  # a default: it exists
    api.put("/flags/documented/meta", json={"owner": "ann"}, headers=AUTH)
    assert api.get("/flags/documented").json()["reason"] == "no_gate"  # metadata only


def test_delete_removes_the_flag_and_records_it(api: Any) -> None:
    api.put("/flags/gone", json={"enabled": True}, headers=AUTH)
    api.put("/flags/gone", json={"actor": "ann", "enabled": True}, headers=AUTH)
    api.put("/flags/gone/meta", json={"owner": "team-a"}, headers=AUTH)
    answer = api.delete("/flags/gone", params={"author": "bob"}, headers=AUTH)
    assert answer.status_code == 200
    assert api.get("/flags/gone").status_code == 404
    assert "gone" not in [f["name"] for f in api.get("/flags").json()["flags"]]
    assert api.store.metadata("gone") == {}
    latest = api.get("/flags/gone/audit").json()["audit"][0]
    assert (latest["action"], latest["author"]) == ("delete", "bob")
    again = api.delete("/flags/gone", headers=AUTH)
    assert again.status_code == 404
    assert "error" in again.json()
    assert len(api.store.audit("gone")) == 4  # the second delete wrote nothing
    assert api.delete("/flags/gone").status_code == 401


def test_delete_of_every_gate_keeps_the_metadata(api: Any) -> None:
    api.put("/flags/kept", json={"enabled": True}, headers=AUTH)
    api.put("/flags/kept", json={"group": "beta", "enabled": True}, headers=AUTH)
    api.put("/flags/kept/meta", json={"owner": "team-a"}, headers=AUTH)
    answer = api.delete("/flags/kept", params={"gates": "all"}, headers=AUTH)
    assert answer.status_code == 200
    flag = api.store.flag("kept")
    assert (flag.boolean, dict(flag.groups)) == (None, {})
    assert api.store.metadata("kept") == {"owner": "team-a"}
    assert api.get("/flags/kept").status_code == 200  # it has metadata: it exists


def test_metadata_and_audit_over_http(api: Any) -> None:
    body = {"description": "new checkout", "owner": "team-a", "expires": "2027-01-31"}
    answer = api.put("/flags/checkout/meta", json={**body, "author": "ann"}, headers=AUTH)
    assert answer.status_code == 200
    flag = api.get("/flags/checkout").json()
    assert {k: flag[k] for k in body} == body
    api.put("/flags/checkout", json={"enabled": True, "author": "bob"}, headers=AUTH)
    api.put("/flags/other", json={"enabled": True}, headers=AUTH)
    entries = api.get("/flags/checkout/audit").json()["audit"]
    assert [(e["action"], e["author"]) for e in entries] == [
        ("enable", "bob"),
        ("set_metadata", "ann"),
    ]
    assert entries[1]["value"] == body
    assert len(api.get("/flags/checkout/audit", params={"limit": 1}).json()["audit"]) == 1
    assert [e["flag"] for e in api.get("/audit").json()["audit"]] == [
        "other",
        "checkout",
        "checkout",
    ]
    assert len(api.get("/audit", params={"limit": "2"}).json()["audit"]) == 2
    for limit in ("0", "-1", "abc", "1001", "1e3"):
        bad = api.get("/audit", params={"limit": limit})
        assert bad.status_code == 422, limit
        assert "error" in bad.json()
    assert api.get("/flags/checkout/audit", params={"limit": "x"}).status_code == 422


@pytest.mark.parametrize(
    ("headers", "content", "status"),
    [
        ({}, b'{"owner": "x"}', 401),
        (AUTH, b"{not json", 400),
        (AUTH, b"[]", 422),
        (AUTH, b"{}", 422),
        (AUTH, b'{"author": "ann"}', 422),
        (AUTH, b'{"owner": "x", "colour": "red"}', 422),
        (AUTH, b'{"owner": 5}', 422),
        (AUTH, b'{"expires": "next week"}', 422),
        (AUTH, b'{"expires": 20270131}', 422),
        (AUTH, b'{"description": "' + b"x" * 2001 + b'"}', 422),
        (AUTH, b'{"owner": "x", "author": 5}', 422),
        (AUTH, b'{"description": "' + b"x" * 20_000 + b'"}', 413),
    ],
)
def test_bad_metadata_writes_are_rejected_and_change_nothing(
    api: Any, headers: dict[str, str], content: bytes, status: int
) -> None:
    response = api.put(
        "/flags/checkout/meta",
        content=content,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == status
    assert "error" in response.json()
    assert len(api.store._map._state._regs) == 0


BAD_NAMES = ["a b", "a\tb", "a\nb", "a\x00b", "a?b", "a#b", "a%b", "a/b", "ä", "", "x" * 201]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_one_name_grammar_for_flags_actors_and_groups(name: str) -> None:
    flags_map = LocalMap("n1")
    store = FlagStore(flags_map)
    writers: list[Any] = [
        lambda: store.enable(name),
        lambda: store.set_metadata(name, owner="x"),
        lambda: store.delete(name),
        lambda: store.enable_for_actor("f", name),
        lambda: store.disable_for_group("f", name),
        lambda: store.clear("f", actor=name),
        lambda: FlagStore(LocalMap("n1"), defaults={name: True}),
    ]
    for write in writers:
        with pytest.raises(ValueError, match="ASCII letters, digits"):
            write()
    assert len(flags_map._state._regs) == 0
    client = TestClient(
        create_app(store, token=TOKEN, node_id="n1", synced=lambda: True, cluster=dict)
    )
    for body in ({"actor": name, "enabled": True}, {"group": name, "enabled": False}):
        answer = client.put("/flags/f", json=body, headers=AUTH)
        assert answer.status_code == 422
    if name:
        answer = client.put(f"/flags/{quote(name, safe='')}", json={"enabled": True}, headers=AUTH)
        assert answer.status_code in (404, 422)  # "a/b" is two path segments: no such route
        assert "error" in answer.json()
    assert len(flags_map._state._regs) == 0


def test_names_in_the_grammar_work_everywhere(api: Any) -> None:
    name = "team.checkout_v2-beta:eu@web+1"
    api.store.enable_for_actor(name, "user:42@example.com")
    api.put(f"/flags/{name}", json={"group": "org+acme", "enabled": True}, headers=AUTH)
    flag = api.get(f"/flags/{name}", params={"actor": "user:42@example.com"}).json()
    assert (flag["enabled"], flag["reason"]) == (True, "actor")
    assert flag["groups"] == {"org+acme": True}
    long = "x" * 200
    assert api.put(f"/flags/{long}", json={"enabled": True}, headers=AUTH).status_code == 200


def test_names_from_an_older_version_stay_readable_and_removable() -> None:
    flags_map = LocalMap("n1")
    flags_map.set(("old name", "boolean"), True)
    flags_map.set(("old name", "actor", "ann smith"), False)
    store = FlagStore(flags_map)
    assert store.ignored_entries == 0
    assert store.enabled("old name")
    assert not store.enabled("old name", "ann smith")
    with pytest.raises(ValueError, match="ASCII letters"):
        store.enable("old name")  # no writer adds to it
    client = TestClient(
        create_app(store, token=TOKEN, node_id="n1", synced=lambda: True, cluster=dict)
    )
    assert client.get("/flags/old%20name").json()["actors"] == {"ann smith": False}
    assert client.put("/flags/old%20name", json={"enabled": False}, headers=AUTH).status_code == 422
    removed = client.delete("/flags/old%20name", params={"actor": "ann smith"}, headers=AUTH)
    assert removed.status_code == 200
    assert removed.json()["actors"] == {}
    assert client.delete("/flags/old%20name", headers=AUTH).status_code == 200
    assert client.get("/flags/old%20name").status_code == 404


def test_404_and_405_are_json(api: Any) -> None:
    missing = api.get("/no/such/thing")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/json"
    assert "error" in missing.json()
    wrong = api.post("/flags/checkout", json={"enabled": True}, headers=AUTH)
    assert wrong.status_code == 405
    assert "error" in wrong.json()
    assert "PUT" in wrong.headers["allow"]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(api: Any, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {TOKEN}"}
    assert api.put("/flags/f", json={"enabled": True}, headers=headers).status_code == 200


@pytest.mark.parametrize(
    "value", [f"Basic {TOKEN}", "Bearer", f"Bearer{TOKEN}", f"Bearer {TOKEN}x", f"{TOKEN}"]
)
def test_other_authorization_is_refused(api: Any, value: str) -> None:
    answer = api.put("/flags/f", json={"enabled": True}, headers={"Authorization": value})
    assert answer.status_code == 401


def test_tokens_are_compared_in_constant_time(api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    api.put("/flags/f", json={"enabled": True}, headers={"Authorization": "bearer nope"})
    assert compared == [(b"nope", TOKEN.encode())]


def _admin_with_metrics(**options: Any) -> TestClient:
    """The admin over a store holding one flag, ``f``, with a metrics registry."""
    store = FlagStore(LocalMap("n1"))
    store.enable("f")
    app = create_app(
        store,
        token=TOKEN,
        node_id="n1",
        synced=lambda: True,
        cluster=dict,
        metrics=CollectorRegistry(),
        **options,
    )
    return TestClient(app)


READS = ("/flags", "/flags/f", "/flags/f/audit", "/audit", "/cluster", "/metrics")


def test_reads_can_need_the_token() -> None:
    client = _admin_with_metrics(reads_need_token=True)
    for path in READS:
        assert client.get(path).status_code == 401, path
        assert "error" in client.get(path).json()
        assert client.get(path, headers=AUTH).status_code == 200, path
    assert client.get("/health").status_code == 200  # probes stay open
    assert client.get("/ready").status_code == 200


def test_reads_are_open_by_default_and_metrics_still_served() -> None:
    client = _admin_with_metrics()
    for path in READS:
        assert client.get(path).status_code == 200, path
    assert ServeConfig(node_id="a").reads_need_token is False


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
