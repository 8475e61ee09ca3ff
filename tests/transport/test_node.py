import logging
from typing import Any, cast

import pytest
import trio

import crdt
from crdt import Key, LWWMap
from hlc import Timestamp
from transport import MemoryNetwork
from transport._wire import Heartbeat, encode_heartbeat
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


def test_writes_reach_every_node(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            for name in sim.live:
                sim.node(name).map("flags").set(f"from-{name}", name)
            start = trio.current_time()
            while not sim.converged():
                await sim.run_for(0.001)
            elapsed_ms = (trio.current_time() - start) * 1000
            assert elapsed_ms <= 10  # one hop: latency is 1-5 ms
            for name in sim.live:
                flags = sim.node(name).map("flags")
                assert dict(flags.items()) == {"from-a": "a", "from-b": "b", "from-c": "c"}
                assert flags.get("missing", 0) == 0

    sim_run(main)


def test_deletes_replicate(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=2) as sim:
            await sim.start("a", "b")
            await sim.run_for(1)
            sim.node("a").map("m").set("k", 1)
            await sim.run_for(0.1)
            sim.node("b").map("m").delete("k")
            await sim.run_for(0.1)
            assert "k" not in sim.node("a").map("m")
            assert sim.converged()

    sim_run(main)


def test_subscribers_hear_local_and_remote_changes_once(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=3) as sim:
            await sim.start("a", "b")
            await sim.run_for(1)
            heard: list[frozenset[Key]] = []
            unsubscribe = sim.node("b").map("m").subscribe(heard.append)
            sim.node("b").map("m").set("local", 1)
            sim.node("a").map("m").set("remote", 2)
            await sim.run_for(1)
            assert heard == [frozenset({"local"}), frozenset({"remote"})]
            unsubscribe()
            sim.node("a").map("m").set("after", 3)
            await sim.run_for(1)
            assert len(heard) == 2

    sim_run(main)


def test_an_update_is_one_delta_one_notification_and_all_or_nothing(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=3) as sim:
            await sim.start("a", "b")
            await sim.run_for(1)
            a, b = sim.node("a"), sim.node("b")
            a.map("m").set("old", 0)
            await sim.run_for(1)
            heard_a: list[frozenset[Key]] = []
            heard_b: list[frozenset[Key]] = []
            a.map("m").subscribe(heard_a.append)
            b.map("m").subscribe(heard_b.append)
            queued = len(a._outbox)
            sets: dict[Key, Any] = {f"k{i}": i for i in range(5000)}  # > the outbox holds
            a.map("m").update(sets, deletes=["old"])
            assert len(a._outbox) == queued + 1
            assert heard_a == [frozenset({*sets, "old"})]
            stamps = [a.map("m").timestamp(k) or Timestamp(0, 0, "") for k in sets]
            assert stamps == sorted(stamps)  # stamped in order
            await sim.run_for(2)
            assert dict(b.map("m").items()) == sets
            assert a.stats.deltas_dropped == 0
            # A key refused (a bad type) refuses the whole update: nothing is written.
            with pytest.raises(TypeError):
                a.map("m").update({"fine": 1, ("bad", cast(Any, 1.5)): 2})
            assert "fine" not in a.map("m")
            with pytest.raises(ValueError, match="max_value_bytes"):
                a.map("m").update({"fine": 1, "huge": "x" * (a.max_value_bytes + 1)})
            assert "fine" not in a.map("m")
            assert len(heard_a) == 1

    sim_run(main)


def test_a_failing_subscriber_does_not_stop_others(sim_run: Any, caplog: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=3) as sim:
            (a,) = await sim.start("a")
            heard: list[Any] = []

            def broken(keys: frozenset[Key]) -> None:
                raise RuntimeError("boom")

            a.map("m").subscribe(broken)
            a.map("m").subscribe(heard.append)
            a.map("m").set("x", 1)
            assert heard == [frozenset({"x"})]

    with caplog.at_level(logging.ERROR, logger="chorus.node"):
        sim_run(main)
    assert "raised" in caplog.text


def test_maps_are_independent_and_open_late(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=4) as sim:
            await sim.start("a", "b")
            await sim.run_for(1)
            sim.node("a").map("flags").set("x", 1)
            sim.node("a").map("cache").set("x", 2)
            await sim.run_for(1)
            b = sim.node("b")
            assert b.map("flags").get("x") == 1  # opened after the data arrived
            assert b.map("cache").get("x") == 2
            with pytest.raises(TypeError):
                b.map("")

    sim_run(main)


def test_partition_conflict_resolves_by_hlc_after_heal(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=5) as sim:
            await sim.start("a", "b", "c", "d", "e")
            await sim.run_for(2)
            sim.network.partition({"a", "b"}, {"c", "d", "e"})
            sim.node("a").map("m").set("k", "left")
            await sim.run_for(0.5)
            sim.node("d").map("m").set("k", "right")  # later: the greater HLC
            await sim.run_for(5)
            assert sim.node("b").map("m").get("k") == "left"
            assert sim.node("c").map("m").get("k") == "right"
            assert sim.divergent_keys() == 1
            sim.network.heal()
            assert await sim.settle(timeout=30) is not None
            assert {sim.node(n).map("m").get("k") for n in sim.live} == {"right"}

    sim_run(main)


def test_anti_entropy_repairs_a_lossy_network(sim_run: Any) -> None:
    async def main() -> None:
        network = MemoryNetwork(seed=6, loss=0.3, duplication=0.1, latency_ms=(1, 30))
        async with Simulation(network) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(3)
            for i in range(200):
                sim.node("abc"[i % 3]).map("m").set(i, i * i)
            assert await sim.settle(timeout=60) is not None
            assert len(sim.node("b").map("m")) == 200

    sim_run(main)


def test_first_node_is_synced_at_once_and_a_joiner_after_pulling(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=7) as sim:
            (a,) = await sim.start("a")
            assert await a.wait_synced(0)
            for i in range(500):
                a.map("m").set(i, "v" * 50)
            (b,) = await sim.start("b", ready=False)
            assert not b.synced
            assert await b.wait_synced(10)
            assert len(b.map("m")) == 500
            assert b.state() == a.state()

    sim_run(main)


def test_joiner_pulls_in_messages_under_the_limit(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=8, max_message_bytes=4096) as sim:
            (a,) = await sim.start("a")
            for i in range(2_000):
                a.map("m").set(f"key:{i}", "v" * 20)
            await sim.run_for(1)
            (b,) = await sim.start("b")
            assert await b.wait_synced(10)
            assert len(b.map("m")) == 2_000
            assert sim.network.stats.largest <= 4096

    sim_run(main)


def test_a_bootstrapping_joiner_founds_after_the_timeout_and_gives_way_later(
    sim_run: Any, caplog: Any
) -> None:
    async def main() -> None:
        async with Simulation(seed=9, join_timeout_s=2.0) as sim:
            (a,) = await sim.start("a")
            a.map("m").set("from-a", 1)
            sim.network.clog("b")
            sim.network.clog("c")
            # Without bootstrap, a node with seeds waits for its cluster, not ready.
            (c,) = await sim.start("c", ready=False)
            (b,) = await sim.start("b", ready=False, bootstrap=True)
            assert not await b.wait_synced(1.0)
            assert await b.wait_synced(5.0)  # founded a cluster of its own
            assert not c.synced
            assert c.not_ready_reason() == "not synced with the cluster yet"
            sim.crash("c")
            b.map("m").set("from-b", 2)
            old = b.incarnation
            # When the two clusters meet, the younger one gives way: b drops its state
            # (its write is lost, and counted) and joins a's cluster as a new incarnation.
            sim.network.unclog("b")
            await sim.run_for(5)
            assert b.incarnation != old
            assert b.ready
            assert b.stats.state_drops == 1
            assert b.stats.writes_lost == 1
            assert await sim.settle(10) is not None
            assert dict(b.map("m").items()) == {"from-a": 1}

    with caplog.at_level(logging.WARNING, logger="chorus.node"):
        sim_run(main)
    assert "founding a new cluster: no cluster answered within 2.0 s" in caplog.text
    assert "of the older cluster" in caplog.text


def test_failure_detection_and_restart(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=10, heartbeat_interval_s=0.5, failure_timeout_s=3.0) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            assert sim.node("a").members() == {"a", "b", "c"}
            sim.network.clog("c")  # silent, not disconnected: only heartbeats tell
            await sim.run_for(4)
            assert sim.node("a").members() == {"a", "b"}
            sim.network.unclog("c")
            await sim.run_for(1)
            assert sim.node("a").members() == {"a", "b", "c"}
            old = sim.node("c").incarnation
            c = await sim.restart("c")
            assert c.incarnation != old
            assert await c.wait_synced(10)
            assert sim.node("a").stats.joins >= 2

    sim_run(main)


def test_skewed_clock_delays_but_never_loses_writes(sim_run: Any) -> None:
    async def main() -> None:
        # Each clock is within 500 ms of the median, but "fast" is 800 ms ahead of "a".
        skew = {"a": -400, "b": 0, "fast": 400}
        async with Simulation(seed=11, skew_ms=skew, max_offset_ms=500) as sim:
            await sim.start("a", "b", "fast")
            await sim.run_for(1)
            sim.node("fast").map("m").set("k", "from the future")
            await sim.run_for(0.1)
            assert sim.node("a").map("m").get("k") is None  # held back: 800 ms ahead
            assert sim.node("a").stats.held_back >= 1
            assert sim.node("b").map("m").get("k") == "from the future"
            assert await sim.settle(timeout=10) is not None
            assert sim.node("a").map("m").get("k") == "from the future"
            # a's next write is ordered after what it accepted
            a_ts = sim.node("a").clock.now()
            assert a_ts.wall_ms >= 1_700_000_000_000 + 400

    sim_run(main)


def test_garbage_from_a_peer_is_rejected_and_nothing_is_lost(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=12) as sim:
            await sim.start("a")
            sim.node("a").map("m").set("keep", 1)
            rogue = sim.network.transport("rogue")
            stray = LWWMap()
            stray.set("not-a-pair", 1, Timestamp(1, 0, "x"))
            await sim.run_for(1)
            before = sim.node("a").state()
            import cbor2

            for data in [
                b"\x00garbage",
                cbor2.dumps([2, "map"]),  # unknown version
                cbor2.dumps([1, "gossip", 1]),  # unknown kind
                cbor2.dumps([1, "map", 1, 2]),  # right kind, wrong shape
                cbor2.dumps([1, "sync", "x"]),
                cbor2.dumps([1, "heartbeat", 5, True, 0]),
                encode_heartbeat(
                    Heartbeat("i", True, None, bytes(8), bytes(8), (1, 0), 1, (0, 0), (0, 0))
                )
                + b"\x00",
            ]:
                assert rogue.send("a", data)
            await sim.run_for(1)
            a = sim.node("a")
            assert a.stats.rejected == 7
            assert "rogue" not in a.members()  # garbage is no sign of life
            rogue.send("a", crdt.encode_map(stray))  # well-formed, from a non-member
            await sim.run_for(1)
            assert a.stats.rejected == 7
            assert a.stats.not_members == 1
            assert a.state() == before
            a.map("m").set("still", "serving")
            assert a.map("m").get("still") == "serving"

    sim_run(main)


def test_full_outbox_drops_deltas_and_anti_entropy_repairs(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=13, outbox_size=10, sync_interval_s=0.5) as sim:
            await sim.start("a", "b")
            await sim.run_for(1)
            for i in range(100):  # no await: the broadcaster cannot run meanwhile
                sim.node("a").map("m").set(i, i)
            assert sim.node("a").stats.deltas_dropped == 90
            assert await sim.settle(timeout=10) is not None
            assert len(sim.node("b").map("m")) == 100

    sim_run(main)


def test_oversized_values_are_refused(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=14, max_value_bytes=100) as sim:
            (a,) = await sim.start("a")
            with pytest.raises(ValueError, match="max_value_bytes"):
                a.map("m").set("big", "x" * 200)
            assert "big" not in a.map("m")
            assert a.state() == type(a.state())()

    sim_run(main)


def test_writes_need_a_running_node() -> None:
    from transport import Node

    node = Node("a", MemoryNetwork().transport("a"))
    with pytest.raises(RuntimeError, match="not running"):
        node.map("m").set("x", 1)


def test_transport_must_match_node_id() -> None:
    from transport import Node

    with pytest.raises(ValueError, match="transport is for"):
        Node("a", MemoryNetwork().transport("b"))


def test_rolling_restart_loses_nothing(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=15) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            written: dict[str, int] = {}
            for round_ in range(3):
                for name in ["a", "b", "c"]:
                    for i in range(20):
                        key = f"{name}-{round_}-{i}"
                        sim.node(sim.live[i % len(sim.live)]).map("flags").set(key, i)
                        written[key] = i
                    await sim.run_for(0.2)
                    node = await sim.restart(name)
                    assert await node.wait_synced(15)
                    assert dict(node.map("flags").items()) == written  # nothing lost
            assert await sim.settle(timeout=10) is not None

    sim_run(main)


def test_a_lagging_clock_still_orders_its_write_after_what_it_saw(sim_run: Any) -> None:
    # keathley/groot merges without the HLC receive rule: a node whose clock lags
    # writes "before" the value it has just read, and its write silently loses.
    async def main() -> None:
        async with Simulation(seed=16, skew_ms={"slow": -300}) as sim:
            await sim.start("fast", "slow")
            await sim.run_for(1)
            sim.node("fast").map("m").set("k", "first")
            await sim.run_for(0.01)
            assert sim.node("slow").map("m").get("k") == "first"
            sim.node("slow").map("m").set("k", "second")  # 300 ms behind on its wall clock
            await sim.run_for(0.5)
            assert {sim.node(n).map("m").get("k") for n in sim.live} == {"second"}

    sim_run(main)


def test_two_joiners_do_not_sync_from_each_other(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=17) as sim:
            (a,) = await sim.start("a")
            for i in range(100):
                a.map("m").set(i, i)
            sim.network.partition({"a"}, {"b", "c"})  # a is unreachable for now
            b, c = await sim.start("b", "c", join_timeout_s=30.0, ready=False)
            await sim.run_for(5)
            assert not b.synced  # b and c are both empty: neither may vouch for the other
            assert not c.synced
            sim.network.heal()
            assert await b.wait_synced(10)
            assert await c.wait_synced(10)
            assert len(b.map("m")) == len(c.map("m")) == 100

    sim_run(main)


def test_a_joiner_receives_the_state_once(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=18) as sim:
            (a,) = await sim.start("a")
            for i in range(3_000):
                a.map("m").set(f"key:{i}", i)
            await sim.run_for(1)
            full = len(crdt.encode_map(a.state()))
            before = sim.network.stats.bytes_by_kind.get("sync", 0)
            (b,) = await sim.start("b")
            assert await b.wait_synced(10)
            await sim.run_for(3)  # and the anti-entropy rounds that follow
            sent = sim.network.stats.bytes_by_kind.get("sync", 0) - before
            assert sent < 1.3 * full  # once, plus digests; not twice

    sim_run(main)


def test_catch_up_of_100k_keys_takes_a_bounded_number_of_messages(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=19) as sim:
            (a,) = await sim.start("a")
            for i in range(100_000):
                a.map("m").set(f"key:{i}", i % 7 == 0)
            await sim.run_for(1)
            full = len(crdt.encode_map(a.state()))
            stats = sim.network.stats
            messages, sent = stats.sent_by_kind.get("sync", 0), stats.bytes_by_kind.get("sync", 0)
            start = trio.current_time()
            (b,) = await sim.start("b")
            assert await b.wait_synced(60)
            assert trio.current_time() - start < 1.0  # simulated: a few round trips
            assert stats.sent_by_kind["sync"] - messages <= 10  # pull, ~4 pages of 1 MiB, digests
            assert stats.bytes_by_kind["sync"] - sent < 1.1 * full
            assert b.state() == a.state()

    sim_run(main)


def test_tombstones_are_collected_once_every_member_converged(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=21, sync_interval_s=1.0, gc_interval_s=1.0) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            sim.node("a").map("m").set("k", 1)
            await sim.run_for(1)
            sim.node("a").map("m").delete("k")
            await sim.run_for(0.1)
            assert all(sim.node(n)._state.tombstone_count == 1 for n in sim.live)
            await sim.run_for(15)  # several sync rounds, then collections
            assert all(sim.node(n)._state.tombstone_count == 0 for n in sim.live)
            assert sum(sim.node(n).stats.tombstones_collected for n in sim.live) == 3
            assert sim.converged()

    sim_run(main)


def test_a_partitioned_member_holds_collection_back_until_the_hard_horizon(sim_run: Any) -> None:
    async def main() -> None:
        options: dict[str, Any] = {
            "sync_interval_s": 1.0,
            "gc_interval_s": 1.0,
            "tombstone_horizon_s": 120.0,
        }
        async with Simulation(seed=22, **options) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            sim.node("a").map("m").set("k", 1)
            await sim.run_for(1)
            sim.network.partition({"a", "b"}, {"c"})
            sim.node("a").map("m").delete("k")
            await sim.run_for(60)
            assert sim.node("a")._state.tombstone_count == 1  # c has not seen it
            assert sim.node("c").map("m").get("k") == 1
            await sim.run_for(70)  # past the hard horizon
            assert sim.node("a")._state.tombstone_count == 0

    sim_run(main)


def test_no_resurrection_after_a_partition_longer_than_the_horizon(sim_run: Any) -> None:
    async def main() -> None:
        options: dict[str, Any] = {
            "sync_interval_s": 1.0,
            "gc_interval_s": 1.0,
            "tombstone_horizon_s": 60.0,
        }
        async with Simulation(seed=23, **options) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            sim.node("a").map("m").set("zombie", "old")
            await sim.run_for(1)
            sim.network.partition({"a", "b"}, {"c"})
            sim.node("a").map("m").delete("zombie")
            await sim.run_for(120)  # a and b collect the tombstone at the hard horizon
            assert sim.node("a")._state.tombstone_count == 0
            assert sim.node("c").map("m").get("zombie") == "old"  # c never saw the delete
            sim.network.heal()
            await sim.run_for(10)
            assert sim.node("c").stats.state_drops == 1  # cut off too long: re-synced
            assert all("zombie" not in sim.node(n).map("m") for n in sim.live)
            assert sim.converged()

    sim_run(main)


def test_the_last_survivor_keeps_its_state_when_peers_restart_empty(sim_run: Any) -> None:
    async def main() -> None:
        options: dict[str, Any] = {"gc_interval_s": 1.0, "tombstone_horizon_s": 30.0}
        async with Simulation(seed=24, **options) as sim:
            await sim.start("a", "b", "c")
            await sim.run_for(2)
            sim.node("a").map("m").set("keep", "me")
            await sim.run_for(1)
            sim.crash("b")
            sim.crash("c")
            await sim.run_for(100)  # a alone for longer than the horizon
            await sim.start("b", "c")
            await sim.run_for(10)
            assert sim.node("a").stats.state_drops == 0
            assert all(sim.node(n).map("m").get("keep") == "me" for n in sim.live)

    sim_run(main)
