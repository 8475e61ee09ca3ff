"""Flags on simulated nodes: concurrent edits of different gates both survive."""

from typing import Any

import pytest

from flags import FlagStore
from transport import WriteRefused
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


def test_concurrent_edits_of_different_gates_on_different_nodes_both_survive(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=31) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            store_a = FlagStore(sim.node("a").map("flags"))
            store_b = FlagStore(sim.node("b").map("flags"))
            sim.network.partition({"a"}, {"b"})
            store_a.enable_for_actor("checkout", "ann", author="alice")
            store_b.disable_for_group("checkout", "banned", author="bob")
            store_b.enable("checkout", author="bob")
            await sim.run_for(5)
            sim.network.heal()
            assert await sim.settle(timeout=30) is not None
            for store in (store_a, store_b):
                flag = store.flag("checkout")
                assert flag.actors == {"ann": True}
                assert flag.groups == {"banned": False}
                assert flag.boolean is True
                assert not store.enabled("checkout", "zed", ["banned"])
                assert store.enabled("checkout", "ann", ["banned"])
                assert {e.author for e in store.audit("checkout")} == {"alice", "bob"}

    sim_run(main)


def test_a_toggle_reaches_every_node_and_notifies_once(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=32) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            stores = {n: FlagStore(sim.node(n).map("flags")) for n in sim.live}
            heard: dict[str, list[frozenset[str]]] = {n: [] for n in sim.live}
            for name, store in stores.items():
                store.subscribe(heard[name].append)
            stores["a"].enable("new-checkout")
            await sim.run_for(1)
            assert all(s.enabled("new-checkout") for s in stores.values())
            for name in ["b", "c"]:
                assert heard[name] == [frozenset({"new-checkout"})]

    sim_run(main)


def test_a_change_of_several_entries_applies_whole_or_not_at_all(sim_run: Any) -> None:
    """``disable`` writes the boolean gate and deletes the percentage gates: when one
    delete must be refused (an entry of that key is held back from 10 minutes ahead),
    nothing is written, rather than a flag left half disabled."""

    async def main() -> None:
        async with Simulation(seed=3) as sim:
            a, b, _ = await sim.start("a", "b", "c")
            store_a, store_b = FlagStore(a.map("flags")), FlagStore(b.map("flags"))
            store_a.enable("f")
            store_a.enable_percentage_of_actors("f", 0.5)
            await sim.run_for(2)
            sim.network.partition({"a"}, {"b", "c"})
            await sim.run_for(5)
            sim.set_skew("b", 600_000)  # b and c step 10 minutes ahead together: two of
            sim.set_skew("c", 600_000)  # three members, so they confirm each other
            await sim.run_for(5)
            store_b.enable_percentage_of_actors("f", 0.7)  # stamped 10 minutes ahead
            sim.set_skew("b", 0)
            sim.set_skew("c", 0)
            await sim.run_for(5)
            sim.network.heal()
            await sim.run_for(5)
            assert a.ready
            assert a.held  # b's gate, held back until its time comes
            before = dict(a.map("flags").items())
            with pytest.raises(WriteRefused, match="future"):
                store_a.disable("f")
            with pytest.raises(WriteRefused, match="future"):
                store_a.clear("f")
            assert dict(a.map("flags").items()) == before  # no gate, no audit entry
            assert store_a.flag("f").boolean is True

    sim_run(main)


def test_a_change_whose_audit_record_is_too_large_writes_nothing(sim_run: Any) -> None:
    """Texts are bounded in characters, values in bytes: 2,000 emoji are 8,000 bytes.
    The fields, or the audit record holding both, go over ``max_value_bytes``; the
    change is refused before any field is written."""

    async def main() -> None:
        async with Simulation(seed=1) as sim:
            (a,) = await sim.start("a", max_value_bytes=9000)
            store = FlagStore(a.map("flags"))
            big = "\U0001f600" * 2000
            store.set_metadata("f", description="old")
            before = dict(a.map("flags").items())
            with pytest.raises(ValueError, match="max_value_bytes"):
                store.set_metadata("f", description=big, owner=big)  # each 8,000 B: fits
            assert dict(a.map("flags").items()) == before
            assert store.flag("f").description == "old"

    sim_run(main)
