"""The UI mounted on another path, its events route, and its cluster page."""

import re
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from flags import FlagStore, LocalMap
from flags._events import FlagEvents
from flags.ui import create_ui
from tests.flags.ui.ui_helpers import TOKEN, UI, logged_in

ROOT = "/admin/flags"


def mounted(store: FlagStore, **options: Any) -> UI:
    host = Starlette(routes=[Mount(ROOT, app=create_ui(store, token=TOKEN, **options))])
    ui = UI(TestClient(host), store, root=ROOT)
    ui.login()
    return ui


def urls(page: str) -> list[str]:
    return re.findall(r'(?:href|src|action|data-events)="([^"]*)"', page)


def test_every_link_and_form_starts_with_the_mount_path(store: FlagStore) -> None:
    store.enable_for_actor("f", "ann")
    store.enable("f")
    events = FlagEvents(store, node_id="n1")
    ui = mounted(store, events=events, cluster=lambda: {"node": "n1"})
    for path in ("/", "/flags/f", "/disable/f", "/cluster"):
        page = ui.get(path)
        assert page.status_code == 200, path
        found = urls(page.text)
        assert found, path
        for url in found:
            assert url.startswith(ROOT + "/"), (path, url)
    cookie = ui.client.cookies.jar
    assert {c.path for c in cookie} == {ROOT}
    # And the redirects of a write.
    response = ui.post("/gates/f", {"action": "enable"}, follow_redirects=False)
    assert response.headers["location"] == ROOT + "/flags/f"
    events.close()


def test_mounted_writes_work_and_the_stylesheet_is_served(store: FlagStore) -> None:
    ui = mounted(store)
    ui.get("/")
    ui.post("/create", {"name": "mounted"})
    assert "mounted" in store.names()
    assert ui.get("/static/chorus.css").status_code == 200


def test_events_need_a_session_and_pass_the_feed_s_response_through(store: FlagStore) -> None:
    events = FlagEvents(store, node_id="n1")
    anonymous = TestClient(create_ui(store, token=TOKEN, events=events))
    assert anonymous.get("/events").status_code == 401
    ui = logged_in(store, events=events)
    assert 'data-events="/events"' in ui.get("/").text
    events.close()  # a closed feed answers 503 at once, so the request ends
    response = ui.get("/events")
    assert response.status_code == 503
    assert response.json() == {"error": "the server is stopping"}
    assert events.streams == 0


def test_without_events_there_is_no_events_route_and_no_live_script_hook(
    store: FlagStore,
) -> None:
    ui = logged_in(store)
    assert ui.get("/events").status_code == 404
    page = ui.get("/").text
    assert "data-events" not in page
    assert '<p id="connection" role="status">no live updates</p>' in page


def test_the_cluster_page_with_no_history_says_no_data_yet() -> None:
    store = FlagStore(LocalMap("n1"))
    for document in (
        {"node": "n1", "ready": True, "synced": True, "held": 0, "peers": []},
        {"node": "n1", "propagation": [], "member_events": []},
        {},
    ):
        page = logged_in(store, cluster=lambda d=document: d).get("/cluster")
        assert page.status_code == 200
        assert page.text.count("no data yet") == 2
        assert "<svg" not in page.text


def test_the_cluster_page_draws_propagation_and_member_events() -> None:
    store = FlagStore(LocalMap("n1"))
    document = {
        "node": "a",
        "incarnation": 7,
        "ready": False,
        "not_ready_reason": "joining",
        "synced": False,
        "held": 3,
        "peers": [
            {
                "id": "b",
                "incarnation": 2,
                "member": True,
                "state": "suspect",
                "connected": False,
                "last_heard": {"at": "2026-11-30T09:00:00+00:00", "age_s": 4.5},
                "clock_offset_ms": -12,
            }
        ],
        "propagation": [
            {"at": "2026-11-30T09:00:00.000+00:00", "flag": "f", "ms": 12.5},
            {"at": "2026-11-30T09:00:01.000+00:00", "flag": "g", "ms": 40.0},
        ],
        "member_events": [
            {"at": "2026-11-30T09:00:00.000+00:00", "event": "up", "member": "b"},
            {"at": "2026-11-30T09:00:30.000+00:00", "event": "down", "member": "b"},
        ],
    }
    page = logged_in(store, cluster=lambda: document).get("/cluster").text
    assert '<svg role="img" aria-label="Propagation times"' in page
    assert '<svg role="img" aria-label="Membership events"' in page
    assert page.count("<rect ") == 2
    assert page.count("<circle ") == 2
    assert "g: 40 ms" in page
    assert "held" in page.lower()
    assert ">3<" in page  # held-back entries
    assert "4.5 s ago" in page
    assert "suspect" in page
    assert "joining" in page
