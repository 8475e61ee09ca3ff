"""Driving the web UI of ``chorus serve`` nodes in Debian's Chromium, with Playwright.

Shared by the browser tests (tests/browser/) and benchmarks/bench_ui_latency.py. The
browser is the system's /usr/bin/chromium (``apt-get install -y chromium``; .ci/run
installs it when missing), never a build Playwright downloads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize, expect

from tests.helpers import Serve, three_served

ROOT = Path(__file__).resolve().parents[2]
#: The test clusters' cluster secret and admin token, and the option that turns the UI on.
SECRET, TOKEN = "b7c1e2a9d40f3e5a6b7c8d9e0f1a2b3c", "browser-admin-token-3f1e9a"
UI_ON = ("--ui", "on")
CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get install -y chromium"
# What this machine's Chromium needs (as root, on a closed network): Playwright adds
# --headless and a fresh --user-data-dir of its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
#: Playwright's wait for any one step (an element, a navigation), in ms.
STEP_MS = 5000
#: How soon a page on one node must show a change made on another, in ms.
LIVE_MS = 1000
LIVE = re.compile(r"^\s*live\s*$")
RECONNECTING = re.compile(r"reconnecting")
#: The ``open_ui`` fixture: ``open_ui(node, path="", token=TOKEN)`` gives a logged-in page.
OpenUI = Callable[..., Page]


class ChromiumMissing(RuntimeError):
    """/usr/bin/chromium is not there."""


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless. Raises `ChromiumMissing` (naming the command that
    installs it) when it is not installed."""
    if not CHROMIUM.exists():
        raise ChromiumMissing(
            f"the browser tests drive Debian's Chromium at {CHROMIUM}, which is not "
            f"installed: run `{INSTALL}` as root (./scripts/_browser.sh, which .ci/run "
            "calls, does it when it is missing)"
        )
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
    )


def ui_cluster(tmp: Path, *options: str) -> Iterator[list[Serve]]:
    """Nodes a, b and c (`tests.helpers.three_served`) with the UI on and ``options``;
    a generator for a fixture to ``yield from``: the nodes are killed after."""
    with three_served(tmp, SECRET, TOKEN, (*UI_ON, *options)) as nodes:
        yield nodes


def ui_url(base: str, path: str = "") -> str:
    """The UI page ``path`` (``""``, ``login``, ``cluster``...) of the node at ``base``."""
    return f"{base}/ui/{path}"


def flag_path(name: str) -> str:
    return "flags/" + quote(name, safe="")


def new_page(browser: Browser) -> tuple[BrowserContext, Page]:
    """A page in a context of its own (its own cookies: a session per node)."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(STEP_MS)
    return context, context.new_page()


def log_in(page: Page, base: str, token: str) -> None:
    """Log in on the UI of the node at ``base`` with ``token``; wait for the page after."""
    page.goto(ui_url(base, "login"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def wait_live(page: Page, timeout_ms: float = STEP_MS) -> None:
    """Wait until the page's live-update stream is open (``#connection`` says live)."""
    expect(page.locator("#connection")).to_have_text(LIVE, timeout=timeout_ms)


def mark_window(page: Page) -> None:
    """Mark the page's window: a reload would lose the mark (see `not_reloaded`)."""
    page.evaluate("() => { window.__chorusNotReloaded = true; }")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("() => window.__chorusNotReloaded === true"))


def put(base: str, token: str, name: str, body: dict[str, Any], path: str = "") -> None:
    """One write through the node's HTTP admin (``PUT /flags/{name}{path}``)."""
    answer = httpx.put(
        f"{base}/flags/{quote(name, safe='')}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    answer.raise_for_status()


def write_screenshot(page: Page, name: str) -> Path:
    """Save the page (the viewport, 1280x800) as docs/screenshots/NAME.png."""
    path = ROOT / "docs" / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=path)
    return path
