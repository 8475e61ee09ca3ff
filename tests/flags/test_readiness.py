"""Readiness never lies, with real ``chorus serve`` processes on 127.0.0.1.

Every node is started the README's way: ``--join`` the other two and
``--bootstrap-expect 3``, the same flags on every start.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, serve_argv

SECRET, TOKEN = "5e1f7ead1e55c0ffee0ddba11ab1e2c3", "readiness-admin-token-3f9a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FLAG = "new-checkout"


class Node:
    """One ``chorus serve`` process, restartable with the same flags."""

    def __init__(self, name: str, tmp: Path, *, label: str | None = None) -> None:
        self.name, self.tmp, self.label = name, tmp, label or name
        self.gossip, self.http = free_port(), free_port()
        self.join: list[int] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"{self.label}.log"

    def start(self) -> None:
        env = {**os.environ, "CHORUS_SECRET": SECRET, "CHORUS_TOKEN": TOKEN}
        with self.log.open("ab") as stderr:
            self.process = subprocess.Popen(
                serve_argv(self.name, self.gossip, self.http, self.join, "--bootstrap-expect", "3"),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def ready(self) -> httpx.Response | None:
        try:
            return httpx.get(self.url + "/ready", timeout=1)
        except httpx.HTTPError:
            return None

    def wait_ready(self, timeout: float = 20) -> float:
        """Seconds until /ready answers 200; raises AssertionError after ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            answer = self.ready()
            if answer is not None and answer.status_code == 200:
                return time.monotonic() - started
            time.sleep(0.02)
        raise AssertionError(f"{self.label} not ready in {timeout} s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(15)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Node]]:
    nodes = [Node(name, tmp_path) for name in ("a", "b", "c")]
    for node in nodes:
        node.join = [other.gossip for other in nodes if other is not node]
    try:
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def _enabled_everywhere(nodes: list[Node]) -> bool:
    return all(
        httpx.get(f"{n.url}/flags/{FLAG}", timeout=2).json().get("enabled") is True for n in nodes
    )


@pytest.mark.timeout(90)
def test_a_duplicate_node_id_is_refused_with_its_reason_and_the_original_stays_ready(
    cluster: list[Node], tmp_path: Path
) -> None:
    a, b, c = cluster
    put = httpx.put(f"{a.url}/flags/{FLAG}", json={"enabled": True}, headers=AUTH, timeout=5)
    assert put.status_code == 200
    deadline = time.monotonic() + 10
    while not _enabled_everywhere(cluster):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    incarnation = httpx.get(f"{b.url}/cluster", timeout=2).json()["incarnation"]

    twin = Node("b", tmp_path, label="b-twin")
    twin.join = [a.gossip, c.gossip]
    twin.start()
    try:
        # While both run: the twin says why it waits; b stays ready and unchanged.
        reason = ""
        not_ready_b = 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            for node in cluster:
                answer = node.ready()
                not_ready_b += answer is None or answer.status_code != 200
            answer = twin.ready()
            if answer is not None:
                assert answer.status_code == 503, answer.text
                reason = answer.json()["reason"]
            time.sleep(0.1)
        assert not_ready_b == 0  # no node of the cluster ever stopped being ready
        assert f"node id b is already taken by a live node at 127.0.0.1:{b.gossip}" in reason
        assert "is a second process running with --node-id b?" in reason
        for node in cluster:
            document = httpx.get(f"{node.url}/cluster", timeout=2).json()
            assert f"b/{incarnation}" in document["membership"]["members"]
            assert document["ready"]
        assert httpx.get(f"{b.url}/cluster", timeout=2).json()["incarnation"] == incarnation
        assert httpx.get(f"{b.url}/flags/{FLAG}", timeout=2).json()["enabled"] is True
        errors = [line for line in twin.tail().splitlines() if "level=ERROR" in line]
        assert len(errors) == 1, errors
        assert "node id b is already taken by a live node" in errors[0]
        assert not [line for line in b.tail().splitlines() if "level=ERROR" in line]

        # The original stops: the twin is admitted, with the cluster's flags.
        assert b.stop() == 0
        twin.wait_ready(timeout=20)
        assert httpx.get(f"{twin.url}/flags/{FLAG}", timeout=2).json()["enabled"] is True
    finally:
        twin.kill()


class Reader(threading.Thread):
    """Polls every node that answers /ready 200 at that moment; counts wrong reads
    (a ready node answering enabled=false for a flag enabled before the restarts)."""

    def __init__(self, nodes: list[Node]) -> None:
        super().__init__(daemon=True)
        self.nodes = nodes
        self.reads = self.wrong = self.unavailable = 0
        self.wrong_detail: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=1.0) as client:
            while not self.stop.is_set():
                for node in self.nodes:
                    try:
                        if client.get(node.url + "/ready").status_code != 200:
                            self.unavailable += 1
                            continue
                        document = client.get(f"{node.url}/flags/{FLAG}").json()
                    except (httpx.HTTPError, ValueError):
                        self.unavailable += 1
                        continue
                    self.reads += 1
                    if document.get("enabled") is not True:
                        self.wrong += 1
                        self.wrong_detail.append(f"{node.name}: {document}")
                time.sleep(0.005)


