"""The README's examples and the demo script keep working."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_readme_python_blocks_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


@pytest.mark.timeout(60)
def test_demo_converges() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "converge.py")],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "converged: yes" in result.stdout
    assert "repaired ['dark-mode']" in result.stdout
