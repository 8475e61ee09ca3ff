"""Benchmarks of the sans-IO core, beside the alternatives users would pick.

Prints a Markdown table of medians (with min-max over the repeats) and writes the same
figures as JSON to benchmarks/results/core.json. Nothing here is asserted: targets are
listed beside the figures for a reader to judge.

Run: ``./scripts/bench`` (installs the ``bench`` extra, pycrdt, into .venv first).
Options: ``--keys N`` (default 100,000), ``--repeats R`` (default 9), ``--json PATH``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crdt
from hlc import HLC, Timestamp

BASE_MS = 1_700_000_000_000


def measure(
    fn: Callable[[], object], repeats: int, setup: Callable[[], Any] | None = None
) -> list[float]:
    """Run ``fn`` ``repeats`` times (after ``setup``, untimed); return seconds per run."""
    times = []
    for _ in range(repeats):
        state = setup() if setup else None
        gc.collect()
        start = time.perf_counter()
        fn() if state is None else fn(state)  # type: ignore[call-arg]
        times.append(time.perf_counter() - start)
    return times


def per_call_ns(fn: Callable[[], object], calls: int, repeats: int) -> list[float]:
    """Nanoseconds per call of ``fn``, timed in batches of ``calls``."""

    def batch() -> None:
        for _ in range(calls):
            fn()

    return [t / calls * 1e9 for t in measure(batch, repeats)]


def build_map(n: int, node: str = "node-a") -> crdt.LWWMap:
    m = crdt.LWWMap()
    for i in range(n):
        m.set(f"flag:{i}", i % 7 == 0, Timestamp(BASE_MS + i, 0, node))
    return m


def row(
    results: list[dict[str, Any]], name: str, samples: list[float], unit: str, **extra: Any
) -> None:
    results.append(
        {
            "name": name,
            "unit": unit,
            "median": statistics.median(samples),
            "min": min(samples),
            "max": max(samples),
            **extra,
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000, help="map size (default 100,000)")
    parser.add_argument("--repeats", type=int, default=9, help="repeats per figure (default 9)")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "core.json"
    )
    args = parser.parse_args(argv)
    n, repeats = args.keys, args.repeats
    results: list[dict[str, Any]] = []

    # -- HLC.now --------------------------------------------------------------------
    clock = HLC("node-a")
    row(results, "HLC.now()", per_call_ns(clock.now, 100_000, repeats), "ns/call", target="< 1000")

    # -- reads ----------------------------------------------------------------------
    full = build_map(n)
    plain = dict(full.items())
    probe = [f"flag:{i}" for i in range(0, n, max(1, n // 1000))]

    def lookups(table: Any) -> Callable[[], None]:
        # `table.get(key)` at the call site, as application code writes it.
        def run() -> None:
            for _ in range(200):
                for key in probe:
                    table.get(key)

        return run

    # Interleaved, one batch of each per repeat, so both see the same machine noise;
    # the ratio is the median of the per-repeat ratios.
    calls = 200 * len(probe)
    dict_ns, map_ns = [], []
    for _ in range(repeats):
        dict_ns += [t / calls * 1e9 for t in measure(lookups(plain), 1)]
        map_ns += [t / calls * 1e9 for t in measure(lookups(full), 1)]
    ratios = [m / d for m, d in zip(map_ns, dict_ns, strict=True)]
    row(results, f"dict.get on {n:,} keys", dict_ns, "ns/call")
    row(
        results,
        f"LWWMap.get on {n:,} keys",
        map_ns,
        "ns/call",
        ratio=f"{statistics.median(ratios):.2f}x dict",
        target="within 2x dict",
    )

    # -- writes ---------------------------------------------------------------------
    def write_all() -> None:
        m, clock = crdt.LWWMap(), HLC("node-a")
        for i in range(n):
            m.set(f"flag:{i}", i % 7 == 0, clock.now())

    row(
        results,
        f"set {n:,} keys (HLC + LWWMap.set)",
        [t * 1e3 for t in measure(write_all, 3)],
        "ms",
    )

    # -- merge ----------------------------------------------------------------------
    source = build_map(n)
    merge_empty = measure(lambda m: m.merge(source), repeats, setup=crdt.LWWMap)
    row(
        results,
        f"merge {n:,} entries into an empty map",
        [t / n * 1e6 for t in merge_empty],
        "µs/entry",
        target="< 1.5",
    )

    def holding_one_other_key() -> crdt.LWWMap:
        m = crdt.LWWMap()
        m.set("unrelated", 1, Timestamp(BASE_MS, 0, "node-z"))
        return m

    merge_other = measure(lambda m: m.merge(source), repeats, setup=holding_one_other_key)
    row(
        results,
        f"merge {n:,} entries into a map holding other keys",
        [t / n * 1e6 for t in merge_other],
        "µs/entry",
        target="< 1.5",
    )
    merge_equal = measure(lambda m: m.merge(source), repeats, setup=lambda: build_map(n))
    row(
        results,
        f"merge {n:,} entries into an equal map",
        [t / n * 1e6 for t in merge_equal],
        "µs/entry",
        target="< 1.5",
    )

    # -- full-state encode and apply -------------------------------------------------
    encoded = crdt.encode_map(source)
    encode = measure(lambda: crdt.encode_map(source), repeats)
    row(
        results,
        f"encode full state, {n:,} entries",
        [t * 1e3 for t in encode],
        "ms",
        bytes=len(encoded),
    )

    def apply() -> None:
        crdt.LWWMap().merge(crdt.decode_map(encoded))

    apply_t = measure(apply, repeats)
    row(results, f"decode + apply full state, {n:,} entries", [t * 1e3 for t in apply_t], "ms")

    # -- anti-entropy bytes ---------------------------------------------------------
    base = build_map(n)
    base.digest()  # build the Merkle tree once, as a running node would have it
    for k in (1, 10):
        other = base.copy()
        for i in range(k):
            other.set(f"flag:{i * (n // k)}", "changed", Timestamp(BASE_MS + n + i, 0, "node-b"))
        mine = base.copy()
        messages, total = crdt.sync_exchange(mine, other)
        assert mine == other, "sync did not converge"
        row(
            results,
            f"sync, {n:,} keys, {k} differ",
            [total],
            "bytes",
            messages=messages,
            ratio=f"{total / len(encoded) * 100:.3f}% of full state",
            target="< 2 KiB" if k == 1 else "< 1% of full state",
        )

    # -- pycrdt (Y-CRDT), the same workload -----------------------------------------
    try:
        import pycrdt
    except ImportError:
        print(
            "pycrdt is not installed: skipping its rows (pip install 'chorus-replicated[bench]')",
            file=sys.stderr,
        )
    else:
        doc = pycrdt.Doc()
        ymap = doc.get("flags", type=pycrdt.Map)
        with doc.transaction():
            for i in range(n):
                ymap[f"flag:{i}"] = i % 7 == 0
        update = doc.get_update()

        def y_write_all() -> None:
            d = pycrdt.Doc()
            ym = d.get("flags", type=pycrdt.Map)
            with d.transaction():
                for i in range(n):
                    ym[f"flag:{i}"] = i % 7 == 0

        y_set = [t * 1e3 for t in measure(y_write_all, 3)]
        row(results, f"pycrdt: set {n:,} keys (one transaction)", y_set, "ms")
        y_encode = measure(doc.get_update, repeats)
        row(
            results,
            f"pycrdt: encode full state, {n:,} entries",
            [t * 1e3 for t in y_encode],
            "ms",
            bytes=len(update),
        )

        def y_apply() -> None:
            fresh = pycrdt.Doc()
            fresh.get("flags", type=pycrdt.Map)
            fresh.apply_update(update)

        y_apply_t = measure(y_apply, repeats)
        row(results, f"pycrdt: apply full state, {n:,} entries", [t * 1e3 for t in y_apply_t], "ms")
        replica = pycrdt.Doc()
        replica.get("flags", type=pycrdt.Map)
        replica.apply_update(update)
        state_vector = replica.get_state()
        ymap["flag:0"] = "changed"
        y_diff = doc.get_update(state_vector)
        total = len(state_vector) + len(y_diff)
        row(results, f"pycrdt: sync, {n:,} keys, 1 differs", [total], "bytes")

    # -- report ----------------------------------------------------------------------
    by_name = {r["name"]: r for r in results}
    ours_enc = by_name.get(f"encode full state, {n:,} entries")
    ours_apply = by_name.get(f"decode + apply full state, {n:,} entries")
    y_enc = by_name.get(f"pycrdt: encode full state, {n:,} entries")
    y_app = by_name.get(f"pycrdt: apply full state, {n:,} entries")
    if ours_enc and y_enc:
        ours_enc["ratio"] = f"{ours_enc['median'] / y_enc['median']:.2f}x pycrdt"
        ours_enc["target"] = "within 1.5x pycrdt"
    if ours_apply and y_app:
        ours_apply["ratio"] = f"{ours_apply['median'] / y_app['median']:.2f}x pycrdt"
        ours_apply["target"] = "within 1.5x pycrdt"

    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"chorus core benchmarks: {n:,} keys, {repeats} repeats, medians (min-max); {machine}\n")
    print("| benchmark | median | min-max | unit | vs | target |")
    print("|---|---:|---:|---|---|---|")
    for r in results:
        digits = ",.0f" if r["unit"] == "bytes" or r["median"] >= 100 else ",.3g"
        median, low, high = (format(r[k], digits) for k in ("median", "min", "max"))
        cells = [
            r["name"],
            median,
            f"{low}-{high}",
            r["unit"],
            r.get("ratio", ""),
            r.get("target", ""),
        ]
        print("| " + " | ".join(cells) + " |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"machine": machine, "keys": n, "repeats": repeats, "results": results}, indent=2
        )
    )
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
