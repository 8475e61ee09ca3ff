"""bootstrap_expect, and duplicate node ids refused by the cluster, on the simulator.

Every node here has seeds (a `MemoryNetwork` gives none to the first node it
attaches; `SeededNetwork` gives every node some), as in the README's recipe where
every node is started with ``--join <the others> --bootstrap-expect 3``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from transport import MemoryNetwork, Node
from transport._interface import Event, PeerDown, PeerUp, Received, Transport
from transport._memory import MemoryTransport
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


class SeededNetwork(MemoryNetwork):
    """A MemoryNetwork whose every node has seeds (dials its peers): none founds a
    cluster merely for being first."""

    def transport(self, node_id: str) -> MemoryTransport:
        transport = super().transport(node_id)
        transport._seeded = True
        return transport


def founders(sim: Simulation) -> set[str]:
    """The nodes whose incarnation founded the cluster they are in (no sponsors)."""
    found = set()
    for name in sim.live:
        node = sim.node(name)
        cluster = node.membership.cluster
        if cluster is not None and cluster.endswith(f"/{name}/{node.incarnation}"):
            found.add(name)
    return found


def test_bootstrap_expect_never_founds_with_fewer_than_n(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(SeededNetwork(1), bootstrap_expect=3) as sim:
            a, b = await sim.start("a", "b", ready=False)
            await sim.run_for(60)  # no timeout: two of three never found
            for node in (a, b):
                assert node.membership.cluster is None
                assert not node.ready
            reason = a.not_ready_reason()
            assert reason is not None
            assert "waiting for a cluster to join, or for 3 nodes to found one" in reason
            assert "hears 1 other node(s) waiting: b" in reason

    sim_run(main)


def test_bootstrap_expect_founds_once_with_n_and_restarts_join(sim_run: Any, caplog: Any) -> None:
    async def main() -> None:
        async with Simulation(SeededNetwork(2), bootstrap_expect=3) as sim:
            await sim.start("b", ready=False)
            await sim.run_for(1)
            await sim.start("a", "c")  # the third arrives: all ready
            clusters = {sim.node(n).membership.cluster for n in sim.live}
            assert len(clusters) == 1
            assert founders(sim) == {"a"}  # the smallest id founded it, once
            sim.node("b").map("flags").set("new-checkout", True)
            await sim.run_for(1)
            (cluster,) = clusters

            # The first node restarts (crash) while the others are up: it joins.
            a = await sim.restart("a")
            assert a.membership.cluster == cluster
            assert a.map("flags").get("new-checkout") is True
            # And after a graceful stop too, with the same options.
            assert await sim.node("a").drain() == 0
            sim.crash("a")
            a = await sim.restart("a")
            assert a.membership.cluster == cluster
            assert a.map("flags").get("new-checkout") is True
            assert founders(sim) == set()  # nobody founded again

            # Cut off from the others, a restart waits: never ready, never founds.
            sim.network.clog("a")
            sim.crash("a")
            (a,) = await sim.start("a", ready=False)
            await sim.run_for(30)
            assert a.membership.cluster is None
            assert not a.ready
            assert "or for 3 nodes to found one" in (a.not_ready_reason() or "")
            sim.network.unclog("a")
            await sim.run_for(5)
            assert a.ready
            assert a.membership.cluster == cluster
            assert a.map("flags").get("new-checkout") is True

    with caplog.at_level(logging.WARNING, logger="chorus.node"):
        sim_run(main)
    founded = [r for r in caplog.records if "founding a new cluster" in r.getMessage()]
    assert len(founded) == 1, [r.getMessage() for r in founded]
    assert "3 nodes wait for a cluster (bootstrap_expect=3)" in founded[0].getMessage()


def test_bootstrap_expect_two_nodes_restarted_together_wait_for_the_third(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(SeededNetwork(3), bootstrap_expect=3) as sim:
            await sim.start("a", "b", "c")
            (cluster,) = {sim.node(n).membership.cluster for n in sim.live}
            sim.node("c").map("flags").set("k", 1)
            await sim.run_for(1)
            sim.network.clog("c")  # c is cut off, a and b crash and come back together
            sim.crash("a")
            sim.crash("b")
            a, b = await sim.start("a", "b", ready=False)
            await sim.run_for(20)
            assert a.membership.cluster is None
            assert b.membership.cluster is None
            sim.network.unclog("c")
            await sim.run_for(10)
            assert a.ready
            assert b.ready
            assert a.membership.cluster == b.membership.cluster == cluster
            assert a.map("flags").get("k") == 1

    sim_run(main)


def test_bootstrap_expect_is_checked() -> None:
    network = MemoryNetwork()
    with pytest.raises(ValueError, match="at least 1"):
        Node("a", network.transport("a"), bootstrap_expect=0)
    with pytest.raises(ValueError, match="not both"):
        Node("b", network.transport("b"), bootstrap_expect=3, bootstrap=True)


# -- duplicate node ids ----------------------------------------------------------------


class Twin(Transport):
    """A node's view of a network where two processes share node id ``twin``: the
    second runs on the network as ``alias`` and is seen, and sent to, as ``twin``.

    The harshest model for the Node's own rule, with no transport to help: messages
    of both processes arrive interleaved under one name, and everything sent to the
    name reaches both (TcpTransport keeps one link per name, and refuses a second
    process outright while the first one's link is up).
    """

    def __init__(self, inner: MemoryTransport, node_id: str, twin: str, alias: str) -> None:
        self._inner, self._node_id = inner, node_id
        self._twin, self._alias = twin, alias

    def _name(self, peer: str) -> str:
        return self._twin if peer == self._alias else peer

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def seeded(self) -> bool:
        return True

    @property
    def max_message_bytes(self) -> int:
        return self._inner.max_message_bytes

    def peers(self) -> frozenset[str]:
        return frozenset(
            self._name(p) for p in self._inner.peers() if self._name(p) != self.node_id
        )

    def send(self, peer: str, data: bytes) -> bool:
        sent = False
        for real in self._inner.peers():
            if self._name(real) == peer and real != self._inner.node_id:
                sent = self._inner.send(real, data) or sent
        return sent

    async def receive(self) -> Event:
        while True:
            event = await self._inner.receive()
            name = self._name(event.peer)
            if name == self.node_id:
                continue  # the twin hears of itself: not a peer
            if isinstance(event, Received):
                return Received(name, event.data)
            return PeerUp(name) if isinstance(event, PeerUp) else PeerDown(name)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._inner.serve(task_status=task_status)


async def _host(node: Node, *, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
    with trio.CancelScope() as scope:
        async with node:
            task_status.started(scope)
            await trio.sleep_forever()


class TwinCluster:
    """a, b and c, then a second process "b" (on the network as b~2)."""

    def __init__(self, nursery: trio.Nursery, seed: int) -> None:
        self.network = SeededNetwork(seed)
        self.nursery = nursery
        self.nodes: dict[str, Node] = {}
        self.scopes: dict[str, trio.CancelScope] = {}

    async def start(self, real: str, **options: Any) -> Node:
        name = "b" if real == "b~2" else real
        transport = Twin(self.network.transport(real), name, "b", "b~2")
        node = Node(name, transport, incarnation=self.network.incarnation(real), **options)
        self.scopes[real] = await self.nursery.start(_host, node)
        self.nodes[real] = node
        return node

    def crash(self, real: str) -> None:
        self.network.crash(real)
        self.scopes.pop(real).cancel()
        del self.nodes[real]


async def _until(condition: Any, timeout: float) -> float:
    start = trio.current_time()
    while not condition():
        if trio.current_time() - start > timeout:
            raise TimeoutError(f"not within {timeout} s")
        await trio.sleep(0.05)
    return trio.current_time() - start


def test_a_second_process_with_a_members_node_id_is_refused_until_the_first_stops(
    sim_run: Any, caplog: Any
) -> None:
    measured: dict[str, float] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            cluster = TwinCluster(nursery, seed=21)
            a = await cluster.start("a", bootstrap_expect=3)
            b1 = await cluster.start("b", bootstrap_expect=3)
            c = await cluster.start("c", bootstrap_expect=3)
            await _until(lambda: a.ready and b1.ready and c.ready, 10)
            b1.map("flags").set("new-checkout", True)
            a.map("flags").set("from-a", 1)
            await trio.sleep(1)
            first = b1.incarnation

            b2 = await cluster.start("b~2", bootstrap_expect=3)
            not_ready_b1 = 0
            for _ in range(200):  # 20 s with both up
                await trio.sleep(0.1)
                not_ready_b1 += not b1.ready
                for node in (a, c):
                    assert node.membership.member_of_name("b") == f"b/{first}"
                    assert node.ready
                assert b1.admitted
                assert b1.incarnation == first
                assert not b2.admitted
            assert not_ready_b1 == 0  # the running node was never disturbed
            assert b1.stats.state_drops == 0
            reason = b2.not_ready_reason() or ""
            assert f"node id b is taken by the member b/{first}" in reason
            assert "a second process running with --node-id b?" in reason
            # Writes keep flowing between the members, state intact.
            b1.map("flags").set("during", 2)
            c.map("flags").set("from-c", 3)
            await trio.sleep(1)
            for node in (a, b1, c):
                assert dict(node.map("flags").items()) == {
                    "new-checkout": True,
                    "from-a": 1,
                    "during": 2,
                    "from-c": 3,
                }

            # The first process dies (kill -9): the second is admitted once the
            # first has been silent for failure_timeout_s, within a few seconds.
            cluster.crash("b")
            measured["admitted after"] = await _until(lambda: b2.ready, 10)
            assert a.membership.member_of_name("b") == f"b/{b2.incarnation}"
            assert dict(b2.map("flags").items())["during"] == 2
            nursery.cancel_scope.cancel()

    with caplog.at_level(logging.WARNING, logger="chorus.node"):
        sim_run(main)
    # The failure timeout (3 s) after the last heartbeat, plus a heartbeat or two.
    assert 2.0 <= measured["admitted after"] <= 5.0, measured
    refusing = [r for r in caplog.records if "refusing its new incarnation" in r.getMessage()]
    assert 1 <= len(refusing) <= 2  # once per member that refuses it (a and c)
    waiting = [r for r in caplog.records if "waiting to be admitted" in r.getMessage()]
    assert len(waiting) == 1


def test_a_restart_after_a_crash_is_admitted_once_the_old_incarnation_is_silent(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with Simulation(SeededNetwork(5), bootstrap_expect=3) as sim:
            await sim.start("a", "b", "c")
            sim.node("b").map("flags").set("k", 1)
            await sim.run_for(1)
            old = sim.node("b").incarnation
            sim.crash("b")  # kill -9, restarted at once
            started = trio.current_time()
            (b,) = await sim.start("b", ready=False)
            await sim.run_for(1)
            assert not b.ready  # the old one was heard under 3 s ago
            assert f"taken by the member b/{old}" in (b.not_ready_reason() or "")
            assert await b.wait_synced(10)
            while not b.ready:
                await sim.run_for(0.05)
            took = trio.current_time() - started
            assert 2.0 <= took <= 5.0, took
            assert b.map("flags").get("k") == 1
            # A graceful stop leaves: the restart is admitted at once.
            assert await b.drain() == 0
            sim.crash("b")
            started = trio.current_time()
            (b,) = await sim.start("b")
            assert trio.current_time() - started < 1.0

    sim_run(main)


def test_a_paused_member_replaced_meanwhile_comes_back_and_nothing_diverges(
    sim_run: Any,
) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            cluster = TwinCluster(nursery, seed=8)
            a = await cluster.start("a", bootstrap_expect=3)
            b1 = await cluster.start("b", bootstrap_expect=3)
            c = await cluster.start("c", bootstrap_expect=3)
            await _until(lambda: a.ready and b1.ready and c.ready, 10)
            b1.map("flags").set("before", 1)
            assert await b1.wait_replicated(2)
            # b1 is paused (SIGSTOP: silent, not gone), and a second b starts.
            cluster.network.clog("b")
            b2 = await cluster.start("b~2", bootstrap_expect=3)
            await _until(lambda: b2.ready, 10)  # b1 silent: b2 replaces it
            b2.map("flags").set("by-b2", 2)
            await trio.sleep(1)
            cluster.network.unclog("b")  # b1 resumes
            await _until(lambda: b1.stats.state_drops == 1, 10)  # it learns it was replaced
            await trio.sleep(10)
            for node in (a, c, b2):
                assert node.membership.member_of_name("b") == f"b/{b2.incarnation}"
                assert node.ready
                assert dict(node.map("flags").items()) == {"before": 1, "by-b2": 2}
            assert not b1.admitted  # now the second process: refused while b2 is heard
            assert "taken by the member" in (b1.not_ready_reason() or "")
            assert b1.stats.writes_lost == 0
            nursery.cancel_scope.cancel()

    sim_run(main)


def test_two_live_processes_of_one_id_on_non_transitive_links_lose_no_replicated_write(
    sim_run: Any,
) -> None:
    """The rule's known limit: b1 reaches only c, b2 only a. Each member hears only
    one of them, so each admits its own (a member never heard by this node counts
    as silent failure_timeout_s after it learned of it) and they replace each other
    in turn. What must hold meanwhile: members never diverge for good, and a write
    a peer acknowledged (wait_replicated) is never lost."""
    flaps: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            cluster = TwinCluster(nursery, seed=13)
            a = await cluster.start("a", bootstrap_expect=3)
            b1 = await cluster.start("b", bootstrap_expect=3)
            c = await cluster.start("c", bootstrap_expect=3)
            await _until(lambda: a.ready and b1.ready and c.ready, 10)
            cluster.network.set_link("a", "b", loss=1.0)
            b2 = await cluster.start("b~2", bootstrap_expect=3)
            cluster.network.set_link("c", "b~2", loss=1.0)
            acknowledged: dict[str, int] = {}
            for i in range(60):  # a minute of writes through whichever b is ready
                for label, node in (("a", a), ("c", c), ("b1", b1), ("b2", b2)):
                    key = f"{label}-{i}"
                    if node.ready:
                        node.map("flags").set(key, i)
                        if await node.wait_replicated(0.5):
                            acknowledged[key] = i
                await trio.sleep(0.5)
            flaps.append(b1.stats.state_drops + b2.stats.state_drops)
            cluster.network.set_link("a", "b", loss=0.0)
            cluster.network.set_link("c", "b~2", loss=0.0)
            cluster.crash("b~2")  # the operator stops the second process
            await _until(lambda: b1.ready, 20)
            await trio.sleep(5)
            states = [n.state() for n in (a, b1, c)]
            assert states[0] == states[1] == states[2]  # converged
            held = dict(a.map("flags").items())
            assert {k: v for k, v in acknowledged.items() if held.get(k) != v} == {}
            assert len(acknowledged) > 60
            nursery.cancel_scope.cancel()

    sim_run(main)
    print(f"non-transitive duplicate: {flaps[0]} state drops in 60 s")
