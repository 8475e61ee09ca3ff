"""Writes made in node A's UI, seen live on node B's page and agreed on by node C.

Node A's page and node B's page are each logged in on their own node, in browser
contexts of their own. Node B's page is never reloaded: a mark set on its window
before the writes is still there after them.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.ui import (
    LIVE_MS,
    TOKEN,
    OpenUI,
    flag_path,
    mark_window,
    not_reloaded,
    put,
    wait_live,
)
from tests.helpers import Serve, eventually

pytestmark = pytest.mark.browser

ANSWER = re.compile(r"^\s*(enabled|disabled)\b")


def evaluated(node: Serve, name: str, actor: str | None, groups: tuple[str, ...] = ()) -> bool:
    """``enabled`` for ``actor`` and ``groups`` through the node's HTTP API."""
    params: list[tuple[str, str]] = [("group", g) for g in groups]
    if actor is not None:
        params.append(("actor", actor))
    answer = node.get(f"/flags/{name}", params=params)
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["enabled"])


def evaluate_in_ui(page: Page, actor: str, groups: str = "") -> str:
    """The flag page's "Evaluate for" form: ``enabled`` or ``disabled``."""
    page.get_by_label("Evaluate for actor").fill(actor)
    page.get_by_label("Groups").fill(groups)
    page.get_by_role("button", name="Evaluate", exact=True).click()
    output = page.locator("output#evaluation")
    expect(output).to_have_text(ANSWER)
    found = ANSWER.match(output.inner_text())
    assert found is not None
    return found[1]


def write_then_seen_on_b(a_page: Page, b_page: Page, submit: Any, seen: re.Pattern[str]) -> float:
    """Submit a form on A's page (``submit()``), wait for A's write to come back (its
    redirect), then for B's ``#gates`` to show ``seen``: seconds from A's answer to B."""
    with a_page.expect_navigation():
        submit()
    written = time.perf_counter()
    expect(b_page.locator("#gates")).to_contain_text(seen, timeout=LIVE_MS)
    return time.perf_counter() - written


@pytest.mark.timeout(90)
def test_writes_on_a_show_live_on_b_and_c_agrees(cluster: list[Serve], open_ui: OpenUI) -> None:
    a, b, c = cluster
    name = "new-checkout"
    a_page = open_ui(a)
    expect(a_page.get_by_role("heading", level=1)).to_have_text("Flags")
    a_page.get_by_label("New flag name").fill(name)
    a_page.get_by_role("button", name="Create flag").click()
    expect(a_page.get_by_role("heading", level=1)).to_have_text(name)
    assert a_page.url.endswith("/ui/" + flag_path(name))

    b_page = open_ui(b, flag_path(name))
    expect(b_page.get_by_role("heading", level=1)).to_have_text(name)
    wait_live(b_page)
    mark_window(b_page)

    took = []
    a_page.get_by_label("Actor", exact=True).fill("user-1")
    enable_actor = a_page.get_by_role("button", name="Enable for actor")
    took.append(write_then_seen_on_b(a_page, b_page, enable_actor.click, re.compile("user-1")))
    a_page.get_by_label("Group", exact=True).fill("beta-testers")
    enable_group = a_page.get_by_role("button", name="Enable for group")
    took.append(
        write_then_seen_on_b(a_page, b_page, enable_group.click, re.compile("beta-testers"))
    )
    a_page.get_by_label("Percentage of actors").fill("30")
    set_percentage = a_page.get_by_role("button", name="Set percentage of actors")
    took.append(write_then_seen_on_b(a_page, b_page, set_percentage.click, re.compile(r"30\s*%")))
    assert all(t < LIVE_MS / 1000 for t in took), took
    assert not_reloaded(b_page)

    # Node C's HTTP API: the gates arrived, and each answer agrees with A's
    # "Evaluate for" form.
    def c_has_every_gate() -> bool:
        flag = c.get(f"/flags/{name}").json()
        return bool(
            flag.get("actors") == {"user-1": True}
            and flag.get("groups") == {"beta-testers": True}
            and flag.get("percentage_of_actors") == pytest.approx(0.3)
        )

    assert eventually(c_has_every_gate, 5), c.get(f"/flags/{name}").text
    assert evaluated(c, name, "user-1")
    assert evaluated(c, name, "someone", ("beta-testers",))
    by_percentage = {f"visitor-{i}": evaluated(c, name, f"visitor-{i}") for i in range(20)}
    assert 1 <= sum(by_percentage.values()) <= 15, by_percentage  # 30 %, give or take
    inside = next(actor for actor, on in by_percentage.items() if on)
    outside = next(actor for actor, on in by_percentage.items() if not on)
    assert evaluate_in_ui(a_page, "user-1") == "enabled"
    assert evaluate_in_ui(a_page, "someone", "beta-testers") == "enabled"
    assert evaluate_in_ui(a_page, inside) == "enabled"
    assert evaluate_in_ui(a_page, outside) == "disabled"
    assert not evaluated(c, name, outside)


