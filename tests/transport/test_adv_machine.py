"""The cluster machine with an adversary's extra rules: a node restarted on the other
side of a split, splits into three, clock steps of minutes to an hour, and lying
members (within the protocol: a member that accuses whom it hears, never withdraws,
never accuses, or does both backwards).

Checked as the cluster machine checks (`ClusterMachine.check_after_healing`). Small
by default (ADV_EXAMPLES=10); a long hunt sets ADV_EXAMPLES and CHORUS_MACHINE_TIMEOUT_S
with HYPOTHESIS_PROFILE=deep.
"""

from __future__ import annotations

import functools
import os

import pytest
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from tests.transport.test_cluster_machine import HORIZON_S, NAMES, ClusterMachine

BIG_SKEWS = st.sampled_from([-3_600_000, -60_000, -5_000, 5_000, 60_000, 600_000])


class AdversarialMachine(ClusterMachine):
    def __init__(self) -> None:
        super().__init__()
        self.liars: dict[str, str] = {}
        self.ahead_ms = 0

    def check_after_healing(self) -> None:
        # A clock that ran ahead and is stepped back waits for real time to catch
        # up (documented): give it that long before the machine's own check.
        sim = self.driver.simulation
        if self.ahead_ms > 30_000:

            def clocks() -> None:
                self._heal_network()
                for name in self.names:
                    sim.set_skew(name, 0)

            self.driver.call_sync(clocks)
            self.driver.call(sim.run_for, self.ahead_ms / 1000 + 5)
        super().check_after_healing()

    @precondition(lambda self: len(self.up) > 1)
    @rule(index=st.integers(0, 5), extra=st.sampled_from([0.0, 0.5, 1.2, 2.0]))
    def restart_across(self, index: int, extra: float) -> None:
        """Crash a node and restart it on the other side of the current split."""
        name = sorted(self.up)[index % len(self.up)]
        sim = self.driver.simulation
        holders = self.driver.call_sync(
            lambda: [n for n in sim.live if sim.node(n).admitted and sim.node(n).synced]
        )
        if holders == [name]:
            return
        groups = [set(g) for g in sim.network._groups]
        if len(groups) < 2:
            return
        mine = next((g for g in groups if name in g), None)
        if mine is None:
            return
        other = next(g for g in groups if g is not mine)
        mine.discard(name)
        other.add(name)
        self.driver.call_sync(sim.crash, name)
        del self.up[name]
        self.driver.call_sync(sim.network.partition, *[g for g in groups if g])
        node = self.driver.call(functools.partial(sim.start, name, ready=False))[0]
        self.up[name] = node.incarnation
        if extra:
            self.driver.call(sim.run_for, HORIZON_S * extra)
            self._refresh_incarnations()

    @rule(data=st.data(), extra=st.sampled_from([0.6, 1.2, 2.0]))
    def split_three(self, data: st.DataObject, extra: float) -> None:
        """Split into three groups (by a drawn label per node) for a while."""
        labels = data.draw(st.lists(st.integers(0, 2), min_size=6, max_size=6))
        groups: list[set[str]] = [set(), set(), set()]
        for name, label in zip(self.names, labels, strict=False):
            groups[label].add(name)
        sim = self.driver.simulation
        self.driver.call_sync(sim.network.partition, *[g for g in groups if g])
        self.driver.call(sim.run_for, HORIZON_S * extra)
        self._refresh_incarnations()

    @rule(name=st.sampled_from(NAMES), skew=BIG_SKEWS)
    def big_step(self, name: str, skew: int) -> None:
        if name in self.names:
            self.ahead_ms = max(self.ahead_ms, skew)
            self.driver.call_sync(self.driver.simulation.set_skew, name, skew)

    @rule(
        index=st.integers(0, 5),
        mode=st.sampled_from(["accuse_all", "never_withdraw", "never_accuse", "flip"]),
    )
    def lie(self, index: int, mode: str) -> None:
        name = sorted(self.up)[index % len(self.up)]
        sim = self.driver.simulation

        def install() -> None:
            node = sim.node(name)
            honest = node._vote_expulsions

            def lying() -> None:
                if not node.admitted:
                    return honest()
                m = node._membership
                changed = False
                if mode == "accuse_all":
                    for t in sorted(m.members() - {node._me}):
                        changed |= m.vote_expel(t, node._me)
                elif mode == "never_withdraw":
                    now = trio.current_time()
                    for t in sorted(m.members() - {node._me}):
                        if now - node._heard.get(t, now) > node._horizon_s:
                            changed |= m.vote_expel(t, node._me)
                elif mode == "never_accuse":
                    for t in sorted(m.accused_by(node._me)):
                        changed |= m.withdraw(t, node._me)
                else:  # flip: accuse whom it hears, withdraw whom it does not
                    now = trio.current_time()
                    for t in sorted(m.members() - {node._me}):
                        if now - node._heard.get(t, now) > node._horizon_s:
                            changed |= m.withdraw(t, node._me)
                        else:
                            changed |= m.vote_expel(t, node._me)
                if changed:
                    node._membership_changed()

            node._vote_expulsions = lying  # type: ignore[method-assign]

        self.driver.call_sync(install)
        self.liars[name] = mode


TestAdversarial = AdversarialMachine.TestCase
TestAdversarial.settings = settings(
    max_examples=int(os.environ.get("ADV_EXAMPLES", "10")),
    stateful_step_count=30,
    deadline=None,
)


pytestmark = pytest.mark.timeout(int(os.environ.get("CHORUS_MACHINE_TIMEOUT_S", "900")))
