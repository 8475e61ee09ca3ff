"""Simulated scenarios behind the notebooks: each returns plain data to plot.

Every scenario runs on a `MemoryNetwork` under trio's MockClock, from a seed: the
same seed gives the same numbers. Call them from synchronous code (a notebook cell):
each runs its own ``trio.run``. Times are simulated seconds unless named ``_ms``.
"""

from __future__ import annotations

import random
from typing import Any

import attrs
import trio
import trio.testing

import crdt
from hlc import Timestamp

from ._memory import MemoryNetwork
from ._node import WriteRefused
from .simulation import Simulation


def _run(fn: Any, *args: Any) -> Any:
    return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


# -- partitions --------------------------------------------------------------------------


@attrs.frozen
class Conflict:
    key: str
    left: str  # value written on the {a, b} side, and its timestamp
    left_ts: Timestamp
    right: str
    right_ts: Timestamp
    winner: str  # the value every node holds after healing


@attrs.frozen
class PartitionRun:
    times: list[float]  # sample times, s
    divergent: list[int]  # keys on which some pair of nodes disagree, per sample
    partition_at: float
    heal_at: float
    converged_at: float | None  # first sample after the heal with no divergence
    conflicts: list[Conflict]


def partitions(
    seed: int = 1,
    *,
    keys: int = 50,
    conflicts: int = 10,
    partition_at: float = 2.0,
    heal_at: float = 12.0,
    end: float = 20.0,
    sample_s: float = 0.1,
) -> PartitionRun:
    """Five nodes; a partition {a, b} | {c, d, e}; conflicting writes on both sides."""

    async def scenario() -> PartitionRun:
        rng = random.Random(seed)
        network = MemoryNetwork(seed)
        times: list[float] = []
        divergent: list[int] = []
        written: list[tuple[str, str, str, Timestamp]] = []  # key, side, value, timestamp
        async with Simulation(network) as sim:
            await sim.start("a", "b", "c", "d", "e")
            for i in range(keys):
                sim.node("a").map("m").set(f"key:{i}", 0)
            await sim.run_for(1.0)  # replicated everywhere before the clock starts
            start = trio.current_time()
            conflicted = [f"key:{i}" for i in rng.sample(range(keys), conflicts)]
            plan = sorted(
                [
                    (partition_at + rng.uniform(0.5, heal_at - partition_at - 1), k, side)
                    for k in conflicted
                    for side in ("left", "right")
                ]
            )
            partitioned = healed = False
            converged_at = None
            while trio.current_time() - start < end:
                now = trio.current_time() - start
                if not partitioned and now >= partition_at:
                    network.partition({"a", "b"}, {"c", "d", "e"})
                    partitioned = True
                if not healed and now >= heal_at:
                    network.heal()
                    healed = True
                while plan and plan[0][0] <= now:
                    _, key, side = plan.pop(0)
                    writer = rng.choice(["a", "b"] if side == "left" else ["c", "d", "e"])
                    value = f"{side}@{writer}"
                    sim.node(writer).map("m").set(key, value)
                    ts = sim.node(writer).map("m").timestamp(key)
                    assert ts is not None
                    written.append((key, side, value, ts))
                times.append(now)
                divergent.append(sim.divergent_keys())
                if healed and converged_at is None and divergent[-1] == 0:
                    converged_at = now
                await sim.run_for(sample_s)
            state = sim.node("a").state()
            found = []
            for key in conflicted:
                mine = [w for w in written if w[0] == key]
                left = next(w for w in mine if w[1] == "left")
                right = next(w for w in mine if w[1] == "right")
                found.append(
                    Conflict(key, left[2], left[3], right[2], right[3], state.get(("m", key)))
                )
        return PartitionRun(times, divergent, partition_at, heal_at, converged_at, found)

    result: PartitionRun = _run(scenario)
    return result


# -- rolling deploy ----------------------------------------------------------------------


@attrs.frozen
class DeployRun:
    times: list[float]
    ready: dict[str, list[int]]  # per node: 1 ready, 0 not ready, -1 down, per sample
    value: dict[str, list[int | None]]  # per node: the value it answered (None: down)
    expected: list[int]  # the last value written, per sample
    ready_reads: int  # reads from ready nodes during the rolling restart
    stale_reads: int  # ... that lagged the last write (replication in flight)
    lost_reads: int  # ... older than a write made at least `lag_s` before: data loss
    all_down_at: float
    after_all_down: dict[str, Any]  # `get(key, default)` once every node came back empty


