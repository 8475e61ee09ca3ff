"""The window in which nodes disagree on a key's owner (`Node.call_owner`), measured
in the simulator (`transport.scenarios.ownership_window`): the bounds the README
states, with the default heartbeat (0.5 s) and failure timeout (3 s)."""

from typing import Any

import pytest

from transport.scenarios import ownership_window
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(120)
SEEDS = (1, 2, 3, 4, 5)


@pytest.mark.parametrize("case", ["crash", "stop", "serve"])
def test_a_crash_with_its_links_dropping_a_stop_or_a_new_service_agree_within_hops(
    case: str,
) -> None:
    for seed in SEEDS:
        window = ownership_window(case, seed)
        assert window.agreed_s <= 0.05, window  # a message or two, 1-5 ms each


def test_a_new_process_is_counted_within_hops_not_a_heartbeat() -> None:
    for seed in SEEDS:
        window = ownership_window("start", seed)
        assert window.agreed_s <= 0.1, window
        assert window.two_owners_s <= 0.05, window


def test_a_silent_host_is_counted_out_after_the_failure_timeout() -> None:
    for seed in SEEDS:
        window = ownership_window("silent", seed)
        # Silent for 3 s, noticed at the next heartbeat tick (0.5 s +-10%).
        assert 2.4 <= window.agreed_s <= 3.6, window
        # The survivors notice at their own ticks: they name different owners for
        # at most about one heartbeat interval, never two each naming itself.
        assert window.spread_s <= 0.6, window
        assert window.two_owners_s == 0, window


def test_a_cut_off_node_that_runs_on_names_itself_owner_of_every_key(sim_run: Any) -> None:
    async def handler(caller: str, payload: Any) -> Any:
        return payload

    async def main() -> None:
        async with Simulation(seed=1) as sim:
            await sim.start("a", "b", "c")
            for name in ("a", "b", "c"):
                sim.node(name).serve("w", handler)
            await sim.run_for(3)
            sim.network.clog("c")
            await sim.run_for(4)
            # Both sides elect owners among the nodes they hear: for as long as the
            # cut lasts, every key has an owner on each side.
            assert sim.node("c").serving("w") == {"c"}
            assert sim.node("a").serving("w") == {"a", "b"}
            owner = sim.node("a").owner_of("k", "w")
            assert sim.node("c").owner_of("k", "w") == "c" != owner
            sim.network.heal()
            await sim.run_for(2)
            assert {sim.node(n).owner_of("k", "w") for n in ("a", "b", "c")} == {
                sim.node("a").owner_of("k", "w")
            }

    sim_run(main)


def test_an_unknown_case_is_refused() -> None:
    with pytest.raises(ValueError, match="case is one of"):
        ownership_window("reboot")
