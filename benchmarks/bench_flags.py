"""The flag check, beside what users would otherwise call, in one process.

Peers, each checking one boolean flag that is on:

- a plain function returning ``d.get(name)``: the floor for a Python call;
- ``FlagStore.enabled(name)``: chorus;
- OpenFeature's ``InMemoryProvider`` through the SDK client (``get_boolean_value``);
- Unleash's ``UnleashClient.is_enabled``, bootstrapped offline from a dict.

Also ``FlagStore.enabled(name, actor)`` with a percentage-of-actors gate, and 10
million boolean checks in a row (Erlang's ETS does 10 million local reads in about
150 ms). Medians of repeats, min-max, and ratios against chorus; JSON in
benchmarks/results/flags.json. Run: ``./scripts/bench-flags`` (installs the peers).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flags import FlagStore, LocalMap


def per_call_ns(check: Callable[[], object], calls: int, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter_ns()
        for _ in range(calls):
            check()
        samples.append((time.perf_counter_ns() - start) / calls)
    return samples


def openfeature_check() -> Callable[[], object] | None:
    try:
        from openfeature import api
        from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
    except ImportError:
        return None
    flags = {"new-checkout": InMemoryFlag("on", {"on": True, "off": False})}
    api.set_provider(InMemoryProvider(flags))
    client = api.get_client()
    return lambda: client.get_boolean_value("new-checkout", False)


def unleash_check() -> Callable[[], object] | None:
    try:
        from UnleashClient import UnleashClient
        from UnleashClient.cache import FileCache
    except ImportError:
        return None
    logging.getLogger("UnleashClient").setLevel(logging.ERROR)
    cache = FileCache("chorus-bench", directory=tempfile.mkdtemp())
    cache.bootstrap_from_dict(
        {
            "version": 1,
            "features": [
                {
                    "name": "new-checkout",
                    "enabled": True,
                    "strategies": [{"name": "default", "parameters": {}}],
                }
            ],
        }
    )
    client = UnleashClient(
        url="http://127.0.0.1:1/api",  # never contacted: fetch_toggles=False
        app_name="chorus-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    if not client.is_enabled("new-checkout"):
        return None
    return lambda: client.is_enabled("new-checkout")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "flags.json"
    )
    args = parser.parse_args(argv)

    store = FlagStore(LocalMap())
    store.enable("new-checkout")
    store.enable_percentage_of_actors("ramp", 0.3)
    plain = {"new-checkout": True}

    def plain_function(name: str) -> Any:
        return plain.get(name)

    peers: dict[str, tuple[Callable[[], object], int]] = {
        "plain function returning d.get(name)": (lambda: plain_function("new-checkout"), 1_000_000),
        "chorus FlagStore.enabled(name)": (lambda: store.enabled("new-checkout"), 1_000_000),
    }
    of = openfeature_check()
    if of is not None:
        peers["OpenFeature InMemoryProvider (SDK client)"] = (of, 20_000)
    un = unleash_check()
    if un is not None:
        peers["UnleashClient.is_enabled (offline)"] = (un, 20_000)
    peers["chorus enabled(name, actor), percentage gate"] = (
        lambda: store.enabled("ramp", "user-42"),
        300_000,
    )

    results: dict[str, dict[str, Any]] = {}
    for name, (check, calls) in peers.items():
        samples = per_call_ns(check, calls, args.repeats)
        results[name] = {
            "median_ns": statistics.median(samples),
            "min_ns": min(samples),
            "max_ns": max(samples),
        }

    # 10 million boolean checks in a row, the way a hot loop would make them.
    enabled = store.enabled
    ten_million = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(10_000_000):
            enabled("new-checkout")
        ten_million.append(time.perf_counter() - start)

    chorus = results["chorus FlagStore.enabled(name)"]["median_ns"]
    print("chorus flag checks, medians of", args.repeats, "repeats (ns per check)\n")
    print("| check | median | min-max | vs chorus |")
    print("|---|---:|---:|---|")
    for name, r in results.items():
        ratio = r["median_ns"] / chorus
        vs = (
            "1.00x"
            if name.startswith("chorus FlagStore")
            else (f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x slower")
        )
        print(f"| {name} | {r['median_ns']:,.0f} | {r['min_ns']:,.0f}-{r['max_ns']:,.0f} | {vs} |")
    print(
        f"\n10,000,000 boolean checks: {statistics.median(ten_million):.2f} s median "
        f"(min {min(ten_million):.2f} s) — Erlang ETS: about 0.15 s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"per_check": results, "ten_million_s": ten_million}, indent=2))
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
