"""Fixtures of the browser tests: Debian's Chromium driven by Playwright (sync API),
and real ``chorus serve`` processes on free 127.0.0.1 ports with their web UI on.

Each test module gets a three-node cluster of its own (``cluster``: nodes a, b, c,
killed at the module's end); ``open_ui(node)`` gives a page logged in on a node's UI,
in a browser context of its own (its own session cookie and CSRF token), closed after
the test. Every page records the JavaScript dialogs it meets (``dialogs``) and
dismisses them: a test that met one errors at teardown, for no page of the UI opens one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, sync_playwright

from tests.browser.ui import (
    TOKEN,
    ChromiumMissing,
    OpenUI,
    launch,
    log_in,
    new_page,
    ui_cluster,
    ui_url,
)
from tests.helpers import Serve


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, for one test module. Not for the session: while Playwright's sync API
    is open, asyncio sees a running event loop in the main thread, and every later
    test that calls asyncio.run (tests/flags/test_events.py does) would fail."""
    with sync_playwright() as playwright:
        try:
            chromium = launch(playwright)
        except ChromiumMissing as missing:
            pytest.fail(str(missing), pytrace=False)  # a failure, never a skip
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Serve]]:
    yield from ui_cluster(tmp_path_factory.mktemp("nodes"))


@pytest.fixture
def dialogs() -> list[str]:
    """The messages of every dialog (alert, confirm, prompt) any page opened."""
    return []


@pytest.fixture
def open_ui(browser: Browser, dialogs: list[str]) -> Iterator[OpenUI]:
    """``open_ui(node, path="", token=TOKEN)``: a new page logged in on ``node``'s UI,
    then at ``path`` under it (the flags page by default)."""
    contexts: list[BrowserContext] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def open_page(node: Serve, path: str = "", token: str = TOKEN) -> Page:
        context, page = new_page(browser)
        contexts.append(context)
        page.on("dialog", dismiss)
        log_in(page, node.url, token)
        page.goto(ui_url(node.url, path))
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert dialogs == [], f"pages opened dialogs: {dialogs}"  # no page of the UI opens one
