"""Behaviours of `Node.call` found while building on it, not fixed here (transport/_calls.py
belongs to its own change): each test is what the docs promise, marked xfail(strict=True)
until the fix lands."""

from typing import Any

import pytest
import trio

from transport import CallTimeout
from transport.simulation import Simulation

pytestmark = pytest.mark.timeout(60)


@pytest.mark.xfail(
    strict=True,
    reason="Calls.call_here enforces timeout_s by cancelling the handler: a handler that "
    "cannot be cancelled (a worker thread, a shielded scope) holds a call to this node's own "
    "service past timeout_s, while the same call from a peer raises CallTimeout on time",
)
def test_a_call_to_this_nodes_own_service_times_out_like_a_remote_one(sim_run: Any) -> None:
    async def main() -> None:
        async with Simulation(seed=1) as sim:
            await sim.start("a", "b")
            await sim.run_for(2)
            a = sim.node("a")

            async def uncancellable(caller: str, payload: Any) -> Any:
                with trio.CancelScope(shield=True):  # as trio.to_thread.run_sync does
                    await trio.sleep(10)
                return "late"

            a.serve("slow", uncancellable)
            started = trio.current_time()
            with pytest.raises(CallTimeout):  # from b: on time
                await sim.node("b").call("a", "slow", timeout_s=1)
            assert trio.current_time() - started < 1.1
            started = trio.current_time()
            with pytest.raises(CallTimeout):  # from a itself: "late", after 10 s
                await a.call("a", "slow", timeout_s=1)
            assert trio.current_time() - started < 1.1

    sim_run(main)
