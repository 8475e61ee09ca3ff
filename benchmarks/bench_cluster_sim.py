"""Simulated-cluster benchmarks: the runtime's costs in messages, bytes and rounds.

Everything runs on a MemoryNetwork under trio's MockClock, so time is simulated
(latency 1-5 ms per hop by default) and the figures are deterministic for a seed.
Prints a Markdown table and writes benchmarks/results/cluster_sim.json.

Run: ``./scripts/bench-cluster`` (or ``python benchmarks/bench_cluster_sim.py``).
Options: ``--keys N`` (default 100,000), ``--writes W`` (default 200), ``--seed S``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio
import trio.testing
from _report import report

import crdt
from transport import MemoryNetwork
from transport.simulation import Simulation


async def write_latency(writes: int, seed: int) -> dict[str, Any]:
    """Write on one node of five; time until every node shows it; count the traffic."""
    network = MemoryNetwork(seed)
    async with Simulation(network) as sim:
        names = ["a", "b", "c", "d", "e"]
        await sim.start(*names)
        await sim.run_for(3)
        latencies = []
        sent_before, bytes_before = (
            network.stats.sent_by_kind.copy(),
            network.stats.bytes_by_kind.copy(),
        )
        for i in range(writes):
            writer = sim.node(names[i % 5])
            start = trio.current_time()
            writer.map("m").set(f"key:{i}", i)
            while not all(sim.node(n).map("m").get(f"key:{i}") == i for n in names):
                await sim.run_for(0.0005)
            latencies.append((trio.current_time() - start) * 1000)
            await sim.run_for(0.05)
        sent = network.stats.sent_by_kind.get("map", 0) - sent_before.get("map", 0)
        sent_bytes = network.stats.bytes_by_kind.get("map", 0) - bytes_before.get("map", 0)
        latencies.sort()
        return {
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "delta_messages_per_write": sent / writes,
            "delta_bytes_per_write": sent_bytes / writes,
        }


async def partition_repair(keys: int, diverged: int, seed: int) -> dict[str, Any]:
    """Two nodes share `keys` keys; a partition lets `diverged` of them change on one."""
    network = MemoryNetwork(seed)
    async with Simulation(network, sync_interval_s=1.0) as sim:
        (a,) = await sim.start("a")
        for i in range(keys):
            a.map("m").set(f"key:{i}", i % 7 == 0)
        await sim.start("b")
        assert await sim.node("b").wait_synced(120)
        await sim.run_for(3)
        network.partition({"a"}, {"b"})
        for i in range(diverged):
            a.map("m").set(f"key:{i * (keys // diverged)}", "changed")
        await sim.run_for(5)  # both sides notice the partition
        stats = network.stats
        sync_before, bytes_before = (
            stats.sent_by_kind.get("sync", 0),
            stats.bytes_by_kind.get("sync", 0),
        )
        network.heal()
        start = trio.current_time()
        took = await sim.settle(timeout=60, step=0.01)
        assert took is not None
        full_state = len(crdt.encode_map(a.state()))
        return {
            "sync_messages": stats.sent_by_kind.get("sync", 0) - sync_before,
            "sync_bytes": stats.bytes_by_kind.get("sync", 0) - bytes_before,
            "converged_after_ms": (trio.current_time() - start) * 1000,
            "full_state_resync_bytes": full_state,
        }


async def catch_up(keys: int, seed: int) -> dict[str, Any]:
    """A node joins a cluster holding `keys` keys: messages, bytes, simulated and CPU time."""
    network = MemoryNetwork(seed)
    async with Simulation(network) as sim:
        (a,) = await sim.start("a")
        for i in range(keys):
            a.map("m").set(f"key:{i}", i % 7 == 0)
        await sim.run_for(1)
        a.state().digest()  # a running node has its Merkle tree built already
        before_msgs = network.stats.sent_by_kind.get("sync", 0)
        before_bytes = network.stats.bytes_by_kind.get("sync", 0)
        cpu = time.process_time()
        start = trio.current_time()
        (b,) = await sim.start("b")
        assert await b.wait_synced(120)
        return {
            "sync_messages": network.stats.sent_by_kind.get("sync", 0) - before_msgs,
            "sync_bytes": network.stats.bytes_by_kind.get("sync", 0) - before_bytes,
            "simulated_ms": (trio.current_time() - start) * 1000,
            "cpu_s": time.process_time() - cpu,
        }


async def memory_per_key(keys: int, seed: int) -> dict[str, Any]:
    """Bytes of Python heap per key of a replicated map on one node (tree built)."""
    network = MemoryNetwork(seed)
    async with Simulation(network) as sim:
        (a,) = await sim.start("a")
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        flags = a.map("m")
        for i in range(keys):
            flags.set(f"key:{i}", i % 7 == 0)
        await sim.run_for(1)
        a._state.digest()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return {"bytes_per_key": (after - before) / keys}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "cluster_sim.json"
    )
    args = parser.parse_args(argv)

    def run(fn: Any, *a: Any) -> dict[str, Any]:
        result: dict[str, Any] = trio.run(
            fn, *a, clock=trio.testing.MockClock(autojump_threshold=0)
        )
        return result

    results = {
        "write_latency_5_nodes": run(write_latency, args.writes, args.seed),
        "partition_repair_10_of_n": run(partition_repair, args.keys, 10, args.seed),
        "catch_up": run(catch_up, args.keys, args.seed),
        "memory": run(memory_per_key, args.keys, args.seed),
    }
    lat, rep, cu, mem = (results[k] for k in results)
    n = f"{args.keys:,}"
    rows = [
        (
            "write visible on all 5 nodes, p50",
            f"{lat['p50_ms']:.1f} ms simulated",
            "latency 1-5 ms per hop",
        ),
        ("write visible on all 5 nodes, p99", f"{lat['p99_ms']:.1f} ms simulated", ""),
        ("delta messages per write", f"{lat['delta_messages_per_write']:.1f}", "one per peer"),
        ("delta bytes per write", f"{lat['delta_bytes_per_write']:.0f} B", "all peers together"),
        (
            f"repair, 10 of {n} keys diverged",
            f"{rep['sync_bytes']:,} B in {rep['sync_messages']} messages",
            f"full-state resync: {rep['full_state_resync_bytes']:,} B",
        ),
        (
            "repair, converged after heal",
            f"{rep['converged_after_ms']:.0f} ms simulated",
            "heartbeat + sync interval",
        ),
        (
            f"catch-up of a joiner, {n} keys",
            f"{cu['sync_bytes']:,} B in {cu['sync_messages']} messages",
            f"{cu['simulated_ms']:.0f} ms simulated, {cu['cpu_s']:.2f} s CPU",
        ),
        (
            f"memory per key, {n} keys",
            f"{mem['bytes_per_key']:.0f} B",
            "state, live view, map view, Merkle tree",
        ),
    ]
    report(f"chorus simulated-cluster benchmarks (seed {args.seed})", rows, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
