"""A wall clock stepped (as NTP does) forward and back, with writes during the step.

Simulated under trio's MockClock, so hours pass in a fraction of a second. Each
scenario asserts that the cluster converges to one state on every node, which writes
survive, and what the stepped node reports (``stats.clock_steps``,
``last_clock_step``, ``not_ready_reason``).

What this guards (before the node noticed steps, a node cut off from its peers
whose clock stepped an hour ahead and back stamped its writes an hour in the future:
its peers held them back, three keys stayed divergent for 3,580 s, and the others'
later writes to those keys were refused for that hour; past ``max_hold_ms`` (2 h)
the others' later writes were accepted and then lost to the older writes once they
surfaced. A node still connected refused its writes during the step, and then for
an hour after it, its hybrid clock having followed the step).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

from transport import WriteRefused
from transport._wire import Heartbeat, encode_heartbeat
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(120)
HOUR_MS = 3_600_000
KEYS = ("k0", "k1", "k2")
MAX_OFFSET_MS = 500  # Node's default


def values(sim: Simulation, name: str) -> dict[Any, Any]:
    return dict(sim.node(name).map("m").items())


def lead_ms(sim: Simulation, name: str) -> int:
    """How far a node's hybrid clock runs ahead of its wall clock, in ms."""
    node = sim.node(name)
    return node.clock.last.wall_ms - node.wall_ms()


# Two seeds: with 121 a heartbeat reaches c after its clock stepped back and before
# c reads it (the step back was once taken for peers agreeing with the step ahead).
@pytest.mark.parametrize("seed", [120, 121])
@pytest.mark.parametrize("cut_off", [False, True], ids=["connected", "cut-off"])
@pytest.mark.parametrize(
    "step_ms",
    [HOUR_MS, 2 * HOUR_MS, -HOUR_MS],
    ids=["ahead-1h-and-back", "ahead-2h-and-back", "back-1h-and-forward"],
)
def test_a_clock_step_and_back_leaves_no_write_in_the_future(
    sim_run: Any, caplog: Any, step_ms: int, cut_off: bool, seed: int
) -> None:
    """c's wall clock steps by ``step_ms`` for a minute, c writes three keys meanwhile,
    then the clock steps back. Its writes are stamped with the time it kept before
    the step, so they survive everywhere, b's later writes to two of those keys win
    as they would have, and the cluster converges within seconds of the heal."""
    steps = []

    async def main() -> None:
        async with Simulation(seed=seed) as sim:
            await sim.start("a", "b", "c")
            a, b, c = (sim.node(n) for n in "abc")
            for key in KEYS:
                a.map("m").set(key, "before")
            await sim.run_for(2)
            if cut_off:
                sim.network.partition({"a", "b"}, {"c"})
                await sim.run_for(5)  # a and b are down, as c sees them
            sim.set_skew("c", step_ms)
            if not cut_off:
                # Its peers' heartbeats from before the step cannot tell which
                # clock is right: it waits for the next one (at most 0.5 s).
                assert "waiting for a heartbeat" in (c.not_ready_reason() or "")
            await sim.run_for(1)
            assert c.stats.clock_steps == 1
            step = c.last_clock_step
            assert step is not None
            assert abs(step.by_ms - step_ms) <= 5
            assert step.direction == ("forward" if step_ms > 0 else "back")
            steps.append(step)
            for key in KEYS:
                assert c.ready, c.not_ready_reason()
                c.map("m").set(key, "during the step")  # taken, not refused
                # ...and stamped with the time c kept, not with the stepped clock.
                written = c.state().timestamp(("m", key))
                assert written is not None
                assert abs(written.wall_ms - a.wall_ms()) < MAX_OFFSET_MS
                await sim.run_for(20)
            assert lead_ms(sim, "c") < MAX_OFFSET_MS  # its hybrid clock never followed
            sim.set_skew("c", 0)
            await sim.run_for(1)
            assert c.stats.clock_steps == 2
            assert c.last_clock_step is not None
            assert abs(c.last_clock_step.by_ms + step_ms) <= 5
            assert c.unconfirmed_step_ms == 0  # undone: nothing left to confirm
            if cut_off:
                sim.network.heal()
                await sim.run_for(5)
            assert c.ready, c.not_ready_reason()
            for key in KEYS[:2]:
                b.map("m").set(key, "later, from b")  # neither refused nor lost
            settled = await sim.settle(30)
            assert settled is not None
            expected = {"k0": "later, from b", "k1": "later, from b", "k2": "during the step"}
            for name in sim.live:
                assert values(sim, name) == expected
                assert lead_ms(sim, name) < 2 * MAX_OFFSET_MS
                node = sim.node(name)
                assert (node.held, node.stats.held_back, node.stats.held_dropped) == (0, 0, 0)
            assert sim.converged()

    with caplog.at_level(logging.WARNING, logger="chorus.node"):
        sim_run(main)
    (step,) = steps
    assert f"wall clock stepped {step.by_ms:+d} ms ({step.direction})" in caplog.text


