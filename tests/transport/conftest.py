from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing


@pytest.fixture
def sim_run() -> Callable[..., Any]:
    """Run an async function under trio's MockClock with autojump."""

    def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))

    return run
