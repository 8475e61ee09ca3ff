"""Hostile values render inert; forged posts, wrong tokens and read-only mode change nothing."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.ui import (
    SECRET,
    TOKEN,
    OpenUI,
    flag_path,
    new_page,
    put,
    ui_cluster,
    ui_url,
)
from tests.helpers import Serve, free_port

pytestmark = pytest.mark.browser

# Flag names, actor ids and group names follow the store's grammar (letters, digits and
# . _ - : @ +), which still admits a name that reads as a javascript: URL.
NAME = "javascript:alert"
ACTOR = "javascript:void"
GROUP = "@import"
AUTHOR = "<script>alert('author')</script>\"' onload=alert(1) javascript:alert(1)"
DESCRIPTION = (
    "<script>alert('description')</script><img src=x onerror=alert(2)>\"'>"
    '<a href="javascript:alert(3)">click me</a> '
).ljust(2000, "d")  # the longest description the store takes
OWNER = "javascript:alert(4)//\"><script>alert('owner')</script>"
#: 10,000 characters of hostile text, for what the UI reflects without storing.
VIEWER = "browser-viewer-token-8c2d41"
LONG = ("\"'><script>alert('long')</script><img src=x onerror=alert(5)>").ljust(10_000, "x")

#: What the page holds that could run or navigate: scripts (with the src of each),
#: event-handler attributes, URLs of a javascript: scheme, images, frames.
INERT = """() => {
  const scripts = [...document.scripts].map(s => s.getAttribute("src"));
  const handlers = [];
  const urls = [];
  for (const el of document.querySelectorAll("*")) {
    for (const attribute of el.attributes) {
      if (attribute.name.toLowerCase().startsWith("on")) {
        handlers.push(el.tagName + " " + attribute.name);
      }
      if (["href", "src", "action", "formaction", "xlink:href"].includes(attribute.name)) {
        let protocol = "";
        try { protocol = new URL(attribute.value, document.baseURI).protocol; } catch {}
        if (protocol === "javascript:" || /^\\s*javascript:/i.test(attribute.value)) {
          urls.push(el.tagName + " " + attribute.name + "=" + attribute.value);
        }
      }
    }
  }
  return {
    scripts,
    handlers,
    urls,
    images: document.images.length,
    frames: document.querySelectorAll("iframe, object, embed, frame").length,
  };
}"""

#: A form button's form: where it posts, and what it sends (with the button's own
#: name and value, as a click would).
FORM = """button => {
  const form = button.form;
  const fields = {};
  for (const [key, value] of new FormData(form, button)) fields[key] = String(value);
  // getAttribute: form.action would be the form's input named "action", if any.
  const action = new URL(form.getAttribute("action") || "", document.baseURI).href;
  return {action, method: (form.getAttribute("method") || "get").toLowerCase(), fields};
}"""


def assert_inert(page: Page, dialogs: list[str]) -> None:
    found = page.evaluate(INERT)
    own = [src for src in found["scripts"] if src is not None and src.endswith("chorus.js")]
    assert found["scripts"] == own, found["scripts"]  # no script but the UI's own file
    assert len(own) <= 1
    assert found["handlers"] == [], found["handlers"]
    assert found["urls"] == [], found["urls"]
    assert found["images"] == 0
    assert found["frames"] == 0
    page.wait_for_timeout(200)  # an onerror or a deferred script would have run by now
    assert dialogs == []


def form_of(button: Locator) -> dict[str, Any]:
    form: dict[str, Any] = button.evaluate(FORM)
    assert form["method"] == "post", form
    assert "csrf" in form["fields"], form
    return form


def state(node: Serve, name: str) -> tuple[Any, Any]:
    """The flag's gates and metadata, and its audit trail, through the HTTP API."""
    flag = node.get(f"/flags/{name}").json()
    for answer_only in ("enabled", "reason", "node", "synced"):
        flag.pop(answer_only, None)
    return flag, node.get(f"/flags/{name}/audit").json()["audit"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Serve]]:
    """Three nodes with the UI on, which also take a viewer token."""
    tmp = tmp_path_factory.mktemp("nodes")
    (tmp / "viewer-token").write_text(VIEWER)
    yield from ui_cluster(tmp, "--viewer-token-file", str(tmp / "viewer-token"))


