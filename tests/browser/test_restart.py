"""Node B restarts while its page is open: the page says so, then resumes, caught up."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser import ui
from tests.helpers import Serve, eventually

pytestmark = pytest.mark.browser


@pytest.mark.timeout(90)
def test_a_page_on_a_restarting_node_reconnects_and_shows_what_it_missed(
    cluster: list[Serve], open_ui: ui.OpenUI
) -> None:
    a, b, _ = cluster
    name = "resilient"
    ui.put(a.url, ui.TOKEN, name, {"enabled": True})
    assert eventually(lambda: b.get(f"/flags/{name}").status_code == 200, 5)
    page = open_ui(b, ui.flag_path(name))
    gates = page.locator("#gates")
    ui.wait_live(page)
    ui.mark_window(page)

    assert b.stop() == 0  # SIGTERM, with the page's stream open: a clean exit, in time
    expect(page.locator("#connection")).to_have_text(ui.RECONNECTING, timeout=5000)
    ui.put(a.url, ui.TOKEN, name, {"actor": "while-b-was-down", "enabled": True})
    ui.put(a.url, ui.TOKEN, name, {"group": "missed-group", "enabled": True})
    b.start()  # the same node id, ports and options
    b.wait_ready()
    ui.wait_live(page, 15_000)
    expect(gates).to_contain_text("while-b-was-down", timeout=5000)
    expect(gates).to_contain_text("missed-group")
    assert ui.not_reloaded(page)

    # And live again: a change on A shows within a second.
    ui.put(a.url, ui.TOKEN, name, {"actor": "after-the-restart", "enabled": True})
    expect(gates).to_contain_text("after-the-restart", timeout=ui.LIVE_MS)
    assert ui.not_reloaded(page)
