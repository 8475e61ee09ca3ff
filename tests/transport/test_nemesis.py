"""FoundationDB-style nemesis: clog nodes one by one, then unclog them in random order.

Writes and deletes continue on every node throughout, clocks are skewed (one node's
clock steps seconds off and back in the middle), and tombstones are collected at
random times. No node crashes, so no write may be lost: after the last unclog and a
quiet period, every node holds the same state and every write or delete is present,
superseded by a greater timestamp, or (a delete) collected below every node's floor.

A seed that ever fails goes into REGRESSIONS, so that it runs on every CI run.
"""

import random
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hlc import Timestamp
from transport import MemoryNetwork, WriteRefused
from transport.simulation import Simulation

REGRESSIONS: list[int] = [91, 531]  # seeds that once failed; each runs on every CI run
NODES = ["a", "b", "c", "d", "e"]

pytestmark = pytest.mark.timeout(300)


async def nemesis(seed: int) -> None:
    rng = random.Random(seed)
    network = MemoryNetwork(seed, loss=0.05, latency_ms=(1, 20))
    written: list[tuple[Any, Timestamp, bool]] = []  # (key, timestamp, is a delete)
    skews = {name: rng.randint(-200, 200) for name in NODES}
    async with Simulation(network, skew_ms=skews, sync_interval_s=1.0, gc_interval_s=0.5) as sim:
        await sim.start(*NODES)
        await sim.run_for(2)

        async def write_some(count: int) -> None:
            for _ in range(count):
                node = sim.node(rng.choice(NODES))
                key = rng.randrange(30)
                delete = rng.random() < 0.3
                try:
                    if delete:
                        node.map("m").delete(key)
                    else:
                        node.map("m").set(key, rng.randrange(1_000))
                except WriteRefused:  # its clock is off: it refuses its own writes
                    continue
                ts = node._state.timestamp(("m", key))
                assert ts is not None
                written.append((key, ts, delete))
                if rng.random() < 0.2:
                    sim.node(rng.choice(NODES)).collect_tombstones()
                await sim.run_for(rng.uniform(0.0, 0.3))

        order = NODES[:]
        rng.shuffle(order)
        stepped = rng.choice(NODES)
        for name in order[:-1]:  # clog all but one, one at a time
            network.clog(name)
            await write_some(5)
        sim.set_skew(stepped, rng.choice([-1, 1]) * rng.randint(1_000, 30_000))  # NTP step
        rng.shuffle(order)
        for name in order:
            network.unclog(name)
            await write_some(5)
        sim.set_skew(stepped, skews[stepped])  # and back
        network.heal()
        network.default_faults.loss = 0.0
        assert await sim.settle(timeout=60) is not None, f"seed {seed}: no convergence"
        final = sim.node("a").state()
        floors = [sim.node(n).floor for n in NODES]
        for key, ts, delete in written:
            held = final.timestamp(("m", key))
            if held is None:
                assert delete or any(k == key and d and t > ts for k, t, d in written), (
                    f"seed {seed}: write of {key} at {ts} lost"
                )
                assert all((ts.wall_ms, ts.logical) < (f.wall_ms, f.logical) for f in floors), (
                    f"seed {seed}: a tombstone of {key} went before every node passed it"
                )
            else:
                assert held >= ts, f"seed {seed}: write of {key} at {ts} lost"


@pytest.mark.parametrize("seed", [*REGRESSIONS, 0, 1, 2])
def test_nemesis_fixed_seeds(sim_run: Any, seed: int) -> None:
    sim_run(nemesis, seed)


@given(st.integers(0, 2**32 - 1))
@example(12345)
def test_nemesis_random_seeds(seed: int) -> None:
    import trio
    import trio.testing

    trio.run(nemesis, seed, clock=trio.testing.MockClock(autojump_threshold=0))
