"""Hypothesis profiles: ``ci`` (bounded, the default) and ``deep`` (long local runs).

Choose with ``HYPOTHESIS_PROFILE=deep``. The ``ci`` profile keeps the whole suite
well inside CI's budget on 2 cores; ``deep`` is for hunting rare interleavings.
"""

import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    # The same examples on every run: CI passes or fails for the code, not the draw.
    # Random exploration is the deep profile's job (and each failure it finds becomes
    # a test of its own).
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep",
    max_examples=5000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def sim_run() -> Callable[..., Any]:
    """Run an async function under trio's MockClock with autojump (simulated time)."""

    def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))

    return run
