"""Printing a benchmark's figures and saving them: one format for every script."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def report(title: str, rows: Iterable[tuple[str, str, str]], results: Any, path: Path) -> None:
    """Print ``rows`` as a Markdown table of figure, value and note; write ``results`` as JSON."""
    print(f"{title}\n")
    print("| figure | value | note |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {path}")