def _flag(node: Serve, name: str) -> dict[str, Any]:
    answer = node.get(f"/flags/{name}")
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def _audit(node: Serve, name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = node.get(f"/flags/{name}/audit").json()["audit"]
    return entries


@pytest.mark.timeout(90)
def test_disabling_asks_first_and_a_restore_brings_the_gates_back_everywhere(
    cluster: list[Serve], open_ui: OpenUI
) -> None:
    a = cluster[0]
    name = "search-v2"
    put(a.url, TOKEN, name, {"enabled": True, "author": "setup"})
    put(a.url, TOKEN, name, {"actor": "user-9", "enabled": True, "author": "setup"})
    gates = {"boolean": True, "actors": {"user-9": True}}
    page = open_ui(a, flag_path(name))
    before = _audit(a, name)

    # Disable for everyone, then Cancel on the confirmation: nothing changes.
    page.get_by_role("button", name="Disable for everyone").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Disable {name}?")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    time.sleep(0.3)  # a write, had there been one, would be applied by now
    assert {k: _flag(a, name)[k] for k in gates} == gates
    assert _audit(a, name) == before

    # Disable, confirmed: off on every node.
    page.get_by_role("button", name="Disable for everyone").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Disable {name}?")
    page.get_by_role("button", name="Disable", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    for node in cluster:

        def disabled(node: Serve = node) -> bool:
            return _flag(node, name)["boolean"] is False

        assert eventually(disabled, 5), node.name

    # The history, newest first: the disable, then the actor gate. Restoring the state
    # after the actor gate's change brings the boolean gate back on, everywhere.
    restore = re.compile("^Restore the state after the change of ")
    expect(page.get_by_role("button", name=restore)).to_have_count(len(before) + 1)
    actor_change = page.locator("#audit :is(tr, li)").filter(has_text="user-9")
    with page.expect_navigation():
        actor_change.get_by_role("button", name=restore).click()
    for node in cluster:

        def restored(node: Serve = node) -> bool:
            flag = _flag(node, name)
            return {k: flag[k] for k in gates} == gates

        assert eventually(restored, 5), (node.name, _flag(node, name))
    newest = _audit(a, name)[0]
    assert newest["action"] == "restore", newest
    assert len(_audit(a, name)) == len(before) + 2
    expect(page.locator("#audit")).to_contain_text("restore")  # the page after it says so


def _post_on(page: Page, button: str) -> None:
    """Click a form's button on ``page`` and wait for the redirect after the write."""
    with page.expect_navigation():
        page.get_by_role("button", name=button, exact=True).click()
    expect(page.locator("p.error")).to_have_count(0)


@pytest.mark.timeout(90)
def test_a_rule_added_on_a_changes_the_evaluation_live_on_b(
    cluster: list[Serve], open_ui: OpenUI
) -> None:
    a, b, _ = cluster
    name = "layout"
    a_page = open_ui(a)
    a_page.get_by_label("New flag name").fill(name)
    a_page.get_by_role("button", name="Create flag").click()
    expect(a_page.get_by_role("heading", level=1)).to_have_text(name)
    # A flag of gates alone keeps the typed forms folded: unfold, make it a string flag.
    a_page.locator("#targeting-details > summary").click()
    a_page.get_by_label("Value type").select_option("string")
    _post_on(a_page, "Set type")
    for variant in ("green", "blue"):
        a_page.get_by_label("Variant name").fill(variant)
        a_page.get_by_label("Value (JSON").fill(f'"{variant[0]}"')
        _post_on(a_page, "Save variant")
    a_page.get_by_label("Fallthrough", exact=True).fill("green")
    _post_on(a_page, "Set fallthrough")
    _post_on(a_page, "Enable for everyone")

    query = "?actor=u1&attrs=country%3Dfr%0Aversion%3D2.1.0"
    b_page = open_ui(b, flag_path(name) + query)
    evaluation = b_page.locator("output#evaluation")
    expect(evaluation).to_have_text(re.compile(r"serves green \(DEFAULT\)"))
    wait_live(b_page)
    mark_window(b_page)

    a_page.get_by_label("Rule id").fill("r1")
    a_page.get_by_label("Conditions, one a line").fill(
        "country in fr, de\nversion semver_gte 2.0.0"
    )
    a_page.get_by_label("Serve:").fill("blue")
    with a_page.expect_navigation():
        a_page.get_by_role("button", name="Save rule").click()
    written = time.perf_counter()
    expect(evaluation).to_have_text(re.compile(r"serves blue \(TARGETING_MATCH\)"), timeout=LIVE_MS)
    took = time.perf_counter() - written
    expect(b_page.locator("#evaluation-detail")).to_contain_text("r1")
    expect(b_page.locator("#targeting")).to_contain_text("country in fr, de")
    assert not_reloaded(b_page)
    assert took < LIVE_MS / 1000, took
    expect(a_page.locator("#audit")).to_contain_text("set_rule r1: country in fr, de")