def test_a_fast_clock_set_right_is_fenced_until_real_time_catches_up(sim_run: Any) -> None:
    """A clock 10 minutes fast from the start, then set right by NTP: its peers'
    clocks confirm the step, so the node adopts it, and its hybrid clock, which
    followed the fast clock, is left 10 minutes ahead: it refuses writes until real
    time catches up or it restarts, and says why. The nodes it admits meanwhile are
    not dragged along (a restarted node once took a write floor 10 minutes ahead
    from it and refused every write while reporting ready)."""

    async def main() -> None:
        async with Simulation(seed=121, skew_ms={"c": 600_000}) as sim:
            await sim.start("a", "b")
            (c,) = await sim.start("c", ready=False)
            await sim.run_for(3)
            assert "off its peers' median" in (c.not_ready_reason() or "")
            assert c.stats.clock_steps == 0  # fast from the start: no step
            sim.set_skew("c", 0)  # NTP steps it back
            await sim.run_for(1)
            assert c.stats.clock_steps == 1
            assert c.unconfirmed_step_ms == 0  # the others' clocks agree: adopted
            assert lead_ms(sim, "c") > 590_000
            reason = c.not_ready_reason() or ""
            assert "hybrid clock is" in reason
            assert c.last_clock_step is not None
            assert f"stepped {c.last_clock_step.by_ms:+d} ms" in reason
            with pytest.raises(WriteRefused, match="hybrid clock"):
                c.map("m").set("k", 1)
            for i in range(4):  # whichever member admits it, b takes writes at once
                b = await sim.restart("b")
                assert b.ready, b.not_ready_reason()
                b.map("m").set("k", f"from b, run {i}")
                assert lead_ms(sim, "b") < 2 * MAX_OFFSET_MS
            await sim.run_for(600)  # real time catches up with c's hybrid clock
            assert c.ready, c.not_ready_reason()
            c.map("m").set("k", "from c")
            assert await sim.settle(10) is not None
            assert all(values(sim, n) == {"k": "from c"} for n in sim.live)

    sim_run(main)


def test_a_slow_clock_set_right_is_adopted_at_once(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=122, skew_ms={"c": -10_000}) as sim:
            await sim.start("a", "b")
            (c,) = await sim.start("c", ready=False)
            await sim.run_for(3)
            assert not c.ready
            sim.set_skew("c", 0)
            await sim.run_for(1)
            assert c.stats.clock_steps == 1
            assert c.unconfirmed_step_ms == 0
            assert c.ready, c.not_ready_reason()
            c.map("m").set("k", "from c")
            written = c.state().timestamp(("m", "k"))
            assert written is not None
            assert abs(written.wall_ms - sim.node("a").wall_ms()) < MAX_OFFSET_MS
            assert await sim.settle(10) is not None

    sim_run(main)


