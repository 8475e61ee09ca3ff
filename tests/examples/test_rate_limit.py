"""examples/rate_limit.py runs, within the bounds its docstring gives. The recipes'
own tests are in tests/recipes/."""

from typing import Any

import pytest

from examples import rate_limit

pytestmark = pytest.mark.timeout(60)


def test_local_counters_admit_a_little_over_the_limit_and_owner_routing_exactly_it(
    sim_run: Any,
) -> None:
    admitted = sim_run(rate_limit.main)
    # (n - 1) nodes * 1 request/ms * (5 ms latency + 1 ms) at most over the limit.
    assert 100 <= admitted["local"] <= 100 + 2 * 6
    assert admitted["owner-routed"] == 100
