"""`chorus serve`'s ``/cluster`` and ``/ready`` show a step of the wall clock.

Two nodes run `flags.serve.serve` in this process, over real sockets, with wall
clocks the test steps (``node_options={"wall_ms": ...}``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from flags.serve import ServeConfig, serve
from hlc import system_wall_ms
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(60)
SECRET, TOKEN = "c10c5e7f39a04b6d8e2ec1a55e7f3b4a", "clock-admin-token-5d1e"
STEP_MS = 600_000  # a's clock runs 10 minutes fast until NTP sets it right


def test_cluster_and_ready_show_a_clock_step() -> None:
    fast = {"a": STEP_MS, "b": 0}

    def wall_of(name: str) -> Any:
        return lambda: system_wall_ms() + fast[name]

    def config(name: str, join: tuple[str, ...] = ()) -> ServeConfig:
        return ServeConfig(
            node_id=name,
            listen=f"127.0.0.1:{free_port()}",
            http=f"127.0.0.1:{free_port()}",
            join=join,
            secret=SECRET,
            token=TOKEN,
            node_options={"wall_ms": wall_of(name)},
        )

    async def get(url: str) -> tuple[int, Any]:
        answer = await trio.to_thread.run_sync(lambda: httpx.get(url, timeout=5))
        return answer.status_code, answer.json()

    async def until(url: str, check: Any, timeout: float = 20) -> Any:
        with trio.fail_after(timeout):
            while True:
                status, body = await get(url)
                if check(status, body):
                    return body
                await trio.sleep(0.1)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            gossip, (a,) = await nursery.start(serve, config("a"))
            await until(f"{a}/ready", lambda status, _: status == 200)
            _, (b,) = await nursery.start(serve, config("b", (gossip,)))
            await until(f"{b}/cluster", lambda _, body: body["synced"])
            cluster = (await get(f"{a}/cluster"))[1]
            assert cluster["clock"]["steps"] == 0
            assert cluster["clock"]["last_step"] is None

            fast["a"] = 0  # NTP sets a's clock right: a step back of 10 minutes
            # b's clock agrees with the step, so a adopts it; its hybrid clock, which
            # followed the fast clock, is left 10 minutes ahead.
            cluster = await until(
                f"{a}/cluster",
                lambda _, body: (
                    body["clock"]["steps"] == 1 and body["clock"]["unconfirmed_step_ms"] == 0
                ),
            )
            clock = cluster["clock"]
            assert clock["last_step"]["direction"] == "back"
            assert abs(clock["last_step"]["by_ms"] + STEP_MS) < 100
            assert 0 <= clock["last_step"]["seconds_ago"] < 10
            assert clock["lead_ms"] > STEP_MS - 30_000
            assert cluster["stats"]["clock_steps"] == 1
            status, ready = await get(f"{a}/ready")
            assert status == 503
            assert "hybrid clock is" in ready["reason"]
            assert (
                f"wall clock stepped {clock['last_step']['by_ms']:+d} ms (back)"
                in (ready["reason"])
            )
            assert "until real time catches up" in ready["reason"]
            await until(f"{b}/ready", lambda status, _: status == 200)
            nursery.cancel_scope.cancel()

    trio.run(main)