def test_a_node_alone_keeps_its_time_through_a_step(sim_run: Any) -> None:
    """With no peer to ask, a node keeps the time it had (its wall clock minus the
    step) until a peer's heartbeat confirms the step; here the step is undone first."""

    async def main() -> None:
        async with Simulation(seed=123) as sim:
            (a,) = await sim.start("a")
            before = a.wall_ms()
            sim.set_skew("a", HOUR_MS)
            await sim.run_for(10)
            assert a.ready, a.not_ready_reason()
            assert abs(a.unconfirmed_step_ms - HOUR_MS) <= 5
            assert abs(a.wall_ms() - (before + 10_000)) <= 5
            a.map("m").set("k", "during the step")
            written = a.state().timestamp(("m", "k"))
            assert written is not None
            assert abs(written.wall_ms - (before + 10_000)) <= 5
            sim.set_skew("a", 0)
            await sim.run_for(1)
            assert a.unconfirmed_step_ms == 0
            assert a.stats.clock_steps == 2
            assert lead_ms(sim, "a") < MAX_OFFSET_MS
            assert a.ready

    sim_run(main)


def test_a_clock_stepped_back_and_forward_on_two_nodes_at_once(sim_run: Any) -> None:
    """A bad time source steps two of three clocks back an hour: the majority's clocks
    agree with the step, so both adopt it; a, alone against them, is the one fenced.
    Once the source is fixed and both step forward again, every node is ready."""

    async def main() -> None:
        async with Simulation(seed=124) as sim:
            await sim.start("a", "b", "c")
            a = sim.node("a")
            sim.set_skew("b", -HOUR_MS)
            sim.set_skew("c", -HOUR_MS)
            await sim.run_for(2)
            assert "off its peers' median" in (a.not_ready_reason() or "")
            sim.set_skew("b", 0)
            sim.set_skew("c", 0)
            await sim.run_for(2)
            for name in sim.live:
                node = sim.node(name)
                assert node.unconfirmed_step_ms == 0
                assert node.ready, node.not_ready_reason()
                node.map("m").set(name, "after")
            assert await sim.settle(10) is not None

    sim_run(main)


def test_in_a_two_node_cluster_a_step_fences_neither_node(sim_run: Any) -> None:
    """c's wall clock steps an hour ahead. Its heartbeats carry the time it keeps
    (and the step apart), so b's median is not pulled an hour ahead: b stays ready,
    and c, whose step b's wall clock does not confirm, keeps its time and stays
    ready. (With the raw wall clock in heartbeats, b was fenced instead of c.)"""

    async def main() -> None:
        async with Simulation(seed=125) as sim:
            b, c = await sim.start("b", "c")
            sim.set_skew("c", HOUR_MS)
            await sim.run_for(5)
            assert abs(c.unconfirmed_step_ms - HOUR_MS) <= 5
            assert b.ready, b.not_ready_reason()
            assert c.ready, c.not_ready_reason()
            assert abs(b.clock_offset_ms() or 0) < MAX_OFFSET_MS
            b.map("m").set("k", "from b")
            c.map("m").set("j", "from c")
            assert await sim.settle(10) is not None
            assert lead_ms(sim, "c") < MAX_OFFSET_MS

    sim_run(main)


def _heartbeat_from_outside(wall_ms: int, step_ms: int = 0) -> bytes:
    """A heartbeat of a node of another (younger) cluster: never a member here."""
    return encode_heartbeat(
        Heartbeat(
            incarnation="0badc0de",
            synced=True,
            cluster="9" * 20,  # younger than any cluster founded in the simulation
            membership=b"\0" * 8,
            epoch=b"\0" * 8,
            clock=(0, 0),
            wall_ms=wall_ms,
            root=(0, 0),
            floor=(0, 0),
            step_ms=step_ms,
        )
    )


