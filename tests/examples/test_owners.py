"""examples/owners.py: three real processes route each request id to one owner, and
stopping one moves only its ids."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_ids_keep_their_owner_and_only_the_stopped_nodes_move() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.owners"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=110,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "3 processes up, each serving 'worker'" in out
    assert re.search(r"node-2 stopped \(SIGTERM\); the survivors stopped counting it", out)
    counts = re.search(r"(\d+) of 30 ids were owned by node-2; (\d+) moved", out)
    assert counts is not None, out
    assert counts[1] == counts[2], out
    assert int(counts[1]) > 0, out
    assert "moved from node-2" in out
    assert "moved from node-1" not in out
    assert "moved from node-3" not in out
    assert out.rstrip().endswith("all checks passed")