@pytest.fixture(scope="module")
def hostile(cluster: list[Serve]) -> str:
    """A flag on node a holding every hostile value the store takes."""
    base = cluster[0].url
    put(base, TOKEN, NAME, {"enabled": True, "author": AUTHOR})
    put(base, TOKEN, NAME, {"actor": ACTOR, "enabled": True, "author": AUTHOR})
    put(base, TOKEN, NAME, {"group": GROUP, "enabled": False, "author": AUTHOR})
    meta = {"description": DESCRIPTION, "owner": OWNER, "author": AUTHOR}
    put(base, TOKEN, NAME, meta, path="/meta")
    return NAME


@pytest.mark.timeout(60)
def test_hostile_values_render_inert_and_the_pages_stay_usable(
    cluster: list[Serve], hostile: str, open_ui: OpenUI, dialogs: list[str]
) -> None:
    a = cluster[0]
    page = open_ui(a)
    row = page.locator("#flags-table tbody tr").filter(has_text=hostile)
    expect(row).to_have_count(1)
    expect(row).to_contain_text("<script>alert('description')</script>")  # shown, as text
    expect(row).to_contain_text(OWNER)
    assert_inert(page, dialogs)

    # The name's link leads to its page, not to a javascript: URL.
    row.get_by_role("link", name=hostile).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(hostile)
    assert urlsplit(page.url).path == "/ui/" + flag_path(hostile)
    expect(page.get_by_label("Description")).to_have_value(DESCRIPTION)
    expect(page.get_by_label("Owner")).to_have_value(OWNER)
    expect(page.locator("#audit")).to_contain_text(AUTHOR)
    expect(page.locator("#gates")).to_contain_text(ACTOR)
    expect(page.locator("#gates")).to_contain_text(GROUP)
    assert_inert(page, dialogs)

    # Reflected, not stored: 10,000 hostile characters to evaluate for and filter by.
    page.get_by_label("Evaluate for actor").fill(LONG[:200])
    page.get_by_role("button", name="Evaluate", exact=True).click()
    page.wait_for_load_state()
    assert_inert(page, dialogs)
    page.goto(ui_url(a.url))
    page.get_by_label("Filter by name").fill(LONG)
    page.get_by_role("button", name="Filter", exact=True).click()
    page.wait_for_load_state()
    expect(page.locator("#flags-table")).not_to_contain_text(hostile)
    assert_inert(page, dialogs)

    # An actor id outside the grammar, through the form: refused, shown inert.
    page.goto(ui_url(a.url, flag_path(hostile)))
    before = a.get(f"/flags/{hostile}").json()["actors"]
    page.get_by_label("Actor", exact=True).fill("<script>alert('actor')</script>\"'")
    page.get_by_role("button", name="Enable for actor").click()
    page.wait_for_load_state()
    assert_inert(page, dialogs)
    assert a.get(f"/flags/{hostile}").json()["actors"] == before

    # Still usable: a button on the hostile flag's page works.
    page.goto(ui_url(a.url, flag_path(hostile)))
    page.get_by_label("Actor", exact=True).fill("after-the-attack")
    with page.expect_navigation():
        page.get_by_role("button", name="Enable for actor").click()
    expect(page.locator("#gates")).to_contain_text("after-the-attack")
    assert a.get(f"/flags/{hostile}").json()["actors"].get("after-the-attack") is True
    assert_inert(page, dialogs)


@pytest.mark.timeout(60)
def test_forged_posts_are_refused_and_change_nothing(
    cluster: list[Serve], hostile: str, open_ui: OpenUI, dialogs: list[str]
) -> None:
    a = cluster[0]
    page = open_ui(a, flag_path(hostile))
    metadata = form_of(page.get_by_role("button", name="Save metadata"))
    page.get_by_label("Group", exact=True).fill("forged")
    group = form_of(page.get_by_role("button", name="Enable for group"))
    fields = group["fields"]
    before = state(a, hostile)

    def post(form: dict[str, Any], fields: dict[str, Any], **headers: str) -> int:
        answer = page.request.post(
            form["action"], form=fields, headers=headers, max_redirects=0, timeout=5000
        )
        return answer.status

    assert post(group, {k: v for k, v in fields.items() if k != "csrf"}) == 403
    assert post(group, {**fields, "csrf": "0" * len(fields["csrf"])}) == 403
    # Another origin, with the session's own CSRF token: refused by its Origin.
    assert post(group, fields, Origin="http://evil.example") == 403
    # 10,000 characters of description, past any maxlength the form sets: refused.
    status = post(metadata, {**metadata["fields"], "description": LONG}, Origin=a.url)
    assert 400 <= status < 500, status
    time.sleep(0.3)
    assert state(a, hostile) == before

    # A page of another origin on the same host (the same site, so the strict cookie
    # goes along) posts the form, in the browser: refused too.
    port = free_port()
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in fields.items()
    )
    action = html.escape(group["action"])
    attack = f'<form method="post" action="{action}">{hidden}<button>Go</button></form>'
    page.route(
        f"http://127.0.0.1:{port}/attack",
        lambda route: route.fulfill(content_type="text/html", body=attack),
    )
    page.goto(f"http://127.0.0.1:{port}/attack")
    with page.expect_response(group["action"]) as refused:
        page.get_by_role("button", name="Go").click()
    assert refused.value.status == 403
    assert refused.value.request.header_value("origin") == f"http://127.0.0.1:{port}"
    time.sleep(0.3)
    assert state(a, hostile) == before

    # The same post, from the UI's own origin with its token, is taken: the refusals
    # above were for what they lacked.
    assert post(group, fields, Origin=a.url) == 303
    assert a.get(f"/flags/{hostile}").json()["groups"].get("forged") is True
    assert dialogs == []