def test_heartbeats_from_non_members_move_no_clock_median(sim_run: Any) -> None:
    """Four senders that are not members (they claim another cluster) send heartbeats
    whose clocks read an hour ahead, then whose wall clocks do. They are heard (alive),
    but only members' clocks count: every node stays ready, and c's step of an hour,
    which only they agree with, is not adopted. (They once fenced all three nodes, and
    made c adopt the step and stamp its writes an hour ahead while a and b were fenced.)"""

    async def main() -> None:
        async with Simulation(seed=126) as sim:
            nodes = await sim.start("a", "b", "c")
            a, c = sim.node("a"), sim.node("c")
            outsiders = [sim.network.transport(f"x{i}") for i in range(4)]
            lie = {"wall": HOUR_MS, "step": 0}

            async def chatter() -> None:
                while True:
                    for outsider in outsiders:
                        for node in nodes:
                            beat = _heartbeat_from_outside(a.wall_ms() + lie["wall"], lie["step"])
                            outsider.send(node.node_id, beat)
                    await trio.sleep(0.5)

            async def discard(outsider: Any) -> None:
                while True:
                    await outsider.receive()

            async with trio.open_nursery() as nursery:
                for outsider in outsiders:
                    nursery.start_soon(discard, outsider)
                nursery.start_soon(chatter)
                await sim.run_for(3)
                for node in nodes:
                    assert {"x0", "x1", "x2", "x3"} <= node.members()  # heard, alive
                    assert node.ready, node.not_ready_reason()
                    assert abs(node.clock_offset_ms() or 0) < MAX_OFFSET_MS
                a.map("m").set("k", "from a")

                lie["wall"], lie["step"] = 0, HOUR_MS  # their wall clocks an hour ahead
                sim.set_skew("c", HOUR_MS)
                await sim.run_for(3)
                assert abs(c.unconfirmed_step_ms - HOUR_MS) <= 5  # not adopted
                assert lead_ms(sim, "c") < MAX_OFFSET_MS
                assert abs(c.wall_ms() - a.wall_ms()) < MAX_OFFSET_MS
                for node in nodes:
                    assert node.ready, node.not_ready_reason()
                c.map("m").set("j", "from c")
                written = c.state().timestamp(("m", "j"))
                assert written is not None
                assert abs(written.wall_ms - a.wall_ms()) < MAX_OFFSET_MS
                sim.set_skew("c", 0)
                assert await sim.settle(10) is not None
                nursery.cancel_scope.cancel()

    sim_run(main)


def test_a_minority_cut_off_does_not_confirm_its_own_step(sim_run: Any) -> None:
    """Five nodes split {a, b} | {c, d, e}; a's and b's clocks both step an hour ahead
    while cut off (say a local time source gone wrong). They agree with each other,
    but two clocks of five members are no majority: both keep their time and stay
    ready, a's write is stamped in real time, and c's write ten seconds later wins
    everywhere after the heal. (They once confirmed each other's step: a's write,
    stamped an hour ahead, beat c's, c's writes to the key were refused for the hour
    after the heal, and a and b were fenced for as long.)"""

    async def main() -> None:
        async with Simulation(seed=127) as sim:
            await sim.start("a", "b", "c", "d", "e")
            a, b, c = (sim.node(n) for n in "abc")
            sim.network.partition({"a", "b"}, {"c", "d", "e"})
            await sim.run_for(5)
            sim.set_skew("a", HOUR_MS)
            sim.set_skew("b", HOUR_MS)
            await sim.run_for(3)
            for node in (a, b):
                assert abs(node.unconfirmed_step_ms - HOUR_MS) <= 5
                assert abs(node.wall_ms() - c.wall_ms()) < MAX_OFFSET_MS
                assert lead_ms(sim, node.node_id) < MAX_OFFSET_MS
                assert node.ready, node.not_ready_reason()
            a.map("m").set("k", "from a")
            await sim.run_for(10)
            c.map("m").set("k", "from c, 10 s later")
            await sim.run_for(5)
            sim.set_skew("a", 0)
            sim.set_skew("b", 0)
            sim.network.heal()
            await sim.run_for(10)
            for name in sim.live:
                node = sim.node(name)
                assert node.unconfirmed_step_ms == 0
                assert node.ready, node.not_ready_reason()
            assert await sim.settle(10) is not None
            assert all(values(sim, n) == {"k": "from c, 10 s later"} for n in sim.live)
            c.map("m").set("k", "from c, after the heal")  # not refused
            assert await sim.settle(10) is not None

    sim_run(main)


