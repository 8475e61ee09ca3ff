"""From a write on node A to the change painted in a browser attached to node B.

Three real ``chorus serve`` processes on 127.0.0.1 with the web UI on; Debian's
Chromium (headless, /usr/bin/chromium, driven by Playwright) holds node B's flags page
open, logged in, live over Server-Sent Events. Each toggle turns one flag on or off
with an HTTP PUT on node A; its time runs from just before the PUT (``perf_counter``)
until the flag's row on B's page reads the new state, waited for with
``page.wait_for_function`` polling on each animation frame (so the change is in a
frame being painted). The figures include the PUT's round trip, gossip from A to B,
B's event stream, the page's refetch of itself and the swap of its table, and one
Playwright round trip to see it.

Prints a Markdown table and writes benchmarks/results/ui_latency.json.
Run: ``PYTHONPATH=. python benchmarks/bench_ui_latency.py [--toggles 50]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))  # the checkout's packages, and its test helpers

from _report import report  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402

from tests.browser.ui import (  # noqa: E402
    SECRET,
    TOKEN,
    UI_ON,
    launch,
    log_in,
    new_page,
    put,
    ui_url,
    wait_live,
)
from tests.helpers import eventually, three_served  # noqa: E402

FLAG = "painted"
#: True once the flag's row on the flags page has a cell reading exactly `state`.
SHOWS = """([name, state]) => {
  for (const row of document.querySelectorAll("#flags-table tbody tr")) {
    const cells = [...row.cells].map(cell => cell.textContent.trim());
    if (cells.includes(name)) return cells.includes(state);
  }
  return false;
}"""


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value at or above p % of them."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]


def toggle_times(page: Page, writer: str, toggles: int, timeout_ms: float) -> list[float]:
    """Seconds from each PUT on ``writer`` to ``page`` showing it, for each toggle."""
    times = []
    for i in range(toggles):
        on = i % 2 == 0
        started = time.perf_counter()
        put(writer, TOKEN, FLAG, {"enabled": on, "author": "bench"})
        page.wait_for_function(
            SHOWS, arg=[FLAG, "on" if on else "off"], polling="raf", timeout=timeout_ms
        )
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toggles", type=int, default=50)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "ui_latency.json"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp,
        three_served(Path(tmp), SECRET, TOKEN, UI_ON) as (a, b, _),
        sync_playwright() as playwright,
    ):
        browser = launch(playwright)
        try:
            put(a.url, TOKEN, FLAG, {"enabled": False, "author": "bench"})
            assert eventually(lambda: b.get(f"/flags/{FLAG}").status_code == 200, 5)
            _, page = new_page(browser)
            log_in(page, b.url, TOKEN)
            page.goto(ui_url(b.url))
            wait_live(page)
            page.wait_for_function(SHOWS, arg=[FLAG, "off"], timeout=5000)
            # Two toggles to warm up (connections, the page's first refetch), not counted.
            toggle_times(page, a.url, 2, 5000)
            times_ms = [t * 1000 for t in toggle_times(page, a.url, args.toggles, 5000)]
        finally:
            browser.close()
    results = {
        "toggles": args.toggles,
        "p50_ms": statistics.median(times_ms),
        "p99_ms": percentile(times_ms, 99),
        "max_ms": max(times_ms),
        "mean_ms": statistics.fmean(times_ms),
        "times_ms": times_ms,
    }
    rows = [
        ("write on A to painted on B, p50", f"{results['p50_ms']:.1f} ms", "HTTP PUT to the DOM"),
        ("write on A to painted on B, p99", f"{results['p99_ms']:.1f} ms", "target: under 1 s"),
        ("slowest", f"{results['max_ms']:.1f} ms", f"of {args.toggles} toggles"),
    ]
    report(
        "Web UI live updates: 3 chorus serve processes, headless Chromium on node B",
        rows,
        results,
        args.json,
    )


if __name__ == "__main__":
    main()