def rolling_deploy(
    seed: int = 1, *, sample_s: float = 0.05, write_every_s: float = 0.2, lag_s: float = 0.1
) -> DeployRun:
    """Three nodes restarted one by one under steady reads and writes; then all at once.

    Readiness is `Node.ready`, what ``GET /ready`` reports. After the rolling
    restart every node is killed at once; they come back empty, and reads fall back
    to the caller's default (``map.get(key, default)``, as `flags.FlagStore` defaults
    do), the failure the design accepts: the state lives as long as one node lives.
    """

    async def scenario() -> DeployRun:
        rng = random.Random(seed)
        async with Simulation(MemoryNetwork(seed)) as sim:
            names = ["a", "b", "c"]
            await sim.start(*names)
            await sim.run_for(1)
            times: list[float] = []
            ready: dict[str, list[int]] = {n: [] for n in names}
            value: dict[str, list[int | None]] = {n: [] for n in names}
            expected: list[int] = []
            history: list[tuple[float, int]] = []  # (time, value) of every write
            counter, ready_reads, stale, lost = 0, 0, 0, 0
            start = trio.current_time()
            last_write = -write_every_s
            plan = [(2.0 + 2.0 * i, n) for i, n in enumerate(names)]  # restart times
            restarting: dict[str, float] = {}
            all_down_at = 2.0 + 2.0 * len(names) + 1.0
            went_down = False
            while trio.current_time() - start < all_down_at + 3.0:
                now = trio.current_time() - start
                if now - last_write >= write_every_s and sim.live and not went_down:
                    counter += 1
                    writer = rng.choice([n for n in sim.live if sim.node(n).ready])
                    sim.node(writer).map("flags").set("release", counter)
                    history.append((now, counter))
                    last_write = now
                while plan and plan[0][0] <= now:
                    _, name = plan.pop(0)
                    sim.crash(name)
                    restarting[name] = now + 0.3  # the process takes 0.3 s to come back
                for name, back in list(restarting.items()):
                    if now >= back:
                        await sim.start(name, ready=False)
                        del restarting[name]
                if not went_down and now >= all_down_at:
                    for name in list(sim.live):
                        sim.crash(name)
                    await sim.run_for(0.5)
                    await sim.start(*names, ready=False)
                    went_down = True
                times.append(now)
                expected.append(counter)
                for name in names:
                    if name not in sim.live:
                        ready[name].append(-1)
                        value[name].append(None)
                        continue
                    node = sim.node(name)
                    ready[name].append(1 if node.ready else 0)
                    seen = node.map("flags").get("release")
                    value[name].append(seen)
                    if node.ready and not went_down:
                        ready_reads += 1
                        stale += seen != counter
                        settled = max((v for t, v in history if t <= now - lag_s), default=0)
                        lost += settled > 0 and (seen is None or seen < settled)
                await sim.run_for(sample_s)
            after = {n: sim.node(n).map("flags").get("release", "default") for n in names}
        return DeployRun(
            times, ready, value, expected, ready_reads, stale, lost, all_down_at, after
        )

    result: DeployRun = _run(scenario)
    return result


# -- scale -----------------------------------------------------------------------------


@attrs.frozen
class ScalePoint:
    nodes: int
    visible_on_all_ms: float  # one write, until every node holds it
    messages_per_write: float  # deltas sent for that write
    bytes_per_write: float


