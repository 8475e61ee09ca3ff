"""examples/cache.py runs, and its stampede computes each key once. The recipe's own
tests are in tests/recipes/."""

import pathlib
import subprocess
import sys
from typing import Any

import pytest

from examples import cache

pytestmark = pytest.mark.timeout(60)
ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_stampede_computes_each_key_once(sim_run: Any) -> None:
    assert sim_run(cache.main, 30) == 30


def test_it_runs_as_a_script() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
    )
    assert result.stdout == "20 cold keys asked by 3 nodes at once: computed 20 times\n"
