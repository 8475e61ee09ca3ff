"""A simulated cluster under faults, checked against a model after healing.

Rules write and delete on random nodes, partition and heal, lose and duplicate
messages, clog nodes, crash and restart them (never all at once), and let simulated
time pass; clocks are skewed within max_offset_ms. After healing and a bounded quiet
period, checked Jepsen-style: every live node holds the same state; every entry was
actually written; and every write made on a node that stayed up is still there or
superseded by a write with a greater timestamp.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from crdt import LWWMap
from hlc import Timestamp
from transport.simulation import SimulationThread

MAP = "m"
KEYS = st.sampled_from(["a", "b", "c", ("t", 1)])
QUIET_S = 30.0  # simulated seconds allowed to converge once healed


class ClusterMachine(RuleBasedStateMachine):
    driver: SimulationThread

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.up: dict[str, str] = {}  # name -> incarnation, for running nodes
        self.down: list[str] = []
        # (key, timestamp, payload, writer name, writer incarnation)
        self.writes: list[tuple[Any, Timestamp, bytes, str, str]] = []

    @initialize(
        size=st.integers(3, 7),
        seed=st.integers(0, 2**16),
        skews=st.lists(st.integers(-400, 400), min_size=7, max_size=7),
    )
    def start(self, size: int, seed: int, skews: list[int]) -> None:
        self.names = [f"n{i}" for i in range(size)]
        self.driver = SimulationThread(
            seed=seed,
            skew_ms=dict(zip(self.names, skews, strict=False)),
            max_offset_ms=500,
            sync_interval_s=1.0,
        )
        sim = self.driver.simulation
        self.driver.call(sim.start, *self.names)
        self.driver.call(sim.run_for, 2.0)
        self.up = self.driver.call_sync(lambda: {n: sim.node(n).incarnation for n in sim.live})

    def teardown(self) -> None:
        if hasattr(self, "driver"):
            try:
                self.check_after_healing()
            finally:
                self.driver.close()

    # -- writes ----------------------------------------------------------------------

    def _write(self, index: int, key: Any, value: Any, delete: bool) -> None:
        sim = self.driver.simulation
        name = sorted(self.up)[index % len(self.up)]

        def write() -> tuple[Timestamp, bytes]:
            node = sim.node(name)
            seen = node._state.timestamp((MAP, key))
            if delete:
                node.map(MAP).delete(key)
            else:
                node.map(MAP).set(key, value)
            register = node._state.register((MAP, key))
            assert register is not None
            # Causality: a write is ordered after everything its node has seen.
            assert seen is None or register.timestamp > seen, "write ordered before what it saw"
            return register.timestamp, register.payload

        ts, payload = self.driver.call_sync(write)
        self.writes.append((key, ts, payload, name, self.up[name]))

    @rule(index=st.integers(0, 6), key=KEYS, value=st.integers(0, 3) | st.text(max_size=3))
    def write(self, index: int, key: Any, value: Any) -> None:
        self._write(index, key, value, delete=False)

    @rule(index=st.integers(0, 6), key=KEYS)
    def delete(self, index: int, key: Any) -> None:
        self._write(index, key, None, delete=True)

    # -- faults ----------------------------------------------------------------------

    @rule(data=st.data())
    def partition(self, data: st.DataObject) -> None:
        side = data.draw(st.sets(st.sampled_from(self.names), min_size=1))
        network = self.driver.simulation.network
        self.driver.call_sync(network.partition, side, set(self.names) - side)

    @rule()
    def heal(self) -> None:
        self.driver.call_sync(self.driver.simulation.network.heal)

    @rule(loss=st.sampled_from([0.0, 0.1, 0.3]), duplication=st.sampled_from([0.0, 0.2]))
    def faults(self, loss: float, duplication: float) -> None:
        faults = self.driver.simulation.network.default_faults
        faults.loss, faults.duplication = loss, duplication

    @rule(name=st.sampled_from([f"n{i}" for i in range(7)]))
    def clog(self, name: str) -> None:
        if name in self.names:
            self.driver.call_sync(self.driver.simulation.network.clog, name)

    @precondition(lambda self: len(self.up) > 1)
    @rule(index=st.integers(0, 6))
    def crash(self, index: int) -> None:
        name = sorted(self.up)[index % len(self.up)]
        self.driver.call_sync(self.driver.simulation.crash, name)
        del self.up[name]
        self.down.append(name)

    @precondition(lambda self: bool(self.down))
    @rule(index=st.integers(0, 6))
    def restart(self, index: int) -> None:
        name = self.down.pop(index % len(self.down))
        node = self.driver.call(self.driver.simulation.start, name)[0]
        self.up[name] = node.incarnation

    @rule(seconds=st.sampled_from([0.01, 0.1, 0.5, 2.0, 5.0]))
    def wait(self, seconds: float) -> None:
        self.driver.call(self.driver.simulation.run_for, seconds)

    @invariant()
    def never_all_down(self) -> None:
        assert self.up

    # -- the final read --------------------------------------------------------------

    def check_after_healing(self) -> None:
        sim = self.driver.simulation

        def heal() -> None:
            sim.network.heal()
            sim.network.default_faults.loss = sim.network.default_faults.duplication = 0.0

        self.driver.call_sync(heal)
        settled = self.driver.call(sim.settle, QUIET_S)
        states: dict[str, LWWMap] = self.driver.call_sync(sim.states)
        assert settled is not None, f"no convergence within {QUIET_S} s of quiet"
        final = next(iter(states.values()))
        written = {(key, ts): payload for key, ts, payload, _, _ in self.writes}
        for full_key, register in final.entries():
            key = full_key[1]  # type: ignore[index]
            assert written.get((key, register.timestamp)) == register.payload, (
                f"{key!r} holds a value nobody wrote"
            )
        for key, ts, _, writer, incarnation in self.writes:
            if self.up.get(writer) == incarnation:  # the writer stayed up
                held = final.timestamp((MAP, key))
                assert held is not None, f"write of {key!r} at {ts} was lost"
                assert held >= ts, f"write of {key!r} at {ts} was lost"


TestCluster = ClusterMachine.TestCase
TestCluster.settings = settings(
    max_examples=max(1, settings().max_examples // 4),
    stateful_step_count=30,
    deadline=None,
)
pytestmark = pytest.mark.timeout(600)


def test_trio_is_importable() -> None:  # the machine above needs trio's thread API
    assert trio.from_thread.run_sync is not None