@pytest.mark.timeout(120)
def test_a_rolling_restart_of_every_node_first_included_gives_no_wrong_read(
    cluster: list[Node],
) -> None:
    a = cluster[0]
    answer = httpx.put(f"{a.url}/flags/{FLAG}", json={"enabled": True}, headers=AUTH, timeout=5)
    assert answer.status_code == 200
    deadline = time.monotonic() + 10
    while not _enabled_everywhere(cluster):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    clusters = {
        httpx.get(f"{n.url}/cluster", timeout=2).json()["membership"]["cluster"] for n in cluster
    }
    reader = Reader(cluster)
    reader.start()
    ready_after: dict[str, float] = {}
    try:
        for node in cluster:  # a, the node that founded the cluster, first
            assert node.stop() == 0
            node.start()  # the same flags
            ready_after[node.name] = round(node.wait_ready(), 2)
        # A kill -9 restarted at once: admitted once its old incarnation is silent.
        c = cluster[2]
        c.kill()
        c.start()
        ready_after["c (kill -9)"] = round(c.wait_ready(), 2)
    finally:
        reader.stop.set()
        reader.join(10)
    for node in cluster:
        document = httpx.get(f"{node.url}/cluster", timeout=2).json()
        clusters.add(document["membership"]["cluster"])
        assert httpx.get(f"{node.url}/flags/{FLAG}", timeout=2).json()["enabled"] is True
    founded = sum(
        1
        for node in cluster
        for line in node.log.read_text(errors="replace").splitlines()
        if re.search(r"founding a new cluster", line)
    )
    print(
        f"\nrolling restart: {reader.reads} reads, {reader.wrong} wrong, "
        f"{reader.unavailable} unavailable; ready after (s): {ready_after}"
    )
    assert reader.wrong == 0, reader.wrong_detail[:5]
    assert reader.reads > 100  # the reader did read while nodes restarted
    assert len(clusters) == 1  # never a second cluster
    assert founded == 1  # the first start of all, and never again
    assert ready_after["c (kill -9)"] < 10


