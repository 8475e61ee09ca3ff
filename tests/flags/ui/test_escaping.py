"""Hostile values render inert; long ones do not break the page."""

import re
from typing import Any
from urllib.parse import quote

from flags import FlagStore, LocalMap
from tests.flags.ui.ui_helpers import UI, logged_in

SCRIPT = "<script>alert(1)</script>"
QUOTES = '"\' onmouseover="alert(2)'
JS_URL = "javascript:alert(3)"
HOSTILE = f"{SCRIPT}{QUOTES} {JS_URL}"


def hostile_store() -> FlagStore:
    """A store whose every text is hostile, including entries the writers would refuse
    (names outside the grammar, written by an older version or by hand)."""
    shared = LocalMap("n1")
    store = FlagStore(shared)
    store.enable_for_actor("f", "javascript:alert", author=HOSTILE)  # in the grammar
    shared.set(("f", "actor", JS_URL), False)
    store.set_metadata("f", description=HOSTILE, owner=HOSTILE, author=HOSTILE)
    # Through the raw map: names the writers refuse, as an older version wrote them.
    shared.set((SCRIPT, "boolean"), True)
    shared.set(("f", "group", HOSTILE), True)
    shared.set(("f", "audit", "0000000000001-0000000000-" + SCRIPT), {"author": HOSTILE})
    return store


def test_hostile_values_never_appear_unescaped() -> None:
    store = hostile_store()
    ui = logged_in(
        store,
        banner=HOSTILE,
        cluster=lambda: {
            "node": SCRIPT,
            "peers": [{"id": SCRIPT, "address": HOSTILE, "state": SCRIPT}],
            "propagation": [{"at": SCRIPT, "flag": SCRIPT, "ms": 1.0}],
            "member_events": [{"at": "2026-01-01T00:00:00", "event": SCRIPT, "member": SCRIPT}],
        },
    )
    pages = ["/", "/flags/f", "/cluster", "/flags/" + quote(SCRIPT, safe="")]
    for path in pages:
        response = ui.get(path)
        assert response.status_code == 200, path
        text = response.text
        assert SCRIPT not in text, path
        assert "&lt;script&gt;" in text, path
        assert QUOTES not in text, path
        assert 'onmouseover="' not in text
        # User text never lands in a URL attribute: every href/src/action is ours.
        for url in re.findall(r'(?:href|src|action)="([^"]*)"', text):
            assert url.startswith("/"), (path, url)
            assert "javascript:" not in url.lower()


def test_a_flag_name_in_a_url_is_percent_encoded() -> None:
    store = hostile_store()
    ui = logged_in(store)
    links = re.findall(r'<a href="(/flags/[^"]+)">', ui.get("/").text)
    assert "/flags/%3Cscript%3Ealert%281%29%3C%2Fscript%3E" in links


def test_ten_thousand_characters_are_wrapped_not_refused(admin: UI, store: FlagStore) -> None:
    long_text = "W" * 2000  # the longest description the store keeps
    store.set_metadata("f", description=long_text, owner="o" * 2000)
    long_name = "n" * 200  # the longest name
    store.enable(long_name)
    page = admin.get("/").text
    assert long_text in page
    assert long_name in page
    css = admin.get("/static/chorus.css").text
    assert "overflow-wrap: anywhere" in css
    # 10,000 characters in a form are refused as too long, on the page, not with a 500.
    admin.get("/flags/f")
    response = admin.post("/metadata/f", {"description": "x" * 10_000})
    assert response.status_code == 422
    assert store.flag("f").description == long_text
    response = admin.post("/create", {"name": "x" * 10_000})
    assert response.status_code == 422


def test_a_huge_form_is_refused_before_it_is_read_whole(admin: UI, store: FlagStore) -> None:
    admin.get("/")
    response: Any = admin.post("/create", {"name": "x" * 200_000})
    assert response.status_code == 413
    assert store.names() == set()
