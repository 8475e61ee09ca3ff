"""chorus serve, chorus flags and chorus demo as real processes on 127.0.0.1."""

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import eventually, free_port, serve_argv

pytestmark = pytest.mark.timeout(180)
SECRET, TOKEN = "e2ec1a55e7f39a04b6d8f1c07b2e9d46", "e2e-admin-token-71bc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Serve:
    """One `chorus serve` process."""

    def __init__(
        self,
        name: str,
        join: list[int],
        tmp: Path,
        *,
        join_timeout: float = 2.0,
        bootstrap: bool = False,
        secret: str = SECRET,
        options: tuple[str, ...] = (),
    ) -> None:
        self.name, self.gossip, self.http = name, free_port(), free_port()
        self.join, self.tmp, self.join_timeout = join, tmp, join_timeout
        self.bootstrap, self.secret, self.options = bootstrap, secret, options
        self.start()

    def start(self) -> None:
        self.log = self.tmp / f"{self.name}.log"
        env = {**os.environ, "CHORUS_SECRET": self.secret, "CHORUS_TOKEN": TOKEN}
        self.process = subprocess.Popen(
            serve_argv(
                self.name,
                self.gossip,
                self.http,
                self.join,
                *("--join-timeout", str(self.join_timeout)),
                *(["--bootstrap"] if self.bootstrap else []),
                *self.options,
            ),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=2, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return httpx.put(self.url + path, json=body, headers=AUTH, timeout=2, **kwargs)

    def status(self, path: str) -> int:
        try:
            return self.get(path).status_code
        except httpx.HTTPError:
            return 0

    def wait(self, path: str = "/ready", status: int = 200, timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.status(path) == status:
                return True
            time.sleep(0.02)
        return False


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[Serve]]:
    nodes: list[Serve] = []
    try:
        first = Serve("a", [], tmp_path)
        nodes.append(first)
        assert first.wait()
        for name in ("b", "c"):
            nodes.append(Serve(name, [first.gossip], tmp_path))
        for node in nodes:
            assert node.wait(), node.log.read_text()[-2000:]
        yield nodes
    finally:
        for node in nodes:
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait(10)


def enabled_on(reader: Serve, writer: Serve) -> bool:
    return bool(reader.get(f"/flags/from-{writer.name}").json()["enabled"])


def test_a_write_on_each_node_is_read_back_from_every_other(cluster: list[Serve]) -> None:
    for node in cluster:
        assert node.put(f"/flags/from-{node.name}", {"enabled": True}).status_code == 200
    for reader in cluster:
        for writer in cluster:
            assert eventually(functools.partial(enabled_on, reader, writer))
    members = cluster[0].get("/cluster").json()["members"]
    assert members == ["a", "b", "c"]


def test_a_restarted_node_is_not_ready_until_synced_then_matches(
    cluster: list[Serve], tmp_path: Path
) -> None:
    a, b, _ = cluster
    a.put("/flags/keep", {"enabled": True})
    a.put("/flags/keep", {"group": "banned", "enabled": False})
    assert eventually(lambda: b.get("/flags/keep").json()["groups"] == {"banned": False})
    b.process.kill()  # kill -9
    b.process.wait(10)
    b.start()
    assert b.wait("/health", 200)
    assert b.wait("/ready", 200)
    flags_a = a.get("/flags").json()["flags"]
    assert b.get("/flags").json()["flags"] == flags_a  # matched as soon as it was ready

    # Its seed never answers: it waits for its cluster and says so, however long.
    lonely = Serve("lonely", [free_port()], tmp_path, join_timeout=1.0)
    # Told to bootstrap, it founds a cluster of its own after the join timeout.
    founder = Serve("founder", [free_port()], tmp_path, join_timeout=1.0, bootstrap=True)
    try:
        assert lonely.wait("/health", 200)
        assert founder.wait("/ready", 200, timeout=15)
        time.sleep(1.0)
        answer = lonely.get("/ready")
        assert answer.status_code == 503
        reason = answer.json()["reason"]
        assert reason.startswith("not synced with the cluster yet; dialling 127.0.0.1:")
        assert reason.endswith("connection refused: nothing listening there?")
    finally:
        for node in (lonely, founder):
            node.process.kill()
            node.process.wait(10)


def test_unauthorised_and_malformed_requests_change_nothing(cluster: list[Serve]) -> None:
    a = cluster[0]
    before = a.get("/flags").json()
    assert httpx.put(a.url + "/flags/x", json={"enabled": True}).status_code == 401
    assert (
        httpx.put(
            a.url + "/flags/x", json={"enabled": True}, headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    bad = httpx.put(
        a.url + "/flags/x", content=b"{oops", headers={**AUTH, "content-type": "application/json"}
    )
    assert bad.status_code == 400
    assert "error" in bad.json()
    assert a.put("/flags/x", {"percentage_of_actors": 7}).status_code == 422
    assert a.put("/flags/x", {"enabled": True, "extra": 1}).status_code == 422
    time.sleep(0.3)
    for node in cluster:
        assert node.get("/flags").json()["flags"] == before["flags"]


def test_sigterm_exits_cleanly_and_logs_are_key_value_without_secrets(cluster: list[Serve]) -> None:
    c = cluster[2]
    c.put("/flags/last-write", {"enabled": True})
    started = time.monotonic()
    c.process.send_signal(signal.SIGTERM)
    assert c.process.wait(10) == 0
    assert time.monotonic() - started < 5
    assert eventually(lambda: cluster[0].get("/flags/last-write").json()["enabled"])
    log = c.log.read_text()
    assert "shutting down" in log
    assert SECRET not in log
    assert TOKEN not in log
    line = re.compile(r'^ts=\S+Z level=[A-Z]+ logger=\S+ msg=".*"')
    assert all(line.match(entry) for entry in log.splitlines() if entry.strip()), log


def test_the_ui_is_at_ui_and_the_root_leads_there(cluster: list[Serve], tmp_path: Path) -> None:
    a = cluster[0]
    root = a.get("/", follow_redirects=False)
    assert root.status_code == 303
    assert root.headers["location"] == "ui/"
    page = a.get("/", follow_redirects=True)  # to /ui/, then to its login page
    assert page.status_code == 200
    assert "<h1>Log in</h1>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    off = Serve("d", [a.gossip], tmp_path, options=("--ui", "off"))
    try:
        assert off.wait()
        assert off.status("/ui/") == 404
        assert off.status("/") == 404
    finally:
        off.process.kill()
        off.process.wait(10)


def test_events_on_one_node_carry_a_write_on_another_and_end_at_sigterm(
    cluster: list[Serve],
) -> None:
    """``GET /events`` as another language's client uses it: a stream on b shows a
    write made on a within a second, and b's ``/cluster`` saw it propagate; SIGTERM
    ends the open stream rather than waiting on it."""
    a, b = cluster[0], cluster[1]
    with httpx.stream("GET", b.url + "/events", headers=AUTH, timeout=5) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 1000"
        while not next(lines).startswith("data: "):
            pass  # the snapshot
        started = time.monotonic()
        assert a.put("/flags/streamed", {"actor": "user-1", "enabled": True}).status_code == 200
        event: dict[str, str] = {}
        while "data" not in event:
            key, _, value = next(lines).partition(": ")
            if key:
                event[key] = value
        assert time.monotonic() - started < 1.0
        assert event["event"] == "flag"
        data = json.loads(event["data"])
        assert data["name"] == "streamed"
        assert data["node"] == "b"
        assert data["flag"]["actors"] == {"user-1": True}
        seen = b.get("/cluster").json()
        assert any(p["flag"] == "streamed" for p in seen["propagation"])
        assert {e["member"] for e in seen["member_events"] if e["event"] == "up"} >= {"a"}
        stopped = time.monotonic()
        b.process.send_signal(signal.SIGTERM)
        assert b.process.wait(10) == 0
        assert time.monotonic() - stopped < 5


def chorus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flags.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_the_flags_client(cluster: list[Serve]) -> None:
    a, b = cluster[0], cluster[1]
    token = {"CHORUS_TOKEN": TOKEN}
    assert chorus("flags", "enable", "beta", "--url", a.url, env=token).returncode == 0
    assert (
        chorus(
            "flags", "disable", "beta", "--group", "banned", "--url", a.url, env=token
        ).returncode
        == 0
    )
    assert (
        chorus(
            "flags", "enable", "beta", "--percentage-of-actors", "0.5", "--url", a.url, env=token
        ).returncode
        == 0
    )
    assert eventually(lambda: b.get("/flags/beta").json()["percentage_of_actors"] == 0.5)
    table = chorus("flags", "list", "--url", b.url)
    assert table.returncode == 0
    assert "beta" in table.stdout
    assert "banned (deny)" in table.stdout
    got = chorus(
        "flags", "get", "beta", "--actor", "u1", "--group", "banned", "--url", b.url, "--json"
    )
    assert got.returncode == 0
    assert '"reason": "group"' in got.stdout
    denied = chorus("flags", "enable", "beta", "--url", a.url, env={"CHORUS_TOKEN": "wrong"})
    assert denied.returncode == 1
    assert "401" in denied.stderr
    assert chorus("flags", "clear", "beta", "--url", a.url, env=token).returncode == 0
    # clear is DELETE /flags/beta: the flag is gone (404) once it replicates.
    assert eventually(lambda: b.get("/flags/beta").status_code == 404)
    unreachable = chorus("flags", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1


def test_cli_usage_errors() -> None:
    assert chorus("flags", "get").returncode == 2  # no name
    assert chorus("bogus").returncode == 2
    missing = chorus("serve", "--node-id", "x", env={"CHORUS_SECRET": "", "CHORUS_TOKEN": "t"})
    assert missing.returncode == 2
    assert "cluster secret is required" in missing.stderr
    same = chorus(
        "serve",
        "--node-id",
        "x",
        env={"CHORUS_SECRET": SECRET, "CHORUS_TOKEN": "t0ken", "CHORUS_VIEWER_TOKEN": "t0ken"},
    )
    assert same.returncode == 2
    assert "viewer token must differ" in same.stderr
    colour = chorus(
        "serve",
        "--node-id",
        "x",
        "--ui-banner-colour",
        "pink",
        env={"CHORUS_SECRET": SECRET, "CHORUS_TOKEN": "t0ken"},
    )
    assert colour.returncode == 2
    assert "--ui-banner-colour: choose from red, orange" in colour.stderr


def test_the_demo_runs_and_passes_its_checks() -> None:
    result = chorus("demo", "--toggles", "10")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert re.search(r"reads during restart\s+\d+ \(0 wrong\)", result.stdout)


@pytest.mark.parametrize(
    ("target", "expected"),
    [("cluster", "a different cluster secret"), ("http", "an HTTP port")],
)
def test_a_misjoined_node_says_why_in_ready_and_in_one_error_line(
    cluster: list[Serve], tmp_path: Path, target: str, expected: str
) -> None:
    """Another secret, or --join pointed at an HTTP port: /ready stays 503 and names
    the cause, and the log says it once at ERROR."""
    first = cluster[0]
    port = first.gossip if target == "cluster" else first.http
    other = "5ecae7a1b2c3d4e5f60718293a4b0e1f"
    stray = Serve("stray", [port], tmp_path, secret=other if target == "cluster" else SECRET)
    try:

        def reason() -> str:
            try:
                answer = stray.get("/ready")
            except httpx.HTTPError:
                return ""
            assert answer.status_code == 503
            return str(answer.json()["reason"])

        assert eventually(lambda: expected in reason(), 15), reason()
        errors = [line for line in stray.log.read_text().splitlines() if expected in line]
        assert len([line for line in errors if "ERROR" in line]) == 1, errors
        # /cluster counts the failed handshakes by reason, on both sides of a secret.
        why = "secret" if target == "cluster" else "http"
        for node in [stray, first] if target == "cluster" else [stray]:
            transport = node.get("/cluster").json()["transport"]
            assert transport["handshakes_failed"] >= 1, transport
            assert transport["handshakes_failed_by_reason"].get(why, 0) >= 1, transport
    finally:
        stray.process.kill()
        stray.process.wait(10)
