from typing import Any

import pytest
import trio
import trio.testing

from transport import MemoryNetwork
from transport.simulation import Simulation, SimulationThread

pytestmark = pytest.mark.timeout(120)


async def scenario(seed: int) -> tuple[int, int, list[Any]]:
    network = MemoryNetwork(seed, loss=0.1, duplication=0.1, latency_ms=(1, 20))
    async with Simulation(network) as sim:
        await sim.start("a", "b", "c", "d")
        await sim.run_for(2)
        for i in range(50):
            sim.node("abcd"[i % 4]).map("m").set(i % 7, i)
            await sim.run_for(0.01)
        network.partition({"a"}, {"b", "c", "d"})
        await sim.run_for(5)
        network.heal()
        await sim.run_for(5)
        return network.stats.sent, network.stats.sent_bytes, sorted(sim.node("a").state().items())


def test_a_seed_replays_the_same_history() -> None:
    def run(seed: int) -> tuple[int, int, list[Any]]:
        return trio.run(scenario, seed, clock=trio.testing.MockClock(autojump_threshold=0))

    assert run(5) == run(5) == run(5)
    assert run(5)[:2] != run(6)[:2]


def test_settle_reports_none_when_it_cannot_converge(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            await sim.start("a", "b")
            await sim.run_for(1)
            sim.network.partition({"a"}, {"b"})
            sim.node("a").map("m").set("x", 1)
            assert await sim.settle(timeout=2) is None
            assert sim.divergent_keys() == 1

    sim_run(main)


def test_simulation_thread_steps_a_cluster_from_synchronous_code() -> None:
    driver = SimulationThread(seed=2)
    try:
        sim = driver.simulation
        driver.call(sim.start, "a", "b")
        driver.call(sim.run_for, 2.0)
        driver.call_sync(lambda: sim.node("a").map("m").set("x", 5))
        assert driver.call_sync(lambda: sim.node("b").map("m").get("x")) is None  # no time yet
        driver.call(sim.run_for, 0.1)
        assert driver.call_sync(lambda: sim.node("b").map("m").get("x")) == 5
    finally:
        driver.close()
