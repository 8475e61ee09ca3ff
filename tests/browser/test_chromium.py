"""Without Debian's Chromium the browser tests fail, naming the command that installs it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.browser import ui

pytestmark = pytest.mark.browser


@pytest.mark.timeout(30)
def test_a_missing_chromium_is_a_failure_that_names_its_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ui, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(ui.ChromiumMissing, match=r"apt-get install -y chromium"):
        ui.launch(None)  # type: ignore[arg-type]  # raises before it needs Playwright


@pytest.mark.timeout(30)
def test_the_browser_is_debians_chromium(browser: Browser) -> None:
    installed = subprocess.run(
        [str(ui.CHROMIUM), "--version"], capture_output=True, text=True, timeout=20, check=True
    )
    assert browser.browser_type.name == "chromium"
    assert f"Chromium {browser.version} " in installed.stdout  # the one Playwright drives
