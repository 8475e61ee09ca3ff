"""The web UI: server-side render time of the flags page with 1,000 flags.

Over a `FlagStore` on a `flags.LocalMap` (no network), holding ``--flags`` flags of
four kinds in turn (on, off, partial with actors, a group and a percentage, and
metadata only), each with a description, an owner and its audit records, the UI of
`flags.ui.create_ui`:

- page: ``GET /`` through Starlette's in-process TestClient with a logged-in
  session, the whole ASGI app (session, routing, reading the store, Jinja2,
  headers); the client's own overhead is in it too (the time of a
  ``GET /static/chorus.css`` is shown for comparison).
- rows and template: the two halves of the page alone, called directly: reading
  the store into the rows (`flags.ui._views.flag_rows`) and rendering the template.

Medians of ``--repeats`` renders, in ms. Prints a Markdown table and writes
benchmarks/results/ui.json. Run: ``python benchmarks/bench_ui.py`` (``--flags 1000
--repeats 30``).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from _report import report  # noqa: E402

from flags import FlagStore, LocalMap  # noqa: E402
from flags.ui import create_ui  # noqa: E402
from flags.ui._app import _templates  # noqa: E402
from flags.ui._views import flag_rows, when  # noqa: E402

TOKEN = "bench-token-0123456789"


def filled_store(count: int) -> FlagStore:
    """A store of ``count`` flags, four kinds in turn, each with metadata."""
    store = FlagStore(LocalMap("bench"))
    for index in range(count):
        name = f"flag-{index:05d}"
        store.set_metadata(name, description=f"what flag {index} switches", owner="team-web")
        kind = index % 4
        if kind == 0:
            store.enable(name, author="ann")
        elif kind == 1:
            store.disable(name, author="bob")
        elif kind == 2:
            store.enable_for_actor(name, "user-1")
            store.enable_for_group(name, "beta")
            store.enable_percentage_of_actors(name, 0.25)
    return store


def median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flags", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "ui.json")
    args = parser.parse_args()

    store = filled_store(args.flags)
    http = TestClient(create_ui(store, token=TOKEN))
    login = http.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', login)
    assert csrf is not None
    http.post("/login", data={"token": TOKEN, "csrf": csrf.group(1)})
    page = http.get("/")
    assert page.status_code == 200
    assert page.text.count("<tr>") == args.flags + 1  # the header row, one per flag

    def get_page() -> None:
        assert http.get("/").status_code == 200

    now_ms = int(time.time() * 1000)
    rows = flag_rows(store, "", now_ms)
    template = _templates().get_template("flags.html")
    context = {
        "root": "",
        "flag_url": lambda name: "/flags/" + name,
        "csrf": "x",
        "role": "admin",
        "can_write": True,
        "allow_create": True,
        "allow_delete": True,
        "banner": None,
        "banner_colour": "red",
        "has_cluster": False,
        "events_url": None,
        "notice": None,
        "error": None,
        "title": "Flags",
        "rows": rows,
        "query": "",
        "when": when,
    }

    figures = {
        "page_ms": median_ms(get_page, args.repeats),
        "rows_ms": median_ms(lambda: flag_rows(store, "", now_ms), args.repeats),
        "template_ms": median_ms(lambda: template.render(context), args.repeats),
        "static_ms": median_ms(lambda: http.get("/static/chorus.css"), args.repeats),
        "page_bytes": len(page.content),
    }
    rows_out = [
        ("flags page, GET / (whole app)", f"{figures['page_ms']:.1f} ms", f"{args.flags} flags"),
        ("reading the store into rows", f"{figures['rows_ms']:.1f} ms", "flag_rows"),
        ("rendering the template", f"{figures['template_ms']:.1f} ms", "Jinja2"),
        ("GET /static/chorus.css", f"{figures['static_ms']:.2f} ms", "the client's overhead"),
        ("page size", f"{figures['page_bytes'] / 1024:.0f} KiB", "HTML, uncompressed"),
    ]
    report(
        f"Web UI: the flags page with {args.flags} flags (medians of {args.repeats} renders; "
        "in process, no network)",
        rows_out,
        {"flags": args.flags, "repeats": args.repeats, **figures},
        args.json,
    )


if __name__ == "__main__":
    main()
