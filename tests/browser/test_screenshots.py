"""Screenshots of the flags page, a flag page and the cluster page, for the README.

Written to docs/screenshots/{flags,flag,cluster}.png (1280x800) by every run, from a
cluster of their own with a few flags such as a team would have, and an environment
banner.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.ui import (
    TOKEN,
    VIEWPORT,
    OpenUI,
    flag_path,
    put,
    ui_cluster,
    wait_live,
    write_screenshot,
)
from tests.helpers import Serve, eventually

pytestmark = pytest.mark.browser
BANNER = ("--ui-banner", "STAGING", "--ui-banner-colour", "orange")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Serve]]:
    yield from ui_cluster(tmp_path_factory.mktemp("nodes"), *BANNER)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def team_flags(a: Serve, c: Serve) -> None:
    """A few flags such as a team would have, with metadata, some written on c."""
    writes: list[tuple[Serve, str, dict[str, Any], str]] = [
        (a, "new-checkout", {"enabled": True, "author": "maria"}, ""),
        (a, "new-checkout", {"description": "One-page checkout", "owner": "payments"}, "/meta"),
        (c, "search-v2", {"actor": "user-1", "enabled": True, "author": "sam"}, ""),
        (c, "search-v2", {"group": "beta-testers", "enabled": True, "author": "sam"}, ""),
        (c, "search-v2", {"group": "banned", "enabled": False, "author": "sam"}, ""),
        (a, "search-v2", {"percentage_of_actors": 0.3, "author": "sam"}, ""),
        (a, "search-v2", {"description": "Search backed by the new index"}, "/meta"),
        (a, "search-v2", {"owner": "search-team", "expires": "2027-03-31"}, "/meta"),
        (a, "dark-mode", {"enabled": False, "author": "lee"}, ""),
        (a, "dark-mode", {"description": "Dark colour scheme", "owner": "web"}, "/meta"),
        (c, "pricing-experiment", {"percentage_of_time": 0.05, "author": "kim"}, ""),
    ]
    for node, name, body, path in writes:
        put(node.url, TOKEN, name, body, path)
    for i in range(12):  # propagation times for the cluster page's chart
        put(a.url, TOKEN, "dark-mode", {"enabled": i % 2 == 0, "author": "lee"})
    assert eventually(lambda: len(a.get("/flags").json()["flags"]) == 4, 5)


@pytest.mark.timeout(90)
def test_screenshots_of_the_three_pages(cluster: list[Serve], open_ui: OpenUI) -> None:
    a, _, c = cluster
    team_flags(a, c)
    page = open_ui(a)
    banner = page.get_by_role("note")
    expect(banner).to_have_text("STAGING")
    expect(banner).to_have_class("banner banner-orange")
    expect(page.locator("#flags-table tbody tr")).to_have_count(4)
    wait_live(page)
    shots = [write_screenshot(page, "flags")]

    page.goto(page.url + flag_path("search-v2"))
    expect(page.get_by_role("heading", level=1)).to_have_text("search-v2")
    expect(page.locator("#gates")).to_contain_text("beta-testers")
    wait_live(page)
    shots.append(write_screenshot(page, "flag"))

    page.goto(page.url.replace(flag_path("search-v2"), "cluster"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Cluster")
    this_node = page.get_by_role("region", name="This node")
    expect(this_node.get_by_role("definition").first).to_have_text("a")
    for peer in ("b", "c"):  # a row each in the members table
        expect(page.get_by_role("cell", name=peer, exact=True)).to_have_count(1)
    expect(page.get_by_role("img", name="Propagation times")).to_be_visible()
    expect(page.get_by_role("img", name="Membership events")).to_be_visible()
    wait_live(page)
    shots.append(write_screenshot(page, "cluster"))

    for shot in shots:
        assert png_size(shot.read_bytes()) == (VIEWPORT["width"], VIEWPORT["height"]), shot
