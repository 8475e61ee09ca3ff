"""Logging in and out, the session cookie, CSRF and origin checks, security headers."""

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from flags import FlagStore
from flags.ui import create_ui
from flags.ui._security import CSP
from tests.flags.ui.ui_helpers import TOKEN, UI, VIEWER


def test_the_admin_token_logs_in_and_the_session_cookie_is_strict(
    make_ui: Callable[..., UI],
) -> None:
    ui = make_ui()
    ui.get("/login")
    response = ui.post("/login", {"token": TOKEN}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith("chorus_ui=")
    for attribute in ("httponly", "samesite=strict", "path=/;", "max-age=28800"):
        assert attribute in cookie
    assert "secure" not in cookie  # plain HTTP here: see the TLS test
    page = ui.get("/")
    assert page.status_code == 200
    assert "Log out" in page.text


def test_a_wrong_token_gets_401_an_alert_and_no_session(make_ui: Callable[..., UI]) -> None:
    ui = make_ui()
    ui.get("/login")
    response = ui.post("/login", {"token": TOKEN + "x"})
    assert response.status_code == 401
    assert 'role="alert"' in response.text
    assert "set-cookie" not in response.headers
    assert ui.get("/", follow_redirects=False).headers["location"] == "/login"


def test_pages_redirect_to_login_and_writes_without_a_session_are_refused(
    make_ui: Callable[..., UI], store: FlagStore
) -> None:
    ui = make_ui()
    for page in ("/", "/flags/f", "/disable/f"):
        response = ui.get(page, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
    ui.get("/login")  # a pre-login session with a CSRF token
    assert ui.post("/gates/f", {"action": "enable"}).status_code == 401
    assert not store.known("f")


def test_under_tls_the_cookie_is_secure(store: FlagStore) -> None:
    ui = UI(TestClient(create_ui(store, token=TOKEN), base_url="https://testserver"), store)
    ui.get("/login")
    response = ui.post("/login", {"token": TOKEN}, follow_redirects=False)
    assert "; secure" in response.headers["set-cookie"].lower()


def test_log_out_ends_the_session(admin: UI) -> None:
    admin.get("/")
    response = admin.post("/logout", follow_redirects=False)
    assert response.headers["location"] == "/login"
    assert admin.get("/", follow_redirects=False).status_code == 303


def test_a_session_signed_with_another_token_is_void(store: FlagStore) -> None:
    old = UI(TestClient(create_ui(store, token=TOKEN)), store)
    old.login()
    cookie = old.client.cookies["chorus_ui"]
    rotated = TestClient(create_ui(store, token="another-token-0123456789"))
    rotated.cookies["chorus_ui"] = cookie
    assert rotated.get("/", follow_redirects=False).headers["location"] == "/login"


def test_an_expired_session_is_void(store: FlagStore, monkeypatch: pytest.MonkeyPatch) -> None:
    ui = UI(TestClient(create_ui(store, token=TOKEN, session_max_age_s=60)), store)
    ui.login()
    assert ui.get("/", follow_redirects=False).status_code == 200
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 120)  # itsdangerous reads it
    assert ui.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    ("csrf", "headers"),
    [
        ("", {}),  # missing
        ("not-the-token", {}),  # wrong
        (None, {"origin": "https://evil.example"}),  # right token, other origin
        (None, {"origin": "null"}),
    ],
)
def test_a_post_without_the_token_or_from_another_origin_is_403_and_changes_nothing(
    admin: UI, store: FlagStore, csrf: str | None, headers: dict[str, str]
) -> None:
    admin.get("/")
    form = {"action": "enable"} if csrf is None else {"action": "enable", "csrf": csrf}
    for path, extra in (("/gates/f", form), ("/create", {**form, "name": "g"})):
        response = admin.post(path, extra, headers=headers)
        assert response.status_code == 403
    assert store.all() == []
    assert store.audit() == []


def test_a_post_from_the_same_origin_is_taken(admin: UI, store: FlagStore) -> None:
    admin.get("/")
    response = admin.post("/gates/f", {"action": "enable"}, headers={"origin": "http://testserver"})
    assert response.status_code == 200
    assert store.enabled("f")


def test_the_login_form_needs_its_csrf_token_too(make_ui: Callable[..., UI]) -> None:
    ui = make_ui()
    ui.get("/login")
    response = ui.post("/login", {"token": TOKEN, "csrf": "forged"})
    assert response.status_code == 403
    assert ui.get("/", follow_redirects=False).status_code == 303


def test_every_response_carries_the_csp_and_pages_are_not_cached(admin: UI) -> None:
    admin.store.enable("f")
    for path in ("/", "/flags/f", "/disable/f", "/login", "/static/chorus.js", "/nope"):
        response = admin.get(path, follow_redirects=False)
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        if not path.startswith("/static/"):
            assert response.headers["cache-control"] == "no-store", path
    assert "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP


def test_pages_have_no_inline_script_style_or_handler(admin: UI) -> None:
    admin.store.enable_for_actor("f", "ann")
    for path in ("/", "/flags/f", "/disable/f"):
        text = admin.get(path).text
        assert "<style" not in text
        assert re.search(r"\sstyle\s*=", text) is None
        assert re.findall(r"<script[^>]*>", text) == ['<script src="/static/chorus.js" defer>']
        assert re.search(r"\son[a-z]+\s*=", text) is None, path


@pytest.mark.parametrize(
    "options",
    [
        {"banner_colour": "pink"},
        {"mode": "off"},
        {"token": ""},
        {"viewer_token": TOKEN},
        {"session_max_age_s": 0},
    ],
)
def test_create_ui_refuses_bad_options(store: FlagStore, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 (each option has its own message)
        create_ui(store, **{"token": TOKEN, **options})


def test_the_banner_starts_every_page(make_ui: Callable[..., UI]) -> None:
    ui = make_ui(banner="PRODUCTION <b>", banner_colour="orange")
    page = ui.get("/login").text
    body = page[page.index("<body") :]
    first = body[body.index(">") + 1 :].lstrip()
    assert first.startswith(
        '<div class="banner banner-orange" role="note">PRODUCTION &lt;b&gt;</div>'
    )
    ui.login(VIEWER)
    assert 'class="banner banner-orange"' in ui.get("/").text


def test_a_new_viewer_token_voids_the_old_viewer_sessions(store: FlagStore) -> None:
    old = UI(TestClient(create_ui(store, token=TOKEN, viewer_token=VIEWER)), store)
    old.login(VIEWER)
    assert old.get("/", follow_redirects=False).status_code == 200
    cookie = old.client.cookies["chorus_ui"]
    renewed = TestClient(create_ui(store, token=TOKEN, viewer_token="new-viewer-token-0123"))
    renewed.cookies["chorus_ui"] = cookie
    assert renewed.get("/", follow_redirects=False).headers["location"] == "/login"


def test_tokens_outside_ascii_log_in(store: FlagStore) -> None:
    ui = UI(TestClient(create_ui(store, token="tökén-ädmin", viewer_token="vïewer-tökén")), store)
    assert ui.login("vïewer-tökén").status_code == 200
    assert "read-only" in ui.get("/").text