@pytest.mark.timeout(90)
def test_a_paused_node_whose_duplicate_founded_a_second_cluster_brings_its_state_back(
    cluster: list[Node], tmp_path: Path
) -> None:
    """a is paused (alive, holding the state); b and c are killed and restarted; a
    second process with --node-id a joins them, and the three found a new, empty
    cluster. Once a resumes, b and c must take its link (its cluster is the older)
    and give their cluster up for a's: every ready node reads the flag enabled
    again, and the duplicate is refused (503)."""
    a, b, c = cluster
    put = httpx.put(f"{a.url}/flags/{FLAG}", json={"enabled": True}, headers=AUTH, timeout=5)
    assert put.status_code == 200
    deadline = time.monotonic() + 10
    while not _enabled_everywhere(cluster):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    older = httpx.get(f"{a.url}/cluster", timeout=2).json()["membership"]["cluster"]

    twin = Node("a", tmp_path, label="a-twin")
    twin.join = [b.gossip, c.gossip]
    assert a.process is not None
    a.process.send_signal(signal.SIGSTOP)
    try:
        b.kill()
        c.kill()
        b.start()
        c.start()
        twin.start()
        # b, c and the twin are three nodes waiting: they found a second cluster.
        b.wait_ready(timeout=15)
        younger = httpx.get(f"{b.url}/cluster", timeout=2).json()["membership"]["cluster"]
        assert younger > older  # (the flag is off there: the known cost of a pause)

        a.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        everyone = [a, b, c, twin]

        def wrong_reads() -> list[str]:
            wrong = []
            for node in everyone:
                answer = node.ready()
                if answer is None or answer.status_code != 200:
                    continue
                document = httpx.get(f"{node.url}/flags/{FLAG}", timeout=2).json()
                if document.get("enabled") is not True:
                    wrong.append(f"{node.label}: {document}")
            return wrong

        def settled() -> bool:
            answers = [n.ready() for n in cluster]
            return all(r is not None and r.status_code == 200 for r in answers)

        while wrong_reads() or not settled():
            assert time.monotonic() - resumed < 15, (
                f"after SIGCONT: wrong reads {wrong_reads()}\n"
                + "\n".join(f"--- {n.label}\n{n.tail()}" for n in everyone)
            )
            time.sleep(0.1)
        settled_after = time.monotonic() - resumed
        # Then for a while: no wrong read anywhere, and the duplicate stays refused.
        until = time.monotonic() + 4
        reason = ""
        while time.monotonic() < until:
            assert wrong_reads() == []
            answer = twin.ready()
            assert answer is not None
            assert answer.status_code == 503, answer.text
            reason = answer.json()["reason"]
            time.sleep(0.1)
        assert "node id a is already taken by a live node" in reason
        for node in cluster:
            document = httpx.get(f"{node.url}/cluster", timeout=2).json()
            assert document["membership"]["cluster"] == older
        print(
            f"\npaused node, duplicate: ready nodes all right {settled_after:.1f} s after SIGCONT"
        )
    finally:
        if a.process is not None and a.process.poll() is None:
            a.process.send_signal(signal.SIGCONT)
        twin.kill()


@pytest.mark.timeout(120)
def test_a_resumed_node_whose_id_was_taken_meanwhile_never_serves_stale_reads(
    cluster: list[Node], tmp_path: Path
) -> None:
    """a is paused (SIGSTOP) long enough for its peers to drop its links; a second
    process with --node-id a joins the same cluster meanwhile, and a flag is enabled.
    When a resumes, nothing brings it the change (its id's links are the other
    process's), so it must not answer ready: it did not run for longer than
    failure_timeout_s, and waits to hear a member peer."""
    a, b, c = cluster
    twin = Node("a", tmp_path, label="a-twin")
    twin.join = [b.gossip, c.gossip]
    assert a.process is not None
    a.process.send_signal(signal.SIGSTOP)
    try:
        twin.start()
        twin.wait_ready(timeout=60)  # once b and c have dropped the paused a's links
        put = httpx.put(f"{b.url}/flags/{FLAG}", json={"enabled": True}, headers=AUTH, timeout=5)
        assert put.status_code == 200
        a.process.send_signal(signal.SIGCONT)
        resumed = time.monotonic()
        reads = wrong = 0
        reasons: list[str] = []
        while time.monotonic() - resumed < 3:
            answer = a.ready()
            if answer is None:
                continue
            if answer.status_code != 200:
                reasons.append(answer.json()["reason"])
                continue
            reads += 1
            document = httpx.get(f"{a.url}/flags/{FLAG}", timeout=2).json()
            wrong += document.get("enabled") is not True
        assert wrong == 0, f"{wrong} of {reads} reads on a ready a were stale"
        # Its first answer after the pause: not ready, because of the pause or because
        # its peers refuse its id (whichever it learns first).
        assert reasons, "a answered ready at once"
        assert "did not run for" in reasons[0] or "already taken" in reasons[0], reasons[0]
    finally:
        if a.process.poll() is None:
            a.process.send_signal(signal.SIGCONT)
        twin.kill()