def scale_writes(seed: int = 1, sizes: tuple[int, ...] = (3, 5, 10, 20, 40)) -> list[ScalePoint]:
    """Write latency and traffic per write as the cluster grows."""

    async def one(size: int) -> ScalePoint:
        network = MemoryNetwork(seed)
        async with Simulation(network, heartbeat_interval_s=1.0, failure_timeout_s=6.0) as sim:
            names = [f"n{i}" for i in range(size)]
            await sim.start(*names)
            await sim.run_for(2)
            sent, sent_bytes = (
                network.stats.sent_by_kind.get("map", 0),
                network.stats.bytes_by_kind.get("map", 0),
            )
            latencies = []
            for i in range(10):
                sim.node(names[i % size]).map("m").set(f"k{i}", i)
                start = trio.current_time()
                while not all(sim.node(n).map("m").get(f"k{i}") == i for n in names):
                    await sim.run_for(0.0005)
                latencies.append((trio.current_time() - start) * 1000)
                await sim.run_for(0.05)
            messages = (network.stats.sent_by_kind.get("map", 0) - sent) / 10
            size_bytes = (network.stats.bytes_by_kind.get("map", 0) - sent_bytes) / 10
        return ScalePoint(size, sorted(latencies)[len(latencies) // 2], messages, size_bytes)

    return [_run(one, size) for size in sizes]


@attrs.frozen
class RepairPoint:
    differing: int
    digest_bytes: int  # the Merkle-digest protocol's bytes, both ways
    digest_messages: int
    full_state_bytes: int  # what a full-state resync ships (keathley/rollout)


def repair_cost(
    total_keys: int = 20_000, differing: tuple[int, ...] = (1, 10, 100, 1000)
) -> list[RepairPoint]:
    """Bytes to repair k differing keys: digest anti-entropy against a full resync."""
    base = crdt.LWWMap()
    for i in range(total_keys):
        base.set(f"flag:{i}", i % 2 == 0, Timestamp(1_700_000_000_000 + i, 0, "a"))
    full = len(crdt.encode_map(base))
    points = []
    for k in differing:
        mine, theirs = base.copy(), base.copy()
        for i in range(k):
            theirs.set(
                f"flag:{i * (total_keys // k)}", "changed", Timestamp(1_800_000_000_000 + i, 0, "b")
            )
        messages, total = crdt.sync_exchange(mine, theirs)
        assert mine == theirs
        points.append(RepairPoint(k, total, messages, full))
    return points


@attrs.frozen
class LossPoint:
    loss: float
    sync_interval_s: float
    converged_after_s: float | None  # after 100 writes, until every node agrees


def loss_and_interval(
    seed: int = 1,
    losses: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5),
    intervals: tuple[float, ...] = (0.5, 2.0),
) -> list[LossPoint]:
    """How message loss and the anti-entropy interval set the time to converge."""

    async def one(loss: float, interval: float) -> LossPoint:
        network = MemoryNetwork(seed)
        async with Simulation(network, sync_interval_s=interval) as sim:
            names = ["a", "b", "c", "d", "e"]
            await sim.start(*names)
            await sim.run_for(2)
            network.default_faults.loss = loss
            for i in range(100):
                sim.node(names[i % 5]).map("m").set(i, i)
            took = await sim.settle(timeout=60, step=0.05)
        return LossPoint(loss, interval, took)

    return [_run(one, loss, interval) for interval in intervals for loss in losses]


# -- clock skew ------------------------------------------------------------------------


@attrs.frozen
class SkewRun:
    skews_ms: dict[str, int]
    causal_violations: int  # writes ordered before something their node had seen
    inversions: int  # writes later in real time but ordered before an earlier write
    last_written: int  # the chain's last value, in real time
    final_value: int  # the value every node holds at the end (LWW's answer)
    held_back: dict[str, int]  # entries each node held back for being too far ahead
    accepted_after_s: float | None  # how long "fast"'s write took to land on "slow"
    far_refused: str  # why the node far off the others' clocks refused its own write
    timeline: list[tuple[float, str, str, int]]  # (time, node, key, wall_ms of its timestamp)


def clock_skew(seed: int = 1, *, max_offset_ms: int = 500, far_ms: int = 2_000) -> SkewRun:
    """Nodes with skewed clocks: causality holds; what the skew guard holds back.

    "slow" and "fast" are 600 ms apart, each within ``max_offset_ms`` of the median:
    slow holds fast's entries back until its clock allows them. "far" is ``far_ms``
    ahead of the others: it refuses its own writes (`transport.WriteRefused`) rather
    than stamp them in the future.

    Causality means a write is ordered after everything its node had *seen*. A
    write made before a faster clock's write has arrived (in flight, or held back
    for being too far ahead) can still carry an older timestamp, and lose under LWW:
    `SkewRun.inversions` counts those.
    """

    async def scenario() -> SkewRun:
        rng = random.Random(seed)
        skews = {"slow": -300, "exact": 0, "fast": 300, "far": far_ms}
        async with Simulation(
            MemoryNetwork(seed), skew_ms=skews, max_offset_ms=max_offset_ms
        ) as sim:
            await sim.start(*skews, ready=False)
            await sim.run_for(2)
            violations = 0
            timeline = []
            start = trio.current_time()
            for i in range(40):  # a chain of read-modify-writes hopping between nodes
                name = rng.choice(["slow", "exact", "fast"])
                node = sim.node(name)
                seen = node._state.timestamp(("m", "chain"))
                node.map("m").set("chain", i)
                ts = node._state.timestamp(("m", "chain"))
                assert ts is not None
                violations += seen is not None and not ts > seen
                timeline.append((trio.current_time() - start, name, "chain", ts.wall_ms))
                await sim.run_for(rng.uniform(0.01, 0.1))
            await sim.run_for(1)
            try:
                sim.node("far").map("m").set("from-far", 1)
                refused = ""
            except WriteRefused as exc:
                refused = exc.reason
            sim.node("fast").map("m").set("from-fast", 1)
            written = trio.current_time()
            landed = None
            while trio.current_time() - written < 10:
                if sim.node("slow").map("m").get("from-fast") == 1:
                    landed = trio.current_time() - written
                    break
                await sim.run_for(0.05)
            held = {n: sim.node(n).stats.held_back for n in skews}
            walls = [w for *_, w in timeline]
            inversions = sum(w < max(walls[:i]) for i, w in enumerate(walls) if i)
            final = sim.node("exact").map("m").get("chain")
        return SkewRun(skews, violations, inversions, 39, final, held, landed, refused, timeline)

    result: SkewRun = _run(scenario)
    return result


# -- ownership window (calls) -------------------------------------------------------------

OWNER_CASES = ("crash", "silent", "stop", "start", "serve")


@attrs.frozen
class OwnerWindow:
    """How long the nodes disagree on the owners of keys after one membership change.

    Attributes:
        case: ``"crash"`` (a process killed; its links drop, as ``kill -9`` on a
            live host), ``"silent"`` (a host lost or cut off: no link drops, its
            messages stop), ``"stop"`` (`Node.drain`, then the process ends),
            ``"start"`` (a new process starts and serves at once) or ``"serve"``
            (a running member starts serving).
        agreed_s: from the change until every node that hears the others names the
            final owner of every key (`Node.owner_of`), in simulated seconds.
        spread_s: of that, how long those nodes named different owners (before,
            they agreed on the old ones, a dead node included).
        two_owners_s: how long some key had two nodes that each named itself
            its owner.
    """

    case: str
    agreed_s: float
    spread_s: float
    two_owners_s: float


def ownership_window(
    case: str, seed: int = 1, *, keys: int = 200, sample_s: float = 0.005, **node_options: Any
) -> OwnerWindow:
    """One membership change among nodes serving ``"w"`` (see `OwnerWindow`).

    Four nodes (three for ``"start"``, where the fourth starts) serve ``"w"``,
    but for ``"serve"``, where the fourth starts serving. The nodes' views are
    sampled every ``sample_s`` simulated seconds: a node's owner of each key follows
    from its `Node.serving` set (rendezvous hashing over it).
    """
    if case not in OWNER_CASES:
        raise ValueError(f"case is one of {OWNER_CASES}, not {case!r}")
    from ._hrw import rendezvous_owner

    names = ["a", "b", "c", "d"]
    key_list = [f"request-{i}" for i in range(keys)]

    async def handler(caller: str, payload: Any) -> Any:
        return payload

    async def scenario() -> OwnerWindow:
        async with Simulation(MemoryNetwork(seed), **node_options) as sim:
            first = names[:3] if case == "start" else names
            await sim.start(*first)
            for name in first:
                if not (case == "serve" and name == "d"):
                    sim.node(name).serve("w", handler)
            await sim.run_for(3)
            final = set(names) - ({"d"} if case in ("crash", "silent", "stop") else set())
            observers = sorted(final)  # "silent": d runs on, cut off; it is not asked
            async with trio.open_nursery() as nursery:
                start = trio.current_time()
                if case == "crash":
                    sim.crash("d")
                elif case == "silent":
                    sim.network.clog("d")
                elif case == "stop":

                    async def stop() -> None:
                        await sim.node("d").drain()
                        sim.crash("d")  # the process ends: its links drop

                    nursery.start_soon(stop)
                elif case == "start":

                    async def start_d() -> None:
                        (node,) = await sim.start("d", ready=False)
                        node.serve("w", handler)

                    nursery.start_soon(start_d)
                else:
                    sim.node("d").serve("w", handler)
                owners: dict[frozenset[str], list[str]] = {}
                agreed_at, spread, two = 0.0, 0.0, 0.0
                while trio.current_time() - start < 30:
                    now = trio.current_time() - start
                    views = [
                        sim.node(n).serving("w") if n in sim.live else frozenset()
                        for n in observers
                    ]
                    if any(v != final for v in views):
                        agreed_at = now + sample_s
                    elif now - agreed_at > 2:
                        break
                    if len(set(views)) > 1:
                        spread += sample_s
                        for view in views:
                            if view not in owners:
                                owners[view] = [
                                    rendezvous_owner(k, view) if view else "" for k in key_list
                                ]
                        claims = [
                            [o == n for o in owners[v]]
                            for n, v in zip(observers, views, strict=True)
                        ]
                        if any(sum(column) > 1 for column in zip(*claims, strict=True)):
                            two += sample_s
                    await sim.run_for(sample_s)
                nursery.cancel_scope.cancel()
        return OwnerWindow(case, agreed_at, spread, two)

    result: OwnerWindow = _run(scenario)
    return result
