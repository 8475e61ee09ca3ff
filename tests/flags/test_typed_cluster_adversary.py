"""Typed flags on simulated nodes, adversarially: a schedule written on a node whose
clock runs an hour ahead, edits on both sides of a partition, a restart mid-way."""

from typing import Any

import pytest

from flags import FlagStore
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(120)
CONTEXTS: list[dict[str, Any]] = [
    {"actor": a, "attributes": {"plan": p}} for a in ("ann", "bob") for p in ("pro", "x")
]


def answers(store: FlagStore) -> list[Any]:
    return [store.evaluate("f", "d", **c) for c in CONTEXTS]


def test_a_schedule_from_a_clock_ahead_partitioned_edits_and_a_restart_converge(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(seed=1717) as sim:
            sim.set_skew("a", 400)  # ahead, within max_offset_ms (an hour ahead: not ready)
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            stores = {n: FlagStore(sim.node(n).map("flags")) for n in sim.live}
            a, b = stores["a"], stores["b"]
            a.set_variants("f", {"on": "yes", "off": "no"}, type="string")
            a.set_fallthrough("f", {"variant": "off"})
            a.enable("f")
            await sim.run_for(2)
            at = sim.node("a").map("flags").wall_ms() + 30_000
            rule = {"position": "V", "segments": ["pro"], "serve": {"variant": "on"}}
            a.schedule("f", "s1", at, set=[["rule", "r1", rule]])
            sim.network.partition({"a"}, {"b", "c"})
            b.set_segment("pro", [{"attribute": "plan", "op": "in", "values": ["pro"]}])
            b.set_rule(
                "f",
                "r0",
                serve={"variant": "off"},
                conditions=[{"attribute": "actor", "op": "in", "values": ["bob"]}],
            )
            await sim.run_for(40)
            sim.crash("c")
            sim.network.heal()
            await sim.run_for(5)
            stores["c"] = FlagStore((await sim.restart("c")).map("flags"))
            assert await sim.settle(timeout=60) is not None
            await sim.run_for(5)
            assert await sim.settle(timeout=60) is not None
            got = {n: answers(s) for n, s in stores.items()}
            assert got["a"] == got["b"] == got["c"]
            assert got["a"][0].variant == "on"  # ann, pro: the scheduled rule
            assert got["a"][2].variant == "off"  # bob: b's rule r0 goes first

    sim_run(main)