@pytest.mark.timeout(60)
def test_a_wrong_token_cannot_log_in(cluster: list[Serve], browser: Browser) -> None:
    a = cluster[0]
    context, page = new_page(browser)
    try:
        page.goto(ui_url(a.url, "login"))
        page.get_by_label("Token").fill(TOKEN + "x")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.get_by_role("button", name="Log in").click()
        assert answer.value.status == 401
        expect(page.get_by_role("alert")).to_be_visible()
        expect(page.get_by_role("button", name="Log out")).to_have_count(0)
        page.goto(ui_url(a.url))  # still not logged in: back to the login page
        expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
        assert page.get_by_role("table").count() == 0
    finally:
        context.close()


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Serve]:
    """A node of its own (one-node cluster) with ``--ui read-only``, holding a flag."""
    node = Serve("ro", [], tmp_path, SECRET, TOKEN, ("--ui", "read-only"))
    try:
        node.wait_ready()
        put(node.url, TOKEN, "checkout", {"enabled": True})
        yield node
    finally:
        node.process.kill()
        node.process.wait(10)


WRITES = (
    "Create flag",
    "Enable for everyone",
    "Disable for everyone",
    "Enable for actor",
    "Deny actor",
    "Enable for group",
    "Deny group",
    "Set percentage of actors",
    "Set percentage of time",
    "Save metadata",
    "Delete flag",
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("who", ["read-only mode", "viewer token"])
def test_no_write_control_shows_and_writes_are_refused(
    who: str, cluster: list[Serve], request: pytest.FixtureRequest, open_ui: OpenUI
) -> None:
    """A node started with ``--ui read-only`` (logged in with the admin token), or a
    node with the UI on, logged in with the viewer token."""
    # Where the write forms post, read off a node whose UI is on, for a flag of the
    # same name, logged in as admin.
    put(cluster[0].url, TOKEN, "checkout", {"enabled": False})
    on = open_ui(cluster[0], flag_path("checkout"))
    enable = form_of(on.get_by_role("button", name="Enable for everyone"))
    path = urlsplit(enable["action"]).path

    node: Serve = request.getfixturevalue("read_only") if who == "read-only mode" else cluster[0]
    page = open_ui(node, token=TOKEN if who == "read-only mode" else VIEWER)
    expect(page.get_by_role("heading", level=1)).to_have_text("Flags")
    expect(page.locator("#flags-table")).to_contain_text("checkout")
    for where in ("", flag_path("checkout")):
        page.goto(ui_url(node.url, where))
        for label in WRITES:
            expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="Remove")).to_have_count(0)
        expect(page.get_by_role("button", name="Restore")).to_have_count(0)
        expect(page.get_by_label("New flag name")).to_have_count(0)
        posting = page.locator("form[method=post i]")
        expect(posting).to_have_count(1)  # logging out only
        expect(posting.get_by_role("button")).to_have_text("Log out")
    expect(page.get_by_role("button", name="Evaluate", exact=True)).to_be_visible()  # a read

    log_out = form_of(page.get_by_role("button", name="Log out"))
    csrf = log_out["fields"]["csrf"]
    before = state(node, "checkout")
    answer = page.request.post(
        node.url + path,
        form={**enable["fields"], "csrf": csrf},
        headers={"Origin": node.url},
        max_redirects=0,
        timeout=5000,
    )
    assert answer.status == 403
    time.sleep(0.3)
    assert state(node, "checkout") == before
    # The session's CSRF token was good: logging out with it works.
    logged_out = page.request.post(
        log_out["action"],
        form=log_out["fields"],
        headers={"Origin": node.url},
        max_redirects=0,
        timeout=5000,
    )
    assert logged_out.status == 303
