from collections import Counter
from typing import Any

import pytest

from transport import rendezvous_owner
from transport.simulation import Simulation

KEYS = [f"user:{i}" for i in range(10_000)]
NODES = ["a", "b", "c", "d", "e"]


def owners(nodes: list[str]) -> dict[str, str]:
    return {key: rendezvous_owner(key, nodes) for key in KEYS}


def test_keys_are_balanced() -> None:
    counts = Counter(owners(NODES).values())
    assert set(counts) == set(NODES)
    assert all(1_700 <= n <= 2_300 for n in counts.values()), counts  # 2,000 +- 15%


def test_a_joining_node_takes_about_one_in_n_keys_and_nothing_else_moves() -> None:
    before, after = owners(NODES), owners([*NODES, "f"])
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "f" for k in moved)
    assert 0.12 <= len(moved) / len(KEYS) <= 0.22  # about 1/6


def test_a_leaving_node_gives_away_only_its_own_keys() -> None:
    before = owners(NODES)
    after = owners([n for n in NODES if n != "c"])
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == "c"}


def test_order_of_nodes_does_not_matter() -> None:
    assert owners(NODES) == owners(list(reversed(NODES)))


def test_no_nodes() -> None:
    with pytest.raises(ValueError, match="no nodes"):
        rendezvous_owner("k", [])


def test_nodes_agree_on_owners(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=20) as sim:
            await sim.start(*NODES)
            await sim.run_for(3)
            for key in KEYS[:200]:
                assert len({sim.node(n).owner(key) for n in sim.live}) == 1
            sim.crash("e")
            await sim.run_for(5)  # failure detection
            assert all(sim.node(n).members() == {"a", "b", "c", "d"} for n in sim.live)
            assert {sim.node("a").owner(k) for k in KEYS[:200]} <= {"a", "b", "c", "d"}

    sim_run(main)
