"""``chorus demo --keep``: a real process that leaves its cluster running until Ctrl-C."""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.helpers import ROOT, eventually

NODE_LINE = re.compile(r"^\s+(node-\d+)\s+(http://127\.0\.0\.1:\d+/ui/)\s+\(pid (\d+)\)$")
TOKEN_LINE = re.compile(r"^Log in with the admin token: (\S+)$")


def _lines(stream: IO[str], into: "queue.Queue[str | None]") -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)  # end of output


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.timeout(120)
def test_demo_keep_leaves_the_cluster_running_then_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    stderr = (tmp_path / "stderr").open("w")
    demo = subprocess.Popen(
        [sys.executable, "-m", "flags.cli", "demo", "--toggles", "4", "--keep"],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=env,
    )
    assert demo.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_lines, args=(demo.stdout, lines), daemon=True).start()
    nodes: dict[str, tuple[str, int]] = {}
    token = None
    output: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while not output or not output[-1].startswith("Ctrl-C"):
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, "\n".join(output) + (tmp_path / "stderr").read_text()
            output.append(line)
            if node := NODE_LINE.match(line):
                nodes[node[1]] = (node[2], int(node[3]))
            if found := TOKEN_LINE.match(line):
                token = found[1]
        assert "all checks passed" in output
        assert sorted(nodes) == ["node-1", "node-2", "node-3"], output
        assert token is not None, output

        # Each address answers with the UI (its login page, for a browser with no session).
        for url, _ in nodes.values():
            page = httpx.get(url, timeout=5, follow_redirects=True)
            assert page.status_code == 200, (url, page.status_code)
            assert str(page.url).startswith(url), page.url
            assert "Log in" in page.text
        # The token printed is the cluster's admin token: a write with it applies everywhere.
        first, last = (url.removesuffix("/ui/") for url, _ in (nodes["node-1"], nodes["node-3"]))
        written = httpx.put(
            f"{first}/flags/kept",
            json={"enabled": True},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
        assert written.status_code == 200, written.text

        def on_the_last() -> bool:
            answer = httpx.get(f"{last}/flags/kept", timeout=2)
            return answer.status_code == 200 and answer.json()["enabled"] is True

        assert eventually(on_the_last, 10)
        assert demo.poll() is None  # still waiting

        demo.send_signal(signal.SIGINT)  # Ctrl-C, to the demo alone
        assert demo.wait(30) == 0
        rest = []
        while (line := lines.get(timeout=5)) is not None:
            rest.append(line)
        assert "stopped: node-1 exit 0, node-2 exit 0, node-3 exit 0" in rest, rest
        for url, pid in nodes.values():
            assert _gone(pid), f"node process {pid} still there"
            with pytest.raises(httpx.ConnectError):
                httpx.get(url, timeout=2)
    finally:
        if demo.poll() is None:
            demo.terminate()  # the demo stops its nodes
            try:
                demo.wait(20)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait(10)
        for _, pid in nodes.values():  # in their own process groups: not ended with the demo
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        stderr.close()
