"""The flag check, beside what users would otherwise call, in one process.

Peers, each checking one boolean flag that is on:

- a plain function returning ``d.get(name)``: the floor for a Python call;
- ``FlagStore.enabled(name)``: chorus;
- the same on a store made with ``count_evaluations=True`` (as ``chorus serve``
  makes it, for ``chorus_flag_evaluations_total``);
- ``FlagClient.enabled(name)``: chorus as a web app calls it (``flags.connect``);
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
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flags
from flags import FlagStore, LocalMap
from transport import new_secret


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


def redis_check() -> tuple[Callable[[], object] | None, Callable[[], None], str]:
    """A redis-py GET against a redis-server we start on 127.0.0.1, if one is installed.

    Returns (check, stop, note).
    """
    binary = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        return None, lambda: None, "redis-py not installed (pip install 'chorus-replicated[bench]')"
    if binary is None:
        return None, lambda: None, "no redis-server (apt-get install redis-server): skipped"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.set("new-checkout", "1")
            break
        except redis.ConnectionError:
            time.sleep(0.05)

    def stop() -> None:
        server.terminate()
        server.wait(5)

    version = client.info()["redis_version"]
    return lambda: client.get("new-checkout"), stop, f"redis-server {version} on 127.0.0.1"


def unleash_rollout_check() -> Callable[[], object] | None:
    """Unleash's flexibleRollout (30%, sticky by userId): its percentage-of-actors."""
    try:
        from UnleashClient import UnleashClient
        from UnleashClient.cache import FileCache
    except ImportError:
        return None
    cache = FileCache("chorus-bench-rollout", directory=tempfile.mkdtemp())
    strategy = {
        "name": "flexibleRollout",
        "parameters": {"rollout": "30", "stickiness": "userId", "groupId": "ramp"},
    }
    cache.bootstrap_from_dict(
        {"version": 1, "features": [{"name": "ramp", "enabled": True, "strategies": [strategy]}]}
    )
    client = UnleashClient(
        url="http://127.0.0.1:1/api",
        app_name="chorus-bench-rollout",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    context = {"userId": "user-42"}
    return lambda: client.is_enabled("ramp", context)


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
    counting = FlagStore(LocalMap(), count_evaluations=True)
    counting.enable("new-checkout")
    plain = {"new-checkout": True}

    def plain_function(name: str) -> Any:
        return plain.get(name)

    peers: dict[str, tuple[Callable[[], object], int]] = {
        "plain function returning d.get(name)": (lambda: plain_function("new-checkout"), 1_000_000),
        "chorus FlagStore.enabled(name)": (lambda: store.enabled("new-checkout"), 1_000_000),
        "chorus FlagStore.enabled(name), counting evaluations": (
            lambda: counting.enabled("new-checkout"),
            1_000_000,
        ),
    }
    # What a web app calls: a FlagClient, its node running in a background thread.
    client = flags.connect([], secret=new_secret(), lock_dir=tempfile.mkdtemp())
    client.enable("new-checkout")
    peers["chorus FlagClient.enabled(name), node in a thread"] = (
        lambda: client.enabled("new-checkout"),
        1_000_000,
    )
    of = openfeature_check()
    if of is not None:
        peers["OpenFeature InMemoryProvider (SDK client)"] = (of, 20_000)
    un = unleash_check()
    if un is not None:
        peers["UnleashClient.is_enabled (offline)"] = (un, 20_000)
    redis_get, stop_redis, redis_note = redis_check()
    if redis_get is not None:
        peers["redis-py GET on 127.0.0.1"] = (redis_get, 20_000)
    peers["chorus enabled(name, actor), percentage gate"] = (
        lambda: store.enabled("ramp", "user-42"),
        300_000,
    )
    rollout = unleash_rollout_check()
    if rollout is not None:
        peers["Unleash flexibleRollout by userId (offline)"] = (rollout, 20_000)

    results: dict[str, dict[str, Any]] = {}
    try:
        for name, (check, calls) in peers.items():
            samples = per_call_ns(check, calls, args.repeats)
            results[name] = {
                "median_ns": statistics.median(samples),
                "min_ns": min(samples),
                "max_ns": max(samples),
            }
    finally:
        stop_redis()
        client.close(drain_s=0)

    # 10 million boolean checks in a row, the way a hot loop would make them.
    enabled = store.enabled
    ten_million = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(10_000_000):
            enabled("new-checkout")
        ten_million.append(time.perf_counter() - start)

    # Boolean checks compare with chorus' boolean check; percentage ones with its
    # percentage check.
    boolean = results["chorus FlagStore.enabled(name)"]["median_ns"]
    percentage = results["chorus enabled(name, actor), percentage gate"]["median_ns"]
    print("chorus flag checks, medians of", args.repeats, "repeats (ns per check)\n")
    print("| check | median | min-max | vs chorus |")
    print("|---|---:|---:|---|")
    for name, r in results.items():
        base = percentage if ("percentage" in name or "Rollout" in name) else boolean
        ratio = r["median_ns"] / base
        r["vs_chorus"] = ratio
        vs = f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x slower"
        print(f"| {name} | {r['median_ns']:,.0f} | {r['min_ns']:,.0f}-{r['max_ns']:,.0f} | {vs} |")
    print(
        f"\n10,000,000 boolean checks: {statistics.median(ten_million):.2f} s median "
        f"(min {min(ten_million):.2f} s); Erlang ETS: about 0.15 s"
    )
    print(f"redis: {redis_note}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"per_check": results, "ten_million_s": ten_million, "redis": redis_note}
    args.json.write_text(json.dumps(document, indent=2))
    print(f"JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
