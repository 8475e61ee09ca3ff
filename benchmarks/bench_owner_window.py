"""How long nodes disagree on a key's owner after a membership change, simulated.

`transport.scenarios.ownership_window` over 20 seeds per case: four nodes serving
one service (MemoryNetwork, 1-5 ms per hop, default heartbeat 0.5 s and failure
timeout 3 s), their `Node.owner_of` views sampled every 5 simulated ms. Simulated
time: the figures do not depend on the machine's load.

Prints a Markdown table and writes benchmarks/results/owner_window.json.
Run: ``python benchmarks/bench_owner_window.py`` (``--seeds 20``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

from _report import report  # noqa: E402

from transport.scenarios import OWNER_CASES, ownership_window  # noqa: E402

WHAT = {
    "crash": "a process killed (its links drop)",
    "silent": "a host lost or cut off (no link drops)",
    "stop": "a graceful stop (drain, then exit)",
    "start": "a new process starts and serves",
    "serve": "a running member starts serving",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "owner_window.json"
    )
    args = parser.parse_args(argv)
    results = {}
    rows = []
    for case in OWNER_CASES:
        runs = [ownership_window(case, seed) for seed in range(1, args.seeds + 1)]
        figures = {}
        for field in ("agreed_s", "spread_s", "two_owners_s"):
            values = [getattr(run, field) for run in runs]
            figures[field] = {"median": statistics.median(values), "max": max(values)}
        results[case] = figures
        agreed, spread, two = figures["agreed_s"], figures["spread_s"], figures["two_owners_s"]
        rows.append(
            (
                f"{WHAT[case]}: every node names the final owners after",
                f"{agreed['median'] * 1000:,.0f} ms (max {agreed['max'] * 1000:,.0f})",
                f"views differ {spread['max'] * 1000:,.0f} ms at most; "
                f"two self-named owners {two['max'] * 1000:,.0f} ms at most",
            )
        )
    report(f"Ownership window, simulated, medians of {args.seeds} seeds", rows, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
