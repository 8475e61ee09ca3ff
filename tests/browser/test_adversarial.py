"""Breaks found by an adversarial review of the web UI, in Chromium against a real
three-node cluster."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.ui import OpenUI, ui_url
from tests.helpers import Serve

pytestmark = pytest.mark.browser


@pytest.mark.timeout(90)
def test_a_flag_named_dot_dot_cannot_be_created(cluster: list[Serve], open_ui: OpenUI) -> None:
    """Found by the review: '..' was a valid name, linked as /ui/flags/.., and
    Chromium removes the dot segment (%2E%2E too), opening the flags list instead.
    The grammar now refuses '.' and '..'; the UI says so and creates nothing."""
    a = cluster[0]
    page = open_ui(a)
    page.get_by_label("New flag name").fill("..")
    with page.expect_navigation():
        page.get_by_role("button", name="Create flag").click()
    expect(page.get_by_role("alert")).to_contain_text("name")
    page.goto(ui_url(a.url))
    expect(page.get_by_role("link", name="..", exact=True)).to_have_count(0)