@pytest.mark.parametrize("cut_off", [False, True], ids=["connected", "cut-off"])
@pytest.mark.parametrize("step_ms", [60_000, -60_000], ids=["ahead", "back"])
def test_a_step_slewed_back_is_over_and_the_clock_kept_real_time(
    sim_run: Any, step_ms: int, cut_off: bool
) -> None:
    """c's wall clock steps a minute (``date -s``: noticed, kept), then NTP slews it
    back at 82 ms/s, too slowly to be a step. c's clock runs on from its last
    reading before the step meanwhile, so it keeps real time throughout, and the
    step is over once the wall clock is back within max_offset_ms. After the heal,
    c's write, made after b's, wins. (c's clock was the wall clock less the step: it
    slid a minute off real time while the node stayed ready, and b's older write won.)"""

    async def main() -> None:
        async with Simulation(seed=128) as sim:
            await sim.start("a", "b", "c")
            a, b, c = (sim.node(n) for n in "abc")
            await sim.run_for(2)
            if cut_off:
                sim.network.partition({"a", "b"}, {"c"})
                await sim.run_for(5)
            sim.set_skew("c", step_ms)
            await sim.run_for(1)
            assert abs(c.unconfirmed_step_ms - step_ms) <= 5
            skew, slew = step_ms, 41 if step_ms > 0 else -41  # ms per 0.5 s
            while skew:
                skew = max(0, skew - slew) if step_ms > 0 else min(0, skew - slew)
                sim.set_skew("c", skew)
                await sim.run_for(0.5)
                assert abs(c.wall_ms() - a.wall_ms()) < MAX_OFFSET_MS  # real time
                assert c.ready, c.not_ready_reason()
                if abs(skew) < MAX_OFFSET_MS - 100:  # back within max_offset_ms a while
                    assert c.unconfirmed_step_ms == 0  # the step is over
                if abs(skew) < 100 * abs(slew) and "k" not in b.map("m"):  # 50 s to go
                    b.map("m").set("k", "from b")
            assert c.stats.clock_steps == 1  # the slew was no step
            c.map("m").set("k", "from c, 50 s later")
            if cut_off:
                sim.network.heal()
            assert await sim.settle(10) is not None
            assert all(values(sim, n) == {"k": "from c, 50 s later"} for n in sim.live)

    sim_run(main)


def test_a_clock_set_right_is_adopted_with_most_members_down(sim_run: Any) -> None:
    """Found by the cluster machine: n2's clock ran a second fast; three of five
    members crash; n2's clock is set right. The only peer left, n1, has no step of
    its own and agrees with n2's wall clock, so n2 adopts the step though two of
    five are no majority (before, n2 kept its fast time and both were fenced)."""

    async def main() -> None:
        async with Simulation(seed=126, skew_ms={"n2": 1001}) as sim:
            await sim.start("n0", "n1", "n2", "n3", "n4", ready=False)
            await sim.run_for(5)
            for name in ("n0", "n3", "n4"):
                sim.crash(name)
            sim.set_skew("n2", 0)
            await sim.run_for(5)
            n1, n2 = sim.node("n1"), sim.node("n2")
            assert n2.unconfirmed_step_ms == 0
            assert n1.ready, n1.not_ready_reason()
            assert n2.ready, n2.not_ready_reason()

    sim_run(main)


@pytest.mark.parametrize(
    ("fast_ms", "other_ms"),
    [(800, -800), (30_000, -30_000), (1502, 502)],
    ids=["fast-and-slow", "far-fast-and-far-slow", "fast-and-less-fast"],
)
def test_clocks_set_right_with_most_members_down_confirm_each_other_when_one_is_fenced(
    sim_run: Any, fast_ms: int, other_ms: int
) -> None:
    """Found by the cluster machine: of four members, n0's clock runs ``fast_ms``
    ahead and n2's ``other_ms``; n1 and n3 crash; then NTP sets both clocks right.
    Each keeps the time it had, so their wall clocks agree and their kept clocks
    do not, and neither could confirm the other's step (each has a step of its
    own, and two of four are no majority): n0, or both, stayed fenced for good
    ("its peers' clocks agree with neither"). Now a node that the kept times fence
    adopts the step its peer's wall clock agrees with, then confirms the other's:
    both take writes again (n0 once real time catches up with its hybrid clock,
    which followed its fast clock)."""

    async def main() -> None:
        async with Simulation(seed=129, skew_ms={"n0": fast_ms, "n2": other_ms}) as sim:
            await sim.start("n0", "n1", "n2", "n3", ready=False)
            await sim.run_for(5)
            sim.crash("n1")
            sim.crash("n3")
            await sim.run_for(1)
            sim.set_skew("n0", 0)
            sim.set_skew("n2", 0)
            await sim.run_for(2)
            n0, n2 = sim.node("n0"), sim.node("n2")
            true_ms = sim.network.wall_clock()
            for node in (n0, n2):
                assert node.stats.clock_steps == 1
                assert node.unconfirmed_step_ms == 0  # adopted
                assert abs(node.wall_ms() - true_ms()) <= 5
            await sim.run_for(fast_ms / 1000 + 1)
            for node in (n0, n2):
                assert node.ready, node.not_ready_reason()
                node.map("m").set(node.node_id, "after")
            assert await sim.settle(10) is not None

    sim_run(main)


