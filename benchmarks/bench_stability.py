"""Tombstone collection by causal stability: what it holds, how long it waits, what it sends.

Everything runs on a MemoryNetwork under trio's MockClock, so time is simulated
(latency 1-5 ms per hop by default) and the figures are deterministic for a seed.
Default Node options throughout (heartbeats every 0.5 s, collection every 1 s).

1. Steady state: five nodes write and then delete 100 keys a second (each key set on
   a random node, deleted 0.5 s later on another random node); every second, each
   node's tombstone count. Memory per tombstone is measured apart (tracemalloc of an
   LWWMap holding N tombstones, Merkle tree built, against the empty map), as is
   encoded size per tombstone (``crdt.encode_map`` of that map, divided by N).
2. Delete-to-collection: one key deleted at a random moment on a random node; the
   simulated time until no node's state holds its register (``state().register`` is
   None everywhere). Healthy, with one clock skewed +-400 ms (max_offset_ms is 500),
   with two clocks 800 ms apart (+400 and -400), and with one node partitioned away
   for 10 s around the delete. Percentiles by nearest rank: p99 of 50 is the largest.
3. Bookkeeping per heartbeat, 5 and 50 nodes: heartbeat bytes on the wire over a
   quiet period, one heartbeat as ``Node._heartbeat`` builds it, the same heartbeat
   with empty coverage and report vectors (what it would be without the
   bookkeeping), and one ``members`` message.

Prints a Markdown table and writes benchmarks/results/stability.json.

Run: ``python benchmarks/bench_stability.py`` (``--json PATH``, ``--seed S``,
``--deletes N``).
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio
import trio.testing
from _report import report  # type: ignore[import-not-found,unused-ignore]  # sibling module

import crdt
from hlc import HLC
from transport import MemoryNetwork
from transport._wire import decode_heartbeat, encode_heartbeat, encode_members
from transport.simulation import Simulation

FIVE = ["a", "b", "c", "d", "e"]
POLL_S = 0.01  # how often the delete-to-collection runs look (the figures' resolution)
GIVE_UP_S = 120.0  # a delete not collected by then is reported as not collected


def nearest_rank(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank: of 50 values, p99 is the largest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# -- 1. steady state ------------------------------------------------------------------


async def steady_state(rate: int, seconds: int, warm_up: int, seed: int) -> dict[str, Any]:
    """Five nodes set and then delete ``rate`` keys a second; sample tombstones each second."""
    rng = random.Random(seed)
    async with Simulation(seed=seed) as sim:
        await sim.start(*FIVE)
        await sim.run_for(3)
        tick = 1.0 / rate
        due: deque[tuple[float, str]] = deque()  # (when, key) to delete
        samples: list[int] = []  # one per node per second, after warm-up
        per_second_max: list[int] = []
        floor_lag_ms: list[int] = []  # wall clock minus the node's floor, per sample
        encoded_per_entry: list[float] = []
        collected_before = 0
        written = 0
        for second in range(warm_up + seconds):
            if second == warm_up:
                collected_before = sum(sim.node(n).stats.tombstones_collected for n in FIVE)
            for _ in range(rate):
                now = trio.current_time()
                sim.node(rng.choice(FIVE)).map("m").set(f"key:{written}", written)
                due.append((now + 0.5, f"key:{written}"))
                written += 1
                while due and due[0][0] <= now:
                    sim.node(rng.choice(FIVE)).map("m").delete(due.popleft()[1])
                await sim.run_for(tick)
            if second >= warm_up:
                counts = [sim.node(n)._state.tombstone_count for n in FIVE]
                samples += counts
                per_second_max.append(max(counts))
                for n in FIVE:
                    node = sim.node(n)
                    floor_lag_ms.append(node.wall_ms() - node.floor.wall_ms)
                state = sim.node(FIVE[second % 5]).state()
                if len(state._regs):
                    encoded_per_entry.append(len(crdt.encode_map(state)) / len(state._regs))
        collected = sum(sim.node(n).stats.tombstones_collected for n in FIVE) - collected_before
        # Stop writing: every tombstone left should be collected within a few seconds.
        while due:
            sim.node(rng.choice(FIVE)).map("m").delete(due.popleft()[1])
        drained_after: float | None = None
        start = trio.current_time()
        while trio.current_time() - start < 60:
            await sim.run_for(0.1)
            if all(sim.node(n)._state.tombstone_count == 0 for n in FIVE):
                drained_after = trio.current_time() - start
                break
        return {
            "nodes": 5,
            "deletes_per_s": rate,
            "seconds_sampled": seconds,
            "warm_up_s": warm_up,
            "tombstones_per_node_median": statistics.median(samples),
            "tombstones_per_node_max": max(samples),
            "tombstones_per_node_p99": nearest_rank([float(s) for s in samples], 0.99),
            "per_second_max_median": statistics.median(per_second_max),
            "floor_lag_ms_median": statistics.median(floor_lag_ms),
            "floor_lag_ms_max": max(floor_lag_ms),
            "encoded_state_bytes_per_entry_median": statistics.median(encoded_per_entry),
            "tombstones_collected_per_node_per_s": collected / 5 / seconds,
            "drained_after_writes_stop_s": drained_after,
        }


def tombstone_memory(count: int) -> dict[str, Any]:
    """Heap and encoded bytes per tombstone, for an LWWMap holding ``count`` of them.

    The tombstones arrive as a replica receives them: one delta per delete, encoded and
    decoded, keyed ``("m", "key:N")`` as the runtime keys them, then the Merkle tree
    that a running node keeps is built. tracemalloc measures the map against the empty
    map; the encoded figure is ``crdt.encode_map`` of the whole map, divided by N.
    """
    writers = [HLC(f"{name}/0a1b2c3d") for name in FIVE]
    wire = []
    for i in range(count):
        delta = crdt.LWWMap().delete(("m", f"key:{i}"), writers[i % 5].now())
        wire.append(crdt.encode_map(delta))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = crdt.LWWMap()
    held.digest()
    empty = tracemalloc.get_traced_memory()[0]
    for data in wire:
        held.merge(crdt.decode_map(data))
    no_tree = tracemalloc.get_traced_memory()[0]
    held.digest()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held.tombstone_count == count
    return {
        "tombstones": count,
        "empty_map_bytes": empty - before,
        "heap_bytes_per_tombstone": (after - empty) / count,
        "heap_bytes_per_tombstone_without_tree": (no_tree - empty) / count,
        "encoded_bytes_per_tombstone": len(crdt.encode_map(held)) / count,
    }


# -- 2. delete-to-collection ------------------------------------------------------------


def _gone_everywhere(sim: Simulation, names: list[str], key: Any) -> bool:
    return all(sim.node(n).state().register(key) is None for n in names)


async def _time_to_collection(sim: Simulation, names: list[str], key: Any) -> float | None:
    start = trio.current_time()
    while trio.current_time() - start < GIVE_UP_S:
        if _gone_everywhere(sim, names, key):
            return trio.current_time() - start
        await sim.run_for(POLL_S)
    return None


async def collection_delay(
    deletes: int,
    seed: int,
    *,
    names: list[str] | None = None,
    skew_ms: dict[str, int] | None = None,
    partition_s: float = 0.0,
) -> dict[str, Any]:
    """Delete one key at a time at a random moment on a random node; time its collection.

    ``partition_s``: cut the last node away from the others for that long, starting
    just before each delete (the delete happens on the majority side, 0-1 s after the
    cut); the time is still measured from the delete until every node is rid of it.
    """
    names = names or FIVE
    rng = random.Random(seed)
    started = time.monotonic()
    async with Simulation(seed=seed, skew_ms=skew_ms or {}) as sim:
        await sim.start(*names, ready_timeout=120)
        await sim.run_for(3)
        majority, cut = (names[:-1], names[-1]) if partition_s else (names, None)
        times: list[float] = []
        after_heal: list[float] = []
        missed = early = 0
        for i in range(deletes):
            key = f"del:{i}"
            sim.node(rng.choice(majority)).map("m").set(key, i)
            await sim.run_for(0.5)  # everyone holds the value
            heal_at = None
            if cut is not None:
                sim.network.partition(set(majority), {cut})
                heal_at = trio.current_time() + partition_s
            await sim.run_for(rng.uniform(0.0, 1.0))  # a random phase of the timers
            sim.node(rng.choice(majority)).map("m").delete(key)
            start = trio.current_time()
            if heal_at is not None:
                while trio.current_time() < heal_at:
                    await sim.run_for(POLL_S)
                    if _gone_everywhere(sim, names, ("m", key)):
                        early += 1  # a bug: the cut node never saw the delete
                        break
                sim.network.heal()
            rest = await _time_to_collection(sim, names, ("m", key))
            if rest is None:
                missed += 1
            else:
                times.append(trio.current_time() - start)
                if heal_at is not None:
                    after_heal.append(rest)
            await sim.run_for(rng.uniform(0.0, 1.0))
    ms = [t * 1000 for t in times]
    heal_ms = [t * 1000 for t in after_heal]
    return {
        "nodes": len(names),
        "skew_ms": skew_ms or {},
        "partition_s": partition_s,
        "deletes": deletes,
        "not_collected_within_s": GIVE_UP_S,
        "not_collected": missed,
        "collected_while_a_node_was_cut_off": early,
        "after_heal_median_ms": statistics.median(heal_ms) if heal_ms else None,
        "after_heal_p99_ms": nearest_rank(heal_ms, 0.99) if heal_ms else None,
        "median_ms": statistics.median(ms) if ms else None,
        "p99_ms": nearest_rank(ms, 0.99) if ms else None,
        "min_ms": min(ms) if ms else None,
        "max_ms": max(ms) if ms else None,
        "samples_ms": [round(t, 1) for t in ms],
        "real_s": time.monotonic() - started,
    }


# -- 3. bookkeeping on the wire -----------------------------------------------------------


async def heartbeat_cost(nodes: int, quiet_s: float, seed: int) -> dict[str, Any]:
    """Heartbeat and members message sizes in a quiet cluster of ``nodes`` nodes."""
    started = time.monotonic()
    network = MemoryNetwork(seed)
    names = FIVE if nodes == 5 else [f"n{i:02d}" for i in range(nodes)]
    async with Simulation(network) as sim:
        await sim.start(*names, ready_timeout=120)
        await sim.run_for(3)
        stats = network.stats
        sent, size = stats.sent_by_kind.get("heartbeat", 0), stats.bytes_by_kind.get("heartbeat", 0)
        members_sent = stats.sent_by_kind.get("members", 0)
        await sim.run_for(quiet_s)
        sent = stats.sent_by_kind.get("heartbeat", 0) - sent
        size = stats.bytes_by_kind.get("heartbeat", 0) - size
        members_sent = stats.sent_by_kind.get("members", 0) - members_sent
        node = sim.node(names[0])
        one = node._heartbeat()
        parsed = decode_heartbeat(one)
        bare = encode_heartbeat(attrs.evolve(parsed, coverage=(), reports=()))
        assert len(parsed.coverage) == nodes, parsed  # the vectors this bookkeeping adds
        clock = node.clock.now()
        members = encode_members((clock.wall_ms, clock.logical), node.membership)
        floors = {sim.node(n).floor.wall_ms for n in names}
    per_heartbeat = size / sent
    interval_s = 0.5  # Node's default heartbeat_interval_s
    bookkeeping = len(one) - len(bare)
    return {
        "nodes": nodes,
        "quiet_s": quiet_s,
        "heartbeats_sent": sent,
        "heartbeat_bytes_on_wire_mean": per_heartbeat,
        "heartbeat_bytes_built": len(one),
        "heartbeat_bytes_without_vectors": len(bare),
        "bookkeeping_bytes_per_heartbeat": bookkeeping,
        "bookkeeping_bytes_per_member": bookkeeping / nodes,
        "bookkeeping_bytes_per_s_per_node": bookkeeping * (nodes - 1) / interval_s,
        "heartbeat_bytes_per_s_cluster": per_heartbeat * sent / quiet_s,
        "members_message_bytes": len(members),
        "members_messages_in_quiet_period": members_sent,
        "every_floor_raised": all(f > 0 for f in floors),
        "real_s": time.monotonic() - started,
    }


# -- the report ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deletes", type=int, default=50, help="per delete-to-collection case")
    parser.add_argument("--seconds", type=int, default=60, help="steady state, sampled")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "stability.json"
    )
    args = parser.parse_args(argv)

    def run(fn: Callable[..., Any], *a: Any, **kw: Any) -> dict[str, Any]:
        began = time.monotonic()
        result: dict[str, Any] = trio.run(
            lambda: fn(*a, **kw), clock=trio.testing.MockClock(autojump_threshold=0)
        )
        result.setdefault("real_s", time.monotonic() - began)
        return result

    seed, deletes = args.seed, args.deletes
    results: dict[str, Any] = {
        "steady_state": run(steady_state, 100, args.seconds, 5, seed),
        "memory": tombstone_memory(10_000),
        "collection_healthy": run(collection_delay, deletes, seed),
        "collection_skew_plus_400": run(collection_delay, deletes, seed, skew_ms={"c": 400}),
        "collection_skew_minus_400": run(collection_delay, deletes, seed, skew_ms={"c": -400}),
        "collection_skew_two_800_apart": run(
            collection_delay, deletes, seed, skew_ms={"c": 400, "d": -400}
        ),
        "collection_partition_10s": run(
            collection_delay, max(1, deletes // 2), seed, partition_s=10.0
        ),
        "heartbeat_5": run(heartbeat_cost, 5, 10.0, seed),
        "heartbeat_50": run(heartbeat_cost, 50, 5.0, seed),
    }
    healthy = results["collection_healthy"]["samples_ms"]
    for name in ("skew_plus_400", "skew_minus_400", "skew_two_800_apart"):
        case = results[f"collection_{name}"]
        case["same_as_healthy_sample_for_sample"] = case["samples_ms"] == healthy
    st, mem = results["steady_state"], results["memory"]
    hb5, hb50 = results["heartbeat_5"], results["heartbeat_50"]

    def ms(x: float | None) -> str:
        return "never" if x is None else f"{x:,.0f} ms"

    drained = st["drained_after_writes_stop_s"]
    rows = [
        (
            "tombstones held per node, 5 nodes, 100 deletes/s",
            f"median {st['tombstones_per_node_median']:.0f}, max {st['tombstones_per_node_max']}",
            f"sampled each second for {st['seconds_sampled']} s, after {st['warm_up_s']} s",
        ),
        (
            "stable point behind the wall clock",
            f"median {st['floor_lag_ms_median']:,.0f} ms, max {st['floor_lag_ms_max']:,} ms",
            "wall clock minus each node's floor, same samples",
        ),
        (
            "left after writes stop",
            "**some never collected**" if drained is None else f"none after {drained:.1f} s",
            "simulated; writes stop, the last deletes go out, nodes keep running (60 s at most)",
        ),
        (
            "heap per tombstone",
            f"{mem['heap_bytes_per_tombstone']:.0f} B",
            f"tracemalloc, LWWMap of {mem['tombstones']:,} tombstones vs empty, Merkle tree "
            f"built ({mem['heap_bytes_per_tombstone_without_tree']:.0f} B without it)",
        ),
        (
            "encoded bytes per tombstone",
            f"{mem['encoded_bytes_per_tombstone']:.1f} B",
            "crdt.encode_map of that map / N",
        ),
    ]
    for name, label in (
        ("collection_healthy", "delete to collected on all 5, healthy"),
        ("collection_skew_plus_400", "same, one clock +400 ms"),
        ("collection_skew_minus_400", "same, one clock -400 ms"),
        ("collection_skew_two_800_apart", "same, two clocks +400 and -400 ms"),
        ("collection_partition_10s", "same, one node cut off for 10 s"),
    ):
        r = results[name]
        notes = [f"{r['deletes']} deletes, simulated, polled every {POLL_S * 1000:.0f} ms"]
        if r.get("same_as_healthy_sample_for_sample"):
            notes.append("every sample equals the healthy run's")
        if r["partition_s"]:
            notes.append(
                f"from the heal: p50 {ms(r['after_heal_median_ms'])}, "
                f"p99 {ms(r['after_heal_p99_ms'])}"
            )
        if r["collected_while_a_node_was_cut_off"]:
            notes.append(
                f"**{r['collected_while_a_node_was_cut_off']} collected before the cut "
                "node saw the delete**"
            )
        if r["not_collected"]:
            notes.append(f"**{r['not_collected']} not collected in {GIVE_UP_S:.0f} s**")
        rows.append((label, f"p50 {ms(r['median_ms'])}, p99 {ms(r['p99_ms'])}", "; ".join(notes)))
    for hb in (hb5, hb50):
        n = hb["nodes"]
        rows += [
            (
                f"heartbeat, {n} nodes",
                f"{hb['heartbeat_bytes_on_wire_mean']:,.0f} B on the wire (mean); "
                f"{hb['heartbeat_bytes_built']:,} B built",
                f"{hb['heartbeat_bytes_without_vectors']:,} B with empty coverage/reports",
            ),
            (
                f"stability bookkeeping, {n} nodes",
                f"{hb['bookkeeping_bytes_per_heartbeat']:,} B per heartbeat",
                f"{hb['bookkeeping_bytes_per_member']:.0f} B per member; "
                f"{hb['bookkeeping_bytes_per_s_per_node'] / 1000:,.1f} kB/s sent per node",
            ),
            (
                f"members message, {n} nodes",
                f"{hb['members_message_bytes']:,} B",
                "sent only when member sets differ",
            ),
        ]
    report(f"chorus tombstone stability benchmarks (seed {seed})", rows, results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
