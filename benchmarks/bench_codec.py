"""Benchmarks of the crdt codec's decoders: the hot path of every message a node receives.

Prints a Markdown table of medians (min-max over the repeats) and writes them as JSON
to benchmarks/results/codec.json. Nothing is asserted: run it before and after a codec
change and compare.

Run: ``.venv/bin/python benchmarks/bench_codec.py`` (no extra packages needed).
Options: ``--keys N`` (full-state size, default 100,000), ``--repeats R`` (default 9),
``--json PATH``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import report

import crdt
from hlc import Timestamp

BASE_MS = 1_700_000_000_000


def per_call(fn: Callable[[], object], calls: int, repeats: int) -> list[float]:
    """Seconds per call of ``fn``, timed in batches of ``calls``, one figure per repeat."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls)
    return samples


def flag_map(n: int) -> crdt.LWWMap:
    """``n`` boolean flags under str keys, as a full state."""
    m = crdt.LWWMap()
    for i in range(n):
        m.set(f"flag:{i}", i % 7 == 0, Timestamp(BASE_MS + i, 0, f"node-{i % 3}"))
    return m


def record_map(n: int) -> crdt.LWWMap:
    """``n`` JSON-like records under tuple keys, as the flag store writes audit entries."""
    m = crdt.LWWMap()
    for i in range(n):
        record = {"author": "ann", "action": "enable", "gates": ["boolean", i], "ratio": 0.25}
        m.set((f"flag-{i}", "audit", str(i)), record, Timestamp(BASE_MS + i, 0, "node-a"))
    return m


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="full-state size")
    parser.add_argument("--repeats", type=int, default=9, help="repeats per figure")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "codec.json"
    )
    args = parser.parse_args(argv)
    n, repeats = args.keys, args.repeats
    cases: list[tuple[str, Callable[[], object], int, float, str]] = []

    full = crdt.encode_map(flag_map(n))
    cases.append((f"decode_map, {n:,} bool flags", lambda: crdt.decode_map(full), 1, 1e3, "ms"))
    records = crdt.encode_map(record_map(n // 10))
    cases.append(
        (
            f"decode_map, {n // 10:,} dict records, tuple keys",
            lambda: crdt.decode_map(records),
            1,
            1e3,
            "ms",
        )
    )
    one = crdt.encode_map(flag_map(1))
    cases.append(("decode_map, a one-entry delta", lambda: crdt.decode_map(one), 2000, 1e6, "µs"))

    replica = flag_map(n)
    step = crdt.SyncStep(
        digest=replica.digest([(1, i) for i in range(16)]),
        delta=flag_map(32),
        complete=[(2, i) for i in range(8)],
    )
    small = crdt.encode_sync_step(step)
    cases.append(
        (
            "decode_sync_step, 16 summaries + 32 entries",
            lambda: crdt.decode_sync_step(small),
            500,
            1e6,
            "µs",
        )
    )
    big = crdt.encode_sync_step(crdt.SyncStep(delta=record_map(n // 10)))
    cases.append(
        (
            f"decode_sync_step, {n // 10:,} dict records",
            lambda: crdt.decode_sync_step(big),
            1,
            1e3,
            "ms",
        )
    )
    writer = crdt.LWWMap()
    value = {"author": "ann", "gates": ["boolean", 1], "ratio": 0.25}
    ts = Timestamp(BASE_MS, 0, "node-a")
    cases.append(
        ("LWWMap.set of a small dict", lambda: writer.set("k", value, ts), 2000, 1e6, "µs")
    )

    results: list[dict[str, Any]] = []
    rows = []
    for name, fn, calls, scale, unit in cases:
        samples = [s * scale for s in per_call(fn, calls, repeats)]
        median = statistics.median(samples)
        results.append(
            {"name": name, "unit": unit, "median": median, "min": min(samples), "max": max(samples)}
        )
        rows.append((name, f"{median:.3g} {unit}", f"{min(samples):.3g}-{max(samples):.3g}"))
    report("crdt codec decoders (median of repeats)", rows, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