def test_a_right_clock_confirms_steps_of_peers_that_stepped_together(sim_run: Any) -> None:
    """Of six members, n2's and n4's clocks run a second fast; n1, n3 and n5 crash,
    so n0, whose clock is right, is the one off the live median; then NTP sets n2
    and n4 right. They keep the same fast time, so they agree with each other and
    n0 stays fenced. n0's clock did not step and agrees with their wall clocks: it
    confirms their steps, though each also hears the other's step (which once
    kept them both from adopting, and n0 fenced for good; found beside the
    cluster machine's case above, and reproduced with its rules)."""

    async def main() -> None:
        names = [f"n{i}" for i in range(6)]
        async with Simulation(seed=131, skew_ms={"n2": 1000, "n4": 1000}) as sim:
            await sim.start(*names, ready=False)
            await sim.run_for(5)
            for name in ("n1", "n3", "n5"):
                sim.crash(name)
            await sim.run_for(1)
            assert "off its peers' median" in (sim.node("n0").not_ready_reason() or "")
            # n2 and n4 hear each other's step first (else whichever heard only n0's
            # heartbeat since its step adopted it, by luck of timing, and the other
            # followed).
            sim.network.partition({"n0"}, {"n2", "n4"})
            sim.set_skew("n2", 0)
            sim.set_skew("n4", 0)
            await sim.run_for(2)
            sim.network.heal()
            await sim.run_for(2)
            for name in sim.live:
                node = sim.node(name)
                assert node.unconfirmed_step_ms == 0
            await sim.run_for(2)  # the hybrid clocks of n2 and n4 ran a second ahead
            for name in sim.live:
                node = sim.node(name)
                assert node.ready, node.not_ready_reason()
                node.map("m").set(name, "after")
            assert await sim.settle(10) is not None

    sim_run(main)


def test_a_minority_whose_clocks_disagreed_does_not_confirm_steps_the_same_way(
    sim_run: Any,
) -> None:
    """The limit of the rule above: {a, b} split from {c, d, e}, a 700 ms fast and b
    right, so the times they keep disagree, yet neither is fenced (two clocks'
    median is their mean); then a time source gone wrong steps both an hour
    ahead. Their wall clocks agree, but each has a step of its own and no kept
    time is off: they do not confirm each other, and keep their times."""

    async def main() -> None:
        async with Simulation(seed=130, skew_ms={"a": 700}) as sim:
            await sim.start("a", "b", "c", "d", "e", ready=False)
            a, b, c = (sim.node(n) for n in "abc")
            sim.network.partition({"a", "b"}, {"c", "d", "e"})
            await sim.run_for(5)
            assert a.ready, a.not_ready_reason()
            assert b.ready, b.not_ready_reason()
            sim.set_skew("a", HOUR_MS)
            sim.set_skew("b", HOUR_MS)
            await sim.run_for(3)
            assert abs(a.unconfirmed_step_ms - (HOUR_MS - 700)) <= 5
            assert abs(b.unconfirmed_step_ms - HOUR_MS) <= 5
            for node in (a, b):
                assert abs(node.wall_ms() - c.wall_ms()) < 1_000  # not an hour ahead
                assert lead_ms(sim, node.node_id) < 1_000
                assert node.ready, node.not_ready_reason()

    sim_run(main)
